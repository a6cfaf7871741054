"""Front end, checker: what a diagnostic adds to its message (close names, types side by side, the fix)."""
from __future__ import annotations

import difflib

from ..ir import Size, TensorType


def _did_you_mean(name: str, options) -> str | None:
    close = difflib.get_close_matches(name, sorted(set(options)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _fmt_size(s: Size) -> str:
    return str(s)


def type_table(left: TensorType, right: TensorType, lname: str = "expected", rname: str = "found") -> list[str]:
    """Both types axis by axis, sizes shown, '-' where an axis is missing."""
    names = list(left.names) + [n for n in right.names if n not in left.names]
    rows = [("axis", lname, rname)]
    for n in names:
        a, b = left.axis(n), right.axis(n)
        rows.append((n, _fmt_size(a.size) if a else "-", _fmt_size(b.size) if b else "-"))
    if left.dtype != right.dtype:
        rows.append(("dtype", left.dtype, right.dtype))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return [f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]}" for r in rows]


def mismatch_hint(want: TensorType, got: TensorType, what: str = "x") -> str | None:
    """Name the fix for the commonest shape mistakes."""
    missing = [a for a in want.axes if got.axis(a.name) is None]
    extra = [a for a in got.axes if want.axis(a.name) is None]
    if want.dtype != got.dtype:
        if got.dtype == "int" and want.dtype == "float":
            return (f"convert it: float({what}); indices become one-hot floats through onehot({what}, axis) "
                    f"or embed({what}, vocab -> d)")
        if got.dtype == "bool" and want.dtype == "float":
            return f"convert it: float({what}) gives 0 or 1"
        if got.dtype == "float" and want.dtype == "int":
            return f"convert it: int({what}) truncates toward zero"
        return None
    if len(missing) == 1 and len(extra) == 1:
        m, e = missing[0], extra[0]
        if m.size == e.size:
            return f"rename the axis: rename({what}, {e.name} -> {m.name})"
        return f"map the axis: linear({what}, {e.name} -> {m.name})"
    if not missing and extra:
        over = extra[0].name if len(extra) == 1 else "(" + ", ".join(a.name for a in extra) + ")"
        return f"reduce the extra axes: sum({what}, over = {over}), or take one position with take()"
    if missing and not extra:
        return "the value lacks " + ", ".join(a.name for a in missing) + "; a stack() or onehot() may be missing"
    return None
