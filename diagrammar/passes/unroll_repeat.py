"""A `repeat` of a few copies runs as straight-line code instead of a loop.

The Decoder's `repeat 4: x = Block(x)` lowers to `lax.scan` over the stacked
weights: one loop whose body XLA compiles once and cannot fuse across, and
whose backward pass stacks every copy's intermediates and slices them back.
For a few copies of small blocks that bookkeeping costs more than the blocks;
unrolled, XLA schedules and fuses the whole model as the plain Python loop
over layers of a hand-written model would have it. The weights stay stacked
on the repeat's copy axis (`repeat.x.W` is `[4, ...]`): each copy reads its
row. Records `("unroll_repeat", True)` on a `repeat` of at most `MAX_COPIES`
copies; a call that captures wires runs the loop as before.
"""
from __future__ import annotations

import dataclasses

from ..ir import Diagram
from ._rewrite import SizeOf, mark, marks

NAME = "unroll_repeat"
MAX_COPIES = 8  # beyond this, compile time grows faster than the step time shrinks


def run(d: Diagram, size_of: SizeOf) -> tuple[Diagram, list[str]]:
    boxes, what = [], []
    for b in d.boxes:
        if b.op == "repeat" and NAME not in marks(b):
            count = size_of(b.attr("count"))
            if count is not None and count <= MAX_COPIES:
                b = mark(b, NAME, True)
                what.append(f"{b.name}: {count} copies, unrolled")
        boxes.append(b)
    if not what:
        return d, []
    return dataclasses.replace(d, boxes=tuple(boxes)), what
