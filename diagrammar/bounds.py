"""Size rules decided when the sizes are known: by the checker, or once the free sizes are bound.

Each rule lives here once and is read by the checker (every size known at
check time, a program with `--size` overrides included) and by the backends
(free sizes bound by `compile(...)` or `stats --set`): the per-weight element
budget, `require` (`ir.Requirement`), and the element counts of `merge` and
`split`. It reads the IR only, so importing it never imports jax.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

from .errors import CircuitError, InvalidArgument, RequirementFailed, SizeConflict, Span
from .ir import Box, Diagram, const_label, const_symbols, eval_const, eval_whole

__all__ = [
    "DEFAULT_MAX_WEIGHT_ELEMENTS",
    "constant_failure",
    "failures",
    "int_value",
    "over_budget",
    "raise_first",
    "slice_failure",
]

DEFAULT_MAX_WEIGHT_ELEMENTS = 2 ** 31  # the largest weight, counting every copy of a repeat or dispatch


def over_budget(per_copy: int, copies: int, budget: int) -> str | None:
    """None when `copies` copies of a weight of `per_copy` elements fit `budget`; else its count as
    a message says it.

    >>> over_budget(1000, 1, 10 ** 6) is None
    True
    >>> over_budget(10 ** 6, 4000, 2 ** 31)
    '1,000,000 elements per copy x 4,000 copies = 4,000,000,000'
    """
    total = per_copy * copies
    if total <= budget:
        return None
    return f"{per_copy:,} elements" + (f" per copy x {copies:,} copies = {total:,}" if copies > 1 else "")


def diagrams(d: Diagram) -> Iterator[Diagram]:
    """`d` and every diagram nested in it, each once, in source order (so the first failure found is the
    first in the text)."""
    seen: set[int] = set()
    stack = [d]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        stack.extend(b.body for b in reversed(x.boxes) if b.body is not None)


def failures(diagram: Diagram, bindings: dict[str, int]) -> list[CircuitError]:
    """Every requirement and every merge or split element count that fails with these free sizes,
    in source order. What reads a size left unbound is not decided (and not reported)."""
    found: dict[tuple, CircuitError] = {}
    for x in diagrams(diagram):
        for r in x.requires:
            if r.holds(bindings) is False:
                key = (r.span, r.text)
                found.setdefault(key, RequirementFailed(r.failure(bindings), r.span))
        for b in x.boxes:
            e = constant_failure(x, b, bindings)  # slice bounds and constants (v1), below
            if e is not None:
                found.setdefault((b.span, b.op), e)
            e = topk_failure(x, b, bindings) if b.op == "topk" else None
            if e is not None:
                found.setdefault((b.span, b.op), e)
            if b.op not in ("merge", "split"):
                continue
            try:
                n_in = sum(x.wire(w).type.numel().evaluate(bindings) for w in b.inputs)
                n_out = sum(x.wire(w).type.numel().evaluate(bindings) for w in b.outputs)
            except (KeyError, ZeroDivisionError):
                continue
            if n_in != n_out:
                found.setdefault((b.span, b.op), SizeConflict(
                    f"{b.op} {b.name} turns {n_in} elements into {n_out} with these sizes", b.span))
    return sorted(found.values(), key=lambda e: (e.span is None, e.span or Span("", 0, 0, 0, 0)))


def topk_failure(d: Diagram, b: Box, bindings: dict[str, int]) -> CircuitError | None:
    """A topk that picks more entries than its axis has, with these sizes (None when it fits or is unknown)."""
    over, k = b.attr("over"), b.attr("k")
    try:
        n_over = d.wire(b.inputs[0]).type.axis(over).size.evaluate(bindings)
        n_k = d.wire(b.outputs[0]).type.axis(k).size.evaluate(bindings)
    except (KeyError, ZeroDivisionError):
        return None
    if n_k <= n_over:
        return None
    return SizeConflict(f"topk {b.name} picks {k} = {n_k} entries, but {over} has only {n_over} with these sizes",
                        b.span, hint=f"bind {k} to at most the size of {over}")


def raise_first(diagram: Diagram, bindings: dict[str, int]) -> None:
    """Raise the first failure in source order (what `compile` does before allocating anything)."""
    found = failures(diagram, bindings)
    if found:
        raise found[0]


# ---------------------------------------------------------------- slices and constants (v1)

INT32 = (-2 ** 31, 2 ** 31 - 1)
FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32; a float is float32 in every backend


def int_value(tree, bindings: dict[str, int] | None = None, span: Span | None = None) -> int:
    """The exact value of a folded constant (`ir.eval_const`'s tree) that becomes an int. An
    InvalidArgument where it has none (a division by zero, `int(inf)`) or int32 cannot hold it.

    >>> int_value(("floordiv", ("num", -7), ("num", 2)))
    -4
    """
    try:
        v = eval_whole(tree, bindings)
    except ZeroDivisionError:
        raise InvalidArgument(f"{const_label(tree)} divides by zero", span) from None
    except (ValueError, OverflowError):
        raise InvalidArgument(f"{const_label(tree)} is not a finite number, so no int holds it", span) from None
    if not INT32[0] <= v <= INT32[1]:
        what = str(v) if tree[0] == "num" else f"{const_label(tree)} = {v}"
        raise InvalidArgument(f"the int constant {what} does not fit in int32", span,
                              hint=f"ints are 32-bit: from {INT32[0]:,} to {INT32[1]:,}")
    return v


def slice_failure(a: str, n_a: int, b: str, n_b: int, start, bindings: dict[str, int] | None,
                  span: Span | None) -> CircuitError | None:
    """The SizeConflict of `slice(x, a -> b, start)` when its range leaves `a`, else None.

    `start` is the constant's tree; a negative start counts from the end.
    """
    first = int_value(start, bindings, span)
    s = first if first >= 0 else n_a + first
    if 0 <= s and s + n_b <= n_a:
        return None
    bound = sorted(bindings or {})
    sizes = f" (free sizes bound: {', '.join(f'{k} = {bindings[k]}' for k in bound)})" if bound else ""
    if n_b > n_a:
        hint = f"{b} (size {n_b}) is longer than {a} (size {n_a})"
    else:
        hint = (f"to keep the {n_b} positions of {b} inside {a}, start from 0 to {n_a - n_b}, "
                f"or from -{n_a} to -{n_b} counting from the end")
    return SizeConflict(f"slice({a} -> {b}, {const_label(start)}) reads {a}[{s}:{s + n_b}], but {a} has "
                        f"{n_a} positions{sizes}", span, hint=hint)


def constant_failure(x: Diagram, b: Box, bindings: dict[str, int]) -> CircuitError | None:
    """What the bound free sizes make wrong in one box: a slice out of range, a constant that divides by
    zero or that int32 cannot hold, and the same in a param's initialiser expression. The checker
    decided these where no free size was involved, so only those are looked at here."""
    try:
        if b.op == "slice":
            a_size = x.wire(b.inputs[0]).type.axis(b.attr("axis")).size
            b_size = x.wire(b.outputs[0]).type.axis(b.attr("dst")).size
            start = b.attr("start")
            if a_size.is_const and b_size.is_const and not const_symbols(start):
                return None
            return slice_failure(b.attr("axis"), a_size.evaluate(bindings), b.attr("dst"), b_size.evaluate(bindings),
                                 start, bindings, b.span)
        tree = b.attr("value")
        if b.op in ("const", "full") and const_symbols(tree):
            if x.wire(b.outputs[0]).type.dtype == "int":
                int_value(tree, bindings, b.span)
            else:
                try:
                    v = eval_const(tree, bindings)
                    if math.isfinite(v) and abs(v) > FLOAT32_MAX:
                        return InvalidArgument(f"{const_label(tree)} = {v:g} does not fit in float32 with these "
                                               "sizes", b.span)
                except ZeroDivisionError:
                    return InvalidArgument(f"{const_label(tree)} divides by zero with these sizes", b.span)
                except (ValueError, OverflowError):
                    return InvalidArgument(f"{const_label(tree)} has no value with these sizes", b.span)
        if b.op in ("floordiv", "mod"):
            div = next((c for c in x.boxes if c.op == "const" and b.inputs[1] in c.outputs), None)
            if div is not None and const_symbols(div.attr("value")) and \
                    int_value(div.attr("value"), bindings, b.span) == 0:
                sym = "//" if b.op == "floordiv" else "%"
                return InvalidArgument(f"{sym} by {const_label(div.attr('value'))}, which is 0 with these sizes",
                                       b.span)
        for w in b.weights:
            if w.init.expr is not None:
                found = failures(w.init.expr, bindings)
                if found:
                    return found[0]
    except CircuitError as e:
        return e
    except (KeyError, ZeroDivisionError):  # reads a size left unbound: not decided
        return None
    return None
