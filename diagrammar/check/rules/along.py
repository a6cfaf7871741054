"""Front end, typing rules: operations along named axes (reductions and normalisations)."""
from __future__ import annotations

from ...errors import InvalidArgument, ShapeMismatch, WrongArity
from ...ir import Init, TensorType, Weight
from ...ops import CATALOGUE, REDUCTIONS
from ..hints import _did_you_mean
from ..values import T, _passing
from . import typing_rule


def _over(ck, t: T, node, what, default_all=False) -> list[str]:
    if node is None:
        if default_all:
            return list(t.type.names)
        ck.err(WrongArity, f"{what} needs over = axes", None)
    names = ck.axis_names(node, "over")
    for name, span in names:
        if t.type.axis(name) is None:
            ck.err(ShapeMismatch, f"{what} over {name}, but the input {t.type} has no {name}", span,
                   hint=_did_you_mean(name, t.type.names) or f"axes of the input: {', '.join(t.type.names)}")
    ck.no_dupes(names, "over")
    return [n for n, _ in names]


@typing_rule(*sorted(REDUCTIONS))
def reduce(ck, op, node, args):
    t = ck.tensor(ck.expr(args["x"]), args["x"].span)
    over = _over(ck, t, args["over"], op, default_all=True)
    dtype = t.type.dtype if op in ("max", "min", "sum") and t.type.dtype != "bool" else "float"
    out = TensorType(tuple(a for a in t.type.axes if a.name not in over), dtype)
    roles = _passing(out)
    roles.update({n: "consumed" for n in over})
    return ck.add_box(op, [t.wire], [out], node.span, roles=roles, attrs={"over": tuple(over)})[0]


@typing_rule("argmax")
def argmax(ck, op, node, args):
    t = ck.tensor(ck.expr(args["x"]), args["x"].span)
    over = _over(ck, t, args["over"], "argmax")
    if len(over) != 1:
        ck.err(InvalidArgument, "argmax picks along one axis", args["over"].span)
    out = TensorType(tuple(a for a in t.type.axes if a.name not in over), "int")
    roles = _passing(out)
    roles[over[0]] = "consumed"
    return ck.add_box("argmax", [t.wire], [out], node.span, roles=roles, attrs={"over": tuple(over)})[0]


def _normalise(ck, node, args, op, weights_fn=None):
    t = ck.float_tensor(ck.expr(args["x"]), args["x"].span)
    over = _over(ck, t, args["over"], op)
    roles = _passing(t.type)
    roles.update({n: "consumed" for n in over})
    attrs = {"over": tuple(over)}
    weights = []
    if weights_fn is not None:
        eps = args.get("eps")
        attrs["eps"] = CATALOGUE[op].keyword_dict["eps"] if eps is None else ck.const_number(eps, "eps")
        over_t = TensorType(tuple(t.type.axis(n) for n in over))
        weights = weights_fn(over_t)
    return ck.add_box(op, [t.wire], [t.type], node.span, roles=roles, attrs=attrs, weights=weights)[0]


@typing_rule("softmax")
def softmax(ck, op, node, args):
    return _normalise(ck, node, args, "softmax")


@typing_rule("log_softmax")
def log_softmax(ck, op, node, args):
    return _normalise(ck, node, args, "log_softmax")


@typing_rule("layernorm")
def layernorm(ck, op, node, args):
    return _normalise(ck, node, args, "layernorm",
                      lambda t: [Weight("scale", t, Init("ones")), Weight("bias", t, Init("zeros"))])


@typing_rule("rmsnorm")
def rmsnorm(ck, op, node, args):
    return _normalise(ck, node, args, "rmsnorm", lambda t: [Weight("scale", t, Init("ones"))])
