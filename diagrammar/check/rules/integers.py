"""Front end, typing rules: casts (`int(x)`, `float(x)`, `bool(x)`) and integer division (`//`, `%`).

`//` and `%` take ints only (int or bool wires, whole-number constants) and
floor as Python does. A cast keeps the axes and sets the dtype; a cast of a
constant folds (`int(2.7)` is the constant 2) except `bool`, which has no
constant form and makes a bool scalar.
"""
from __future__ import annotations

import math

from ...bounds import int_value
from ...errors import InvalidArgument, ShapeMismatch
from ...ir import TensorType, const_label, eval_const
from ..values import C, T, _has_free, _is_whole, _passing
from . import typing_rule

_SYMBOL = {"floordiv": "//", "mod": "%"}


@typing_rule("int", "float", "bool")
def cast(ck, op, node, args):
    """`int(x)`: node is the S.Cast, args {"x": its operand}."""
    v = ck.expr(args["x"])
    span = args["x"].span
    if isinstance(v, C) and op != "bool":
        if op == "int" and _is_whole(v.tree) or op == "float" and not _is_whole(v.tree):
            return v  # already what it is cast to
        folded = C(("fn", op, v.tree))
        if op == "int" and not _has_free(v.tree):
            try:
                finite = math.isfinite(eval_const(v.tree))
            except (ValueError, OverflowError, ZeroDivisionError):
                finite = False
            if not finite:
                ck.err(InvalidArgument, f"int({const_label(v.tree)}) has no value: the constant is not finite",
                       node.span)
        return folded
    t = ck.tensor(v, span, f"{op}'s operand")
    out = TensorType(t.type.axes, op)
    return ck.add_box(op, [t.wire], [out], node.span, roles=_passing(out))[0]


@typing_rule("floordiv", "mod")
def integer_division(ck, op, node, args):
    """`a // b`, `a % b`: node is the S.BinOp, args {"a": left, "b": right}."""
    sym = _SYMBOL[op]
    values = []
    for key in ("a", "b"):
        v = ck.expr(args[key])
        span = args[key].span
        if isinstance(v, C):
            if not _is_whole(v.tree):
                ck.err(ShapeMismatch, f"{sym} takes ints, but {const_label(v.tree)} is a float constant", span,
                       hint="a whole number is written without '.' (3, not 3.0); int(x) truncates toward zero")
        else:
            v = ck.tensor(v, span, f"{sym}'s operand")
            if v.type.dtype == "float":
                ck.err(ShapeMismatch, f"{sym} takes ints, but this operand is {v.type}", span,
                       hint="convert it: int(x) truncates toward zero; or divide floats with /")
        values.append(v)
    a, b = values
    if isinstance(b, C) and not _has_free(b.tree) and int_value(b.tree, None, args["b"].span) == 0:
        ck.err(InvalidArgument, f"{sym} by {const_label(b.tree)}, which is 0", args["b"].span)
    if isinstance(a, C) and isinstance(b, C):
        return C((op, a.tree, b.tree))
    ta, tb = (x if isinstance(x, T) else ck.materialise(x, args[k].span, "int") for x, k in zip(values, "ab"))
    t = ck.broadcast([ta, tb], node.span, f"cannot apply {sym}")
    out = TensorType(t.axes, "int")
    return ck.add_box(op, [ta.wire, tb.wire], [out], node.span, roles=_passing(out))[0]
