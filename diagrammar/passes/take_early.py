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

A `dot` not over the axis commutes with the take, and so does a `causal` mask
whose query axis it is (it then masks the keys after the position taken, and
records that position). Then the take sinks into calls: `take(u + f(x))`,
where the call `f` draws no random numbers, becomes `take(u) + f'(x)`, where
`f'` is `f` ending in the same take, moved as far up inside it as it goes (see
`_sink_into_call`). In GrokTransformer this runs the attention's query,
scores, mixing and output projection for the last position alone.
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
_RANDOM = {"dropout", "dispatch"}  # their lowering reads the dropout key


def _commutes(b: Box, axis: str) -> bool:
    """Whether taking one position of `axis` after `b` equals running `b` on that position.

    A `dot` not over the axis commutes (only one operand may carry it: see `_closed`); so does a `causal`
    mask whose query axis it is, which then masks the keys after the one query position taken.
    """
    if b.body is not None or b.role(axis) != "passing" or marks(b):
        return False
    if b.op == "causal":
        return b.attr("q") == axis
    if b.op not in _POSITIONWISE and b.op != "dot":
        return False
    return axis not in (b.attr("in_axes") or ()) and axis not in (b.attr("over") or ())


def _key_free(d: Diagram) -> bool:
    """Whether no box of `d`, at any depth, draws from the dropout key (so box positions do not matter)."""
    return all(b.op not in _RANDOM and (b.body is None or _key_free(b.body)) for b in d.boxes)


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


def _query_index(d: Diagram, take: Box, w: str, size_of: SizeOf) -> int | None:
    """The position a take reads, counted from 0 (None where the axis size is not known here)."""
    n = size_of(d.wire(w).type.axis(take.attr("axis")).size)
    index = take.attr("index")
    if n is None or not isinstance(index, int) or not -n <= index < n:
        return None
    return index % n


def run(d: Diagram, size_of: SizeOf) -> tuple[Diagram, list[str]]:
    what = []
    while True:
        producer = {w: i for i, b in enumerate(d.boxes) for w in b.outputs}
        readers: dict[str, list[int]] = {}
        for i, b in enumerate(d.boxes):
            for w in b.inputs:
                readers.setdefault(w, []).append(i)
        for t, take in enumerate(d.boxes):
            if take.op != "take":
                continue
            axis = take.attr("axis")
            found = None if marks(take) else _region(d, take, axis, producer, readers)
            if found is not None:
                w0, members = found
                first = members[0]
                query = _query_index(d, take, w0, size_of)
                if any(b.op in _KEYED for b in d.boxes[first:t]) or (
                        query is None and any(d.boxes[i].op == "causal" for i in members)):
                    found = None
            if found is not None:
                d = _rewrite(d, t, take, axis, w0, members, query)
                names = ", ".join(d.boxes[i + 1].name for i in members)
                what.append(f"{take.name} reads one {axis} of {w0}: {names} run on it alone")
                break
            sunk = _sink_into_call(d, t, take, axis, producer, readers, size_of)
            if sunk is not None:
                d, said = sunk
                what.extend(said)
                break
        else:
            return d, what


def _rewrite(d: Diagram, t: int, take: Box, axis: str, w0: str, members: list[int], query: int | None) -> Diagram:
    taken = Wire(f"{w0}#{take.name}", _without(d.wire(w0).type, axis))
    rename = {take.inputs[0]: take.outputs[0]}  # the last box writes the take's wire
    retyped = {w for i in members for w in d.boxes[i].outputs if w not in rename}
    boxes = list(d.boxes)
    for i in members:
        b = boxes[i]
        roles = tuple((a, r) for a, r in b.roles if a != axis)
        boxes[i] = dataclasses.replace(b, inputs=tuple(taken.name if w == w0 else rename.get(w, w) for w in b.inputs),
                                       outputs=tuple(rename.get(w, w) for w in b.outputs), roles=roles)
        if b.op == "causal":  # its query axis is gone: it masks the keys after the position taken
            boxes[i] = mark(boxes[i], NAME, query)
    del boxes[t]
    boxes.insert(members[0], mark(take, NAME, w0, inputs=(w0,), outputs=(taken.name,)))
    wires = []
    for w in d.wires:
        if w.name == take.inputs[0]:
            continue  # now written by the last box under the take's name
        wires.append(dataclasses.replace(w, type=_without(w.type, axis)) if w.name in retyped else w)
    wires.append(taken)
    return dataclasses.replace(d, boxes=tuple(boxes), wires=tuple(wires))


