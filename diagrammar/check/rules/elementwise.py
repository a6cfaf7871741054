"""Front end, typing rules: element-wise operations (unary functions, arithmetic, comparisons, select) and masks.

Operands align by axis name: the result carries the union of their axes, and
an axis on two operands must have one size.
"""
from __future__ import annotations

from ...errors import InvalidArgument, ShapeMismatch
from ...ir import CONST_FUNCTIONS, TensorType
from ...ops import COMPARISONS, ELEMENTWISE_BINARY, UNARY, UNARY_KEEP
from ..values import C, _passing, _promote
from . import typing_rule


@typing_rule(*sorted(UNARY))
def unary(ck, op, node, args):
    v = ck.expr(args["x"])
    if isinstance(v, C) and op in CONST_FUNCTIONS:  # folded when ir.eval_const knows the function
        return C(("fn", op, v.tree))
    t = ck.tensor(v, args["x"].span)
    dtype = t.type.dtype if op in UNARY_KEEP and t.type.dtype != "bool" else "float"
    out = TensorType(t.type.axes, dtype)
    attrs = {}
    if args.get("approximate") is not None and not ck.flag(args["approximate"], "gelu's approximate"):
        attrs["approximate"] = False  # the exact erf form (v1); the tanh form keeps v0's box unchanged
    return ck.add_box(op, [t.wire], [out], node.span, roles=_passing(out), attrs=attrs)[0]


@typing_rule("neg")
def neg(ck, op, node, args):
    """`-x`: node is the S.Neg, args {"x": its operand}."""
    v = ck.expr(args["x"])
    if isinstance(v, C):
        return C(("neg", v.tree))
    t = ck.tensor(v, args["x"].span)
    return ck.add_box("neg", [t.wire], [t.type], node.span, roles=_passing(t.type))[0]


@typing_rule(*(o for o in ELEMENTWISE_BINARY if o not in ("floordiv", "mod")))  # those two: rules/integers.py
def arithmetic(ck, op, node, args):
    """`a + b`, `a < b`, ...: node is the S.BinOp, args {"a": left, "b": right}."""
    a = ck.expr(args["a"])
    b = ck.expr(args["b"])
    if isinstance(a, C) and isinstance(b, C) and op not in COMPARISONS:
        return C((op, a.tree, b.tree))
    ta, tb = ck.operands([a, b], [args["a"].span, args["b"].span])
    t = ck.broadcast([ta, tb], node.span, f"cannot apply {ELEMENTWISE_BINARY[op]}")
    dtype = _promote(ta.type.dtype, tb.type.dtype)
    if op in COMPARISONS:
        dtype = "bool"
    elif op == "div":
        dtype = "float"
    elif dtype == "bool":
        dtype = "int"
    t = TensorType(t.axes, dtype)
    return ck.add_box(op, [ta.wire, tb.wire], [t], node.span, roles=_passing(t))[0]


def _elementwise(ck, node, args, op, dtype_fn):
    ts = ck.operands([ck.expr(v) for v in args.values()], [v.span for v in args.values()])
    return _elementwise_values(ck, node, ts, op, dtype_fn)


def _elementwise_values(ck, node, ts, op, dtype_fn):
    t = ck.broadcast(ts, node.span, f"cannot apply {op}")
    out = TensorType(t.axes, dtype_fn(ts))
    return ck.add_box(op, [x.wire for x in ts], [out], node.span, roles=_passing(out))[0]


@typing_rule("maximum")
def maximum(ck, op, node, args):
    return _elementwise(ck, node, args, "maximum", lambda ts: _promote(ts[0].type.dtype, ts[1].type.dtype))


@typing_rule("minimum")
def minimum(ck, op, node, args):
    return _elementwise(ck, node, args, "minimum", lambda ts: _promote(ts[0].type.dtype, ts[1].type.dtype))


@typing_rule("where")
def where(ck, op, node, args):
    cond = ck.tensor(ck.expr(args["cond"]), args["cond"].span, "the condition")
    if cond.type.dtype != "bool":
        ck.err(ShapeMismatch, f"where's condition must be bool, got {cond.type}", args["cond"].span,
               hint="comparisons (<, <=, >, >=, ==) give bool bundles")
    a, b = ck.operands([ck.expr(args["a"]), ck.expr(args["b"])], [args["a"].span, args["b"].span])
    return _elementwise_values(ck, node, [cond, a, b], "where",
                               lambda ts: _promote(ts[1].type.dtype, ts[2].type.dtype))


@typing_rule("dropout")
def dropout(ck, op, node, args):
    t = ck.float_tensor(ck.expr(args["x"]), args["x"].span)
    rate = ck.const_number(args["rate"], "dropout's rate")
    if not 0 <= rate < 1:
        ck.err(InvalidArgument, f"dropout's rate must be in [0, 1), got {rate:g}", args["rate"].span)
    return ck.add_box("dropout", [t.wire], [t.type], node.span, attrs={"rate": rate},
                      roles=_passing(t.type))[0]


@typing_rule("causal")
def causal(ck, op, node, args):
    s = ck.float_tensor(ck.expr(args["s"]), args["s"].span, "causal's scores")
    (q, qs), = ck.axis_names(args["q"], "causal's query axis")
    (k, ks), = ck.axis_names(args["k"], "causal's key axis")
    for name, span in ((q, qs), (k, ks)):
        if s.type.axis(name) is None:
            ck.err(ShapeMismatch, f"causal masks along {name}, but the scores {s.type} have no {name}", span)
    if q == k:
        ck.err(InvalidArgument, "causal needs two different axes (query and key)", node.span,
               hint="declare a key axis of the same size: axis key = seq")
    return ck.add_box("causal", [s.wire], [s.type], node.span, roles=_passing(s.type),
                      attrs={"q": q, "k": k})[0]
