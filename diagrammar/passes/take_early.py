"""A `take` of one position moves before the position-wise boxes whose results only it reads.

GrokTransformer reads one position of its last residual stream,
`take(x, pos, -1)`, but a plain model runs the MLP before it at every
position: two thirds of that work (the largest matrices of the model) are
thrown away. Boxes that treat every position alike (the axis only passes
through them: element-wise arithmetic and functions, `linear` not over it,
normalisations and softmaxes over other axes) commute with taking one
position, so the `take` can read the wire they start from instead, and they
run on that one position.

The rewrite: find the wire `w0` with the most such boxes between it and the
`take` where every box between reads the axis only from `w0` or from another
box between, and every box between is read only by boxes between (or by the
`take`). The `take` then reads `w0` and sits just before the first of them;
they read its result; the last of them writes the `take`'s old output wire. No
box is added or removed, and none that folds its position into a random key
(dropout, calls, repeats, scans) moves. The wires between lose the axis, so a
module reads wires captured by name from the diagram as checked (see
`CompiledCircuit.__call__`). Records `("take_early", w0)` on the `take`.
"""
from __future__ import annotations

import dataclasses

from .. import ops
from ..ir import Box, Diagram, TensorType, Wire
from ._rewrite import SizeOf, mark, marks

NAME = "take_early"
_POSITIONWISE = set(ops.UNARY) | set(ops.ELEMENTWISE_BINARY) | {"neg", "where", "maximum", "minimum", "linear",
                                                                 "layernorm", "rmsnorm", "softmax", "log_softmax"}
_KEYED = {"dropout", "call", "repeat", "scan", "dispatch"}  # their lowering folds the box's position into a key


def _commutes(b: Box, axis: str) -> bool:
    """Whether taking one position of `axis` after `b` equals running `b` on that position."""
    if b.op not in _POSITIONWISE or b.body is not None or b.role(axis) != "passing" or marks(b):
        return False
    return axis not in (b.attr("in_axes") or ()) and axis not in (b.attr("over") or ())


def _without(t: TensorType, axis: str) -> TensorType:
    return TensorType(tuple(a for a in t.axes if a.name != axis), t.dtype)


def _region(d: Diagram, take: Box, axis: str, producer: dict, readers: dict) -> tuple[str, list[int]] | None:
    """(w0, the positions of the boxes between it and the take) for the largest region that qualifies."""
    best = None
    start = producer.get(take.inputs[0])
    if start is None or not _commutes(d.boxes[start], axis):
        return None
    # candidate regions grow upwards from the take, one box at a time, breadth first
    region = [start]
    frontier = [start]
    while frontier:
        i = frontier.pop()
        for w in d.boxes[i].inputs:
            if axis not in d.wire(w).type.names:
                continue
            j = producer.get(w)
            if j is not None and j not in region and _commutes(d.boxes[j], axis):
                region.append(j)
                frontier.append(j)
    # try each wire the region reads as w0, with the region cut down to the boxes downstream of it
    candidates = sorted({w for i in region for w in d.boxes[i].inputs if axis in d.wire(w).type.names})
    for w0 in candidates:
        members = _downstream(d, region, w0)
        if members and _closed(d, members, w0, axis, take, readers) and (best is None or len(members) > len(best[1])):
            best = (w0, sorted(members))
    return best


def _downstream(d: Diagram, region: list[int], w0: str) -> set[int]:
    reached = {w0}
    members: set[int] = set()
    for i in sorted(region):
        if any(w in reached for w in d.boxes[i].inputs):
            members.add(i)
            reached.update(d.boxes[i].outputs)
    return members


def _closed(d: Diagram, members: set[int], w0: str, axis: str, take: Box, readers: dict) -> bool:
    outputs = {w for i in members for w in d.boxes[i].outputs}
    if take.inputs[0] not in outputs or outputs & set(d.output.wires):
        return False
    for i in members:
        for w in d.boxes[i].inputs:
            if axis in d.wire(w).type.names and w != w0 and w not in outputs:
                return False  # the axis comes in another way: it would need a second take
        for w in d.boxes[i].outputs:
            if any(r not in members and d.boxes[r] is not take for r in readers.get(w, ())):
                return False  # someone else reads every position of it
    return True


def run(d: Diagram, size_of: SizeOf) -> tuple[Diagram, list[str]]:
    what = []
    while True:
        producer = {w: i for i, b in enumerate(d.boxes) for w in b.outputs}
        readers: dict[str, list[int]] = {}
        for i, b in enumerate(d.boxes):
            for w in b.inputs:
                readers.setdefault(w, []).append(i)
        for t, take in enumerate(d.boxes):
            if take.op != "take" or marks(take):
                continue
            axis = take.attr("axis")
            found = _region(d, take, axis, producer, readers)
            if found is None:
                continue
            w0, members = found
            first = members[0]
            if any(b.op in _KEYED for b in d.boxes[first:t]):
                continue
            d = _rewrite(d, t, take, axis, w0, members)
            names = ", ".join(d.boxes[i + 1].name for i in members)
            what.append(f"{take.name} reads one {axis} of {w0}: {names} run on it alone")
            break
        else:
            return d, what


def _rewrite(d: Diagram, t: int, take: Box, axis: str, w0: str, members: list[int]) -> Diagram:
    taken = Wire(f"{w0}#{take.name}", _without(d.wire(w0).type, axis))
    rename = {take.inputs[0]: take.outputs[0]}  # the last box writes the take's wire
    retyped = {w for i in members for w in d.boxes[i].outputs if w not in rename}
    boxes = list(d.boxes)
    for i in members:
        b = boxes[i]
        roles = tuple((a, r) for a, r in b.roles if a != axis)
        boxes[i] = dataclasses.replace(b, inputs=tuple(taken.name if w == w0 else rename.get(w, w) for w in b.inputs),
                                       outputs=tuple(rename.get(w, w) for w in b.outputs), roles=roles)
    del boxes[t]
    boxes.insert(members[0], mark(take, NAME, w0, inputs=(w0,), outputs=(taken.name,)))
    wires = []
    for w in d.wires:
        if w.name == take.inputs[0]:
            continue  # now written by the last box under the take's name
        wires.append(dataclasses.replace(w, type=_without(w.type, axis)) if w.name in retyped else w)
    wires.append(taken)
    return dataclasses.replace(d, boxes=tuple(boxes), wires=tuple(wires))
