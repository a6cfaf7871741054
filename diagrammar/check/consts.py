"""Front end, checker: constants folded at check time.

`check_int32`: a constant that becomes an int must have an int value that int32 holds. The rule
itself (`bounds.int_value`) is shared with the backends, which apply it once the free sizes are
bound to a constant that reads them.

`folded`: the value of a constant, where folding it in Python would raise or give a value no
program means: a math domain error (`log(-1)`, `sqrt(-1)`), an overflow (`exp(1000)`, `1e300 * 1e300`),
NaN (`0 * inf`, `inf - inf`), a division by zero, or an infinity where a finite number is needed.
Each is an InvalidArgument at the constant's span. `inf` and `-inf` as written stay legal where a
float is (`where(m, x, -inf)`, `x + inf`).
"""
from __future__ import annotations

import math

from ..bounds import FLOAT32_MAX, int_value
from ..errors import InvalidArgument, Span
from ..ir import _CASTS, _CONST_FNS, const_label, eval_whole
from .values import _has_free

_SYM = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def check_int32(ck, tree, span) -> None:
    """Refuse, when checking, a constant made int that has no int value or that int32 cannot hold
    (one reading a free size is checked when the sizes are bound)."""
    if not _has_free(tree):
        int_value(tree, None, span)


def check_float(ck, tree, span) -> None:
    """Refuse, when checking, a float constant that has no value (see `folded`) or that float32 cannot
    hold (a float is float32 in every backend, so `1e39` would become inf); one reading a free size is
    checked when the sizes are bound."""
    if not _has_free(tree):
        check_float32(folded(tree, span), tree, span)


def check_float32(v: float, tree, span) -> None:
    """Refuse a finite folded value beyond float32's range (inf as written stays legal)."""
    if math.isfinite(v) and abs(v) > FLOAT32_MAX:
        label = const_label(tree)
        try:
            plain = float(label) == v
        except ValueError:
            plain = False
        what = label if plain else f"{label} = {v:g}"
        raise InvalidArgument(f"{what} does not fit in float32: it would become "
                              f"{'-' if v < 0 else ''}inf", span,
                              hint=f"floats are 32-bit: at most about {FLOAT32_MAX:.4g} in size; write inf for an "
                                   "infinity")


def folded(tree, span: Span | None, *, finite: bool = False, what: str | None = None) -> float:
    """The value of a constant with no free size, as a float; an InvalidArgument at `span` where it
    has none (see the module's docstring). `finite`: an infinity is refused too (`what` names the
    argument in the message)."""
    v = _fold(tree, span)
    if finite and not math.isfinite(v):
        name = what or "this constant"
        raise InvalidArgument(f"{name} must be a finite number; {const_label(tree)} is {v}", span)
    return v


def _fold(tree, span) -> float:
    kind = tree[0]
    if kind == "num":
        return float(tree[1])
    if kind == "axis":
        return float(tree[2].value)
    if kind == "neg":
        return -_fold(tree[1], span)
    label = const_label(tree)
    if kind in ("floordiv", "mod"):
        try:
            return float(eval_whole(tree))
        except ZeroDivisionError:
            raise InvalidArgument(f"{label} divides by zero", span) from None
        except (ValueError, OverflowError):
            raise InvalidArgument(f"{label} is not a finite number, so no int holds it", span) from None
    if kind == "fn":
        x = _fold(tree[2], span)
        name = tree[1]
        if name == "int" and not math.isfinite(x):
            raise InvalidArgument(f"{label} has no value: {const_label(tree[2])} is {x}", span)
        try:
            v = float((_CASTS.get(name) or _CONST_FNS[name])(x))
        except ValueError:
            raise InvalidArgument(f"{label} has no value: {x:g} is outside the domain of {name}", span) from None
        except OverflowError:
            v = math.inf
        if math.isnan(v) and not math.isnan(x):
            raise InvalidArgument(f"{label} has no value: {x:g} is outside the domain of {name}", span)
        if math.isinf(v) and math.isfinite(x):
            raise InvalidArgument(f"{label} overflows: it is too large for a float", span,
                                  hint="the largest float is about 1.8e308 (3.4e38 in float32)")
        return v
    a, b = _fold(tree[1], span), _fold(tree[2], span)
    if kind == "div" and b == 0:
        raise InvalidArgument(f"{label} divides by zero", span)
    try:
        v = {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b, "div": lambda: a / b}[kind]()
    except OverflowError:
        v = math.inf
    if math.isnan(v):
        step = f"{a:g} {_SYM[kind]} {b:g}"
        raise InvalidArgument(f"{label} is NaN (not a number)" + ("" if step == label else f": {step}"), span)
    if math.isinf(v) and math.isfinite(a) and math.isfinite(b):
        raise InvalidArgument(f"{label} overflows: it is too large for a float", span,
                              hint="the largest float is about 1.8e308 (3.4e38 in float32)")
    return v
