"""Sibling linear maps that read one wire become one matrix product.

`q = linear(x, d -> (heads, dk))`, `k = linear(x, ...)`, `v = linear(x, ...)`
are three products of the same rows; one product with the three weights side
by side does the same work in one call, reading `x` once (and its backward
pass: one product for the input's gradient instead of three and a sum).

The weights stay on their boxes (`attention.q.W`, ...), and are concatenated
when the module runs, so checkpoints and names do not change. The first
member of a group computes the fused product: its box gains a second output,
the fused wire (one axis, `#fused:q+k+v`, as wide as the members' outputs
together), and records the group as `("fuse_siblings", ("lead", members))`,
each member as `(box name, out_axes, bias)`. Every other member reads that
wire instead of `x` and records `("fuse_siblings", ("part", lead, offset,
width))`: its output is the columns `offset .. offset + width` of it. No box
moves, so dropout keys and capture names stay as they were.
"""
from __future__ import annotations

import dataclasses

from ..ir import Axis, Box, Diagram, Size, TensorType, Wire
from ._rewrite import SizeOf, mark, marks

NAME = "fuse_siblings"


def _product(t: TensorType, names) -> Size:
    n = Size.of(1)
    for name in names:
        n = n * t.axis(name).size
    return n


def run(d: Diagram, size_of: SizeOf) -> tuple[Diagram, list[str]]:
    groups: dict[tuple, list[Box]] = {}
    for b in d.boxes:
        if b.op != "linear" or marks(b) or len(b.inputs) != 1:
            continue
        groups.setdefault((b.inputs[0], tuple(b.attr("in_axes"))), []).append(b)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return d, []
    wires = list(d.wires)
    replaced: dict[str, Box] = {}
    what = []
    for (source, in_axes), members in groups.items():
        x = d.wire(source).type
        keep = [a for a in x.axes if a.name not in in_axes]
        name = "+".join(b.name for b in members)
        offset = Size.of(0)
        parts = []
        for b in members:
            out_t = d.wire(b.outputs[0]).type
            width = _product(out_t, b.attr("out_axes"))
            parts.append((b, offset, width))
            offset = offset + width
        fused = Wire(f"{name}:fused", TensorType(tuple(keep) + (Axis(f"#fused:{name}", offset),)))
        wires.append(fused)
        lead = members[0]
        group = tuple((b.name, tuple(b.attr("out_axes")), bool(b.attr("bias"))) for b in members)
        replaced[lead.name] = mark(lead, NAME, ("lead", group), outputs=lead.outputs + (fused.name,))
        for b, off, width in parts[1:]:
            replaced[b.name] = mark(b, NAME, ("part", lead.name, off, width), inputs=(fused.name,))
        what.append(f"{', '.join(b.name for b in members)} read {source}: one product")
    boxes = tuple(replaced.get(b.name, b) for b in d.boxes)
    return dataclasses.replace(d, boxes=boxes, wires=tuple(wires)), what
