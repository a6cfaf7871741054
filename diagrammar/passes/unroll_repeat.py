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

from ..ir import Box, Diagram
from ._rewrite import SizeOf, mark_each

NAME = "unroll_repeat"
MAX_COPIES = 8  # beyond this, compile time grows faster than the step time shrinks


def run(d: Diagram, size_of: SizeOf) -> tuple[Diagram, list[str]]:
    def decide(b: Box) -> str | None:
        count = size_of(b.attr("count")) if b.op == "repeat" else None
        return f"{b.name}: {count} copies, unrolled" if count is not None and count <= MAX_COPIES else None

    return mark_each(d, NAME, decide)
