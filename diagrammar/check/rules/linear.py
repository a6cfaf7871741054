"""Front end, typing rules: linear maps and contractions (linear, dot, einsum)."""
from __future__ import annotations

from ... import syntax as S
from ...errors import InvalidArgument, ShapeMismatch, WrongArity
from ...ir import Axis, Init, TensorType, Weight
from ..hints import _did_you_mean, mismatch_hint, type_table
from ..values import _passing
from . import typing_rule


@typing_rule("linear")
def linear(ck, op, node, args):
    x = ck.float_tensor(ck.expr(args["x"]), args["x"].span, "linear's input")
    src, dst = ck.mapping(args["map"], "linear")
    bias = True if args["bias"] is None else ck.flag(args["bias"], "bias")
    in_axes = []
    for name, span in src:
        a = x.type.axis(name)
        if a is None:
            known = [Axis(n, ck.b.axes[n]) if x.type.axis(n) is None else x.type.axis(n)
                     for n, _ in src if n in ck.b.axes or x.type.axis(n) is not None]
            ck.err(ShapeMismatch, f"linear maps {name}, but its input is {x.type}", span,
                   table=type_table(TensorType(tuple(known)), x.type, "mapped", "input") if known else [],
                   hint=_did_you_mean(name, x.type.names) or "map axes the input has")
        in_axes.append(a)
    ck.no_dupes(src, "linear's input axes")
    ck.no_dupes(dst, "linear's output axes")
    src_names = {n for n, _ in src}
    out_axes = []
    for name, span in dst:
        if name not in src_names and x.type.axis(name) is not None:
            ck.err(ShapeMismatch, f"linear's output axis {name} is already on its input {x.type}", span,
                   hint=f"map it too ({name} -> ...), or give the output another axis")
        out_axes.append(ck.axis(name, span) if name not in src_names else ck.axis(name, span, x.type))
    keep = [a for a in x.type.axes if a.name not in src_names]
    out = TensorType(tuple(keep + out_axes))
    weights = [Weight("W", TensorType(tuple(in_axes + out_axes)),
                      Init("lecun", (), tuple(src_names_order(src)), ()))]
    if bias:
        weights.append(Weight("b", TensorType(tuple(out_axes)), Init("zeros")))
    roles = _passing(out)
    for a in in_axes:
        roles[a.name] = "consumed"
    for a in out_axes:
        roles[a.name] = "replaced" if a.name in src_names else "produced"
    return ck.add_box("linear", [x.wire], [out], node.span, weights=weights, roles=roles,
                      attrs={"in_axes": tuple(a.name for a in in_axes),
                             "out_axes": tuple(a.name for a in out_axes), "bias": bias})[0]


@typing_rule("dot")
def dot(ck, op, node, args):
    a = ck.float_tensor(ck.expr(args["a"]), args["a"].span, "dot's first operand")
    b = ck.float_tensor(ck.expr(args["b"]), args["b"].span, "dot's second operand")
    over = ck.axis_names(args["over"], "over")
    for name, span in over:
        for t, which in ((a, "first"), (b, "second")):
            if t.type.axis(name) is None:
                ck.err(ShapeMismatch, f"dot sums over {name}, but the {which} operand {t.type} has no {name}",
                       span, table=type_table(a.type, b.type, "first", "second"),
                       hint=mismatch_hint(TensorType((ck.axis(name, span, a.type, b.type),)),
                                          TensorType(()), "x") and
                       f"rename an axis so both operands share {name}")
    ck.broadcast([a, b], node.span, "dot")
    over_names = {n for n, _ in over}
    axes = {}
    for t in (a, b):
        for ax in t.type.axes:
            if ax.name not in over_names:
                axes.setdefault(ax.name, ax)
    out = TensorType(tuple(axes.values()))
    roles = _passing(out)
    for n in over_names:
        roles[n] = "consumed"
    return ck.add_box("dot", [a.wire, b.wire], [out], node.span, roles=roles,
                      attrs={"over": tuple(n for n, _ in over)})[0]


@typing_rule("einsum")
def einsum(ck, op, node, args):
    operands, result = [], None
    for a in node.args:
        if isinstance(a, S.ResultSpec):
            if result is not None:
                ck.err(InvalidArgument, "einsum takes one `-> [axes]`", a.span)
            result = ck.axis_names(a.value, "einsum's result")
        elif isinstance(a, (S.Keyword, S.Mapping)):
            ck.err(InvalidArgument, "einsum takes operands and then `-> [axes]`", a.span)
        else:
            operands.append(ck.float_tensor(ck.expr(a), a.span, "einsum's operand"))
    if result is None:
        ck.err(WrongArity, "einsum needs its result axes: einsum(a, b, -> [i, k])", node.span)
    if not operands:
        ck.err(WrongArity, "einsum needs at least one operand", node.span)
    union = ck.broadcast(operands, node.span, "einsum")
    out_axes = []
    for name, span in result:
        ax = union.axis(name)
        if ax is None:
            ck.err(ShapeMismatch, f"einsum's result axis {name} is on no operand", span,
                   hint=_did_you_mean(name, union.names))
        out_axes.append(ax)
    ck.no_dupes(result, "einsum's result")
    out = TensorType(tuple(out_axes))
    roles = _passing(out)
    for ax in union.axes:
        if out.axis(ax.name) is None:
            roles[ax.name] = "consumed"
    return ck.add_box("einsum", [t.wire for t in operands], [out], node.span, roles=roles,
                      attrs={"result": tuple(n for n, _ in result)})[0]


def src_names_order(src):
    return [n for n, _ in src]