def _sink_into_call(d: Diagram, t: int, take: Box, axis: str, producer: dict, readers: dict,
                    size_of: SizeOf) -> tuple[Diagram, list[str]] | None:
    """A take after `u + f(...)`, where the call `f` draws no random numbers, takes `u` instead, and `f` ends
    in a take of its own, which this pass then moves as far up inside `f` as it goes.

    GrokTransformer's residual `x + Attention(x)` read at the last position needs the attention's result at
    that position only: its query, scores, mixing and output projection run for one position, while its keys
    and values still read every position. The outer take keeps its box; the call's body gains one `take`
    (named like the outer one) at its end, so the boxes of the body move by one: harmless because the body
    is key-free. Weights keep their names (they hang off the call, not off positions).
    """
    e = producer.get(take.inputs[0])
    if e is None or readers.get(take.inputs[0]) != [t] or e > t:
        return None
    add = d.boxes[e]
    if add.op not in ops.ELEMENTWISE_BINARY or len(add.inputs) != 2 or add.role(axis) != "passing" or marks(add):
        return None
    if any(b.op in _KEYED for b in d.boxes[e + 1:t]):
        return None
    for side in (0, 1):
        c, u = add.inputs[side], add.inputs[1 - side]
        j = producer.get(c)
        if j is None or readers.get(c) != [e] or c == u or axis not in d.wire(u).type.names:
            continue
        call = d.boxes[j]
        if call.op != "call" or axis in (call.attr("batch") or ()) or len(call.outputs) != 1 or not _key_free(call.body):
            continue
        body = call.body
        out = body.output
        if out.type != d.wire(c).type or len(out.wires) != 1 or axis not in out.type.names:
            continue
        if out.wires[0] in {w for p in body.inputs for w in p.wires}:
            continue
        names = {b.name for b in body.boxes}
        inner_name = take.name
        while inner_name in names:
            inner_name += "'"
        inner_wire = Wire(f"{out.wires[0]}#{inner_name}", _without(out.type, axis))
        inner_take = dataclasses.replace(take, name=inner_name, inputs=out.wires, outputs=(inner_wire.name,),
                                         attrs=tuple((k, v) for k, v in take.attrs if k != "pass"),
                                         roles=tuple((a, r) for a, r in take.roles))
        body = dataclasses.replace(body, boxes=body.boxes + (inner_take,), wires=body.wires + (inner_wire,),
                                   output=dataclasses.replace(out, type=inner_wire.type, wires=(inner_wire.name,)))
        body, inner_what = run(body, size_of)
        taken = Wire(f"{u}#{take.name}", _without(d.wire(u).type, axis))
        boxes = list(d.boxes)
        boxes[j] = mark(call, NAME, take.name, body=body)
        new_inputs = tuple(taken.name if w == u else w for w in add.inputs)
        boxes[e] = dataclasses.replace(add, inputs=new_inputs, outputs=take.outputs,
                                       roles=tuple((a, r) for a, r in add.roles if a != axis))
        del boxes[t]
        boxes.insert(e, mark(take, NAME, u, inputs=(u,), outputs=(taken.name,)))
        wires = []
        for w in d.wires:
            if w.name == take.inputs[0]:
                continue  # the add now writes the take's wire
            wires.append(dataclasses.replace(w, type=_without(w.type, axis)) if w.name == c else w)
        wires.append(taken)
        said = [f"{take.name} reads one {axis} of {u}; {call.name} returns that {axis} alone"]
        said += [f"{call.name}: {w}" for w in inner_what]
        return dataclasses.replace(d, boxes=tuple(boxes), wires=tuple(wires)), said
    return None
