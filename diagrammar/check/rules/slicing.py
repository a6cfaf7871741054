"""Front end, typing rules: a range of positions along one axis (`slice(x, a -> b, start)`).

The start is a whole-number constant (it may read free sizes), so the
bounds are checked here when every size is known and otherwise when the free
sizes are bound (`diagrammar.bounds`, read by the backends).
"""
from __future__ import annotations

from ...bounds import slice_failure
from ...errors import InvalidArgument, ShapeMismatch
from ...ir import Axis, TensorType, const_label
from ..hints import _did_you_mean
from ..values import C, _has_free, _is_whole, _passing
from . import typing_rule


@typing_rule("slice")
def slice_(ck, op, node, args):
    x = ck.tensor(ck.expr(args["x"]), args["x"].span, "slice's input")
    src, dst = ck.mapping(args["map"], "slice")
    if len(src) != 1 or len(dst) != 1:
        ck.err(InvalidArgument, "slice takes a range of one axis: slice(x, a -> b, start)", args["map"].span)
    (a, aspan), = src
    (b, bspan), = dst
    ax = x.type.axis(a)
    if ax is None:
        ck.err(ShapeMismatch, f"slice takes a range of {a}, but the input {x.type} has no {a}", aspan,
               hint=_did_you_mean(a, x.type.names))
    if b != a and x.type.axis(b) is not None:
        ck.err(ShapeMismatch, f"slice makes the axis {b}, but the input {x.type} already has it", bspan,
               hint=f"declare another axis for the range: axis {b}2 = ...")
    length = ck.axis_size(b, bspan)
    v = ck.expr(args["start"])
    if not isinstance(v, C) or not _is_whole(v.tree):
        if not isinstance(v, C):
            ck.tensor(v, args["start"].span)  # a failed operand stops here, already reported
        got = "a wire" if not isinstance(v, C) else const_label(v.tree)
        ck.err(InvalidArgument, f"slice's start must be a whole-number constant; got {got}", args["start"].span,
               hint="a whole number (`0`, `-16`), an axis name (its size) or size arithmetic (`(n - m) // 2`)")
    start = v.tree
    sized = not _has_free(start) and ax.size.is_const and length.is_const
    if sized:
        e = slice_failure(a, ax.size.value, b, length.value, start, {}, node.span)
        if e is not None:
            raise e
    out = TensorType(tuple(Axis(b, length) if c.name == a else c for c in x.type.axes), x.type.dtype)
    roles = _passing(out)
    roles[a] = "consumed"
    roles[b] = "produced" if b != a else "replaced"
    return ck.add_box("slice", [x.wire], [out], node.span, roles=roles,
                      attrs={"axis": a, "dst": b, "start": start, "label": const_label(start)})[0]
