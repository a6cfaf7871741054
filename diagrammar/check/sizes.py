"""Front end, checker: axis sizes, the declared ones of a program and those written in a circuit."""
from __future__ import annotations

from collections.abc import Callable

from .. import syntax as S
from ..errors import (
    CircuitError,
    ErrorSink,
    InvalidArgument,
    RequirementFailed,
    SizeConflict,
    SizeTooLarge,
    Span,
    UnknownName,
)
from ..ir import Requirement, Size
from ..limits import MAX_INDEX
from .hints import _did_you_mean

# (axis name, where it is written) -> its size; raises CircuitError
Lookup = Callable[[str, Span], Size]


def eval_size(node, lookup: Lookup) -> Size:
    """A size expression (`d // heads`) as a Size; names are resolved by `lookup`."""
    if isinstance(node, S.SizeInt):
        return Size.of(node.value)
    if isinstance(node, S.SizeName):
        return lookup(node.name, node.span)
    if isinstance(node, S.SizeBin):
        a = eval_size(node.left, lookup)
        b = eval_size(node.right, lookup)
        if node.op == "+":
            return a + b
        if node.op == "-":
            return a - b
        if node.op == "*":
            return a * b
        if b.is_const and b.value == 0:
            raise SizeConflict("division by zero in a size", node.span)
        if node.op == "%":  # the remainder with the divisor's sign, as Python's
            return a - (a // b) * b
        return a // b
    raise InvalidArgument("not a size", node.span)


def resolve_axes(axis_decls: dict, sink: ErrorSink, overrides: dict[str, int] | None = None) -> dict[str, Size]:
    """Every declared axis's size; an axis declared again in another file must agree.

    `axis_decls` maps a name to (its AxisItem, its file); a repeated
    declaration from another file is keyed `name\\0file`. `overrides` replace
    the sizes of some axes, in every file that declares them (as if each
    declaration said `axis NAME = N`). Errors go to `sink` and leave the axis
    symbolic.
    """
    overrides = overrides or {}
    resolving: list[str] = []
    done: dict[str, Size] = {}

    def size_of(name: str, span: Span) -> Size:
        if name in done:
            return done[name]
        if name in resolving:
            cycle = " -> ".join(resolving[resolving.index(name):] + [name])
            raise SizeConflict(f"axis sizes depend on each other in a cycle: {cycle}", span)
        if name not in axis_decls:
            raise UnknownName(f"unknown axis {name!r} in a size", span,
                              hint=_did_you_mean(name, [k for k in axis_decls if "\0" not in k]))
        item, _file = axis_decls[name]
        resolving.append(name)
        try:
            if name in overrides:
                s = Size.of(overrides[name])
            elif item.size is None:
                s = Size.symbol(name)
            else:
                s = eval_size(item.size, lambda n, sp: size_of(n, sp))
                _check_positive(s, item)
        finally:
            resolving.pop()
        done[name] = s
        return s

    for key, (item, _file) in list(axis_decls.items()):
        try:
            if "\0" not in key:
                size_of(item.name, item.span)
            else:
                mine = Size.of(overrides[item.name]) if item.name in overrides else \
                    item.size and eval_size(item.size, lambda n, sp: size_of(n, sp))
                other = done.get(item.name) or size_of(item.name, item.span)
                if item.size is not None and mine != other:
                    sink.add(SizeConflict(
                        f"axis {item.name} = {mine} here, but {other} in {axis_decls[item.name][1]}",
                        item.span, hint="an axis has one size in a whole program; use another name"))
        except CircuitError as e:
            sink.add(e)
            done.setdefault(item.name, Size.symbol(item.name))
    return dict(done)


def check_overrides(overrides: dict, axis_decls: dict, axis_params: dict[str, list[str]],
                    root: str = "the program") -> list[CircuitError]:
    """The errors of size overrides (`--size d=64`, `load(..., sizes=...)`): each must name an axis some
    file declares and give it a whole number of at least 1. `axis_params` maps an axis parameter's name
    to the circuits that have it (for the hint: those are set at calls, never overridden)."""
    errors: list[CircuitError] = []
    declared = [k for k in axis_decls if "\0" not in k]
    for name, value in overrides.items():
        if name not in axis_decls:
            owners = axis_params.get(name)
            hint = (f"{name} is an axis parameter of {owners[0]}, set where it is called: {owners[0]}[{name} = N](...)"
                    if owners else _did_you_mean(name, declared)
                    or ("declared axes: " + ", ".join(declared) if declared else "the program declares no axis"))
            errors.append(UnknownName(f"cannot override the size of {name}: {root} declares no axis {name} "
                                      "(nor does a file it uses)", None, hint=hint))
        elif whole_size(value) is None:
            errors.append(InvalidArgument(f"the size of {name} must be a whole number, got {value!r}", None))
        elif whole_size(value) < 1:
            errors.append(SizeTooLarge(f"the size of {name} must be at least 1, got {whole_size(value)}", None))
        elif whole_size(value) > MAX_INDEX:
            errors.append(SizeTooLarge(f"the size of {name} must be at most {MAX_INDEX:,} (limits.MAX_INDEX), got "
                                       f"{whole_size(value):,}", None))
    return errors


def whole_size(value) -> int | None:
    """`value` as a whole number (an int, a NumPy integer, or a float such as 64.0), else None."""
    if isinstance(value, (bool, str)):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        return int(value.__index__())
    except (AttributeError, TypeError):
        return None


def requirement(node: S.Require, lookup: Lookup) -> Requirement | None:
    """A `require`: decided now when its sizes allow (raises RequirementFailed when it does not hold;
    None when it does), else the Requirement to decide once the free sizes it reads are bound."""
    left = eval_size(node.left, lookup)
    right = eval_size(node.right, lookup)
    names: dict[str, Size] = {}
    for side in (node.left, node.right):
        for n in _size_names(side):
            if n.name not in names:
                names[n.name] = lookup(n.name, n.span)
    r = Requirement(left, node.op, right, f"{S.size_text(node.left)} {node.op} {S.size_text(node.right)}",
                    tuple(names.items()), node.span)
    holds = r.holds({})
    if holds is None:
        return r
    if not holds:
        raise RequirementFailed(r.failure(), node.span)
    return None


def _size_names(node):
    if isinstance(node, S.SizeName):
        yield node
    elif isinstance(node, S.SizeBin):
        yield from _size_names(node.left)
        yield from _size_names(node.right)


def _check_positive(s: Size, item):
    if s.is_const and s.value <= 0:
        raise SizeTooLarge(f"axis {item.name} has size {s.value}; sizes must be at least 1", item.span)
    if s.is_const and s.value > MAX_INDEX:
        raise SizeTooLarge(f"axis {item.name} has size {s.value:,}, over the limit of {MAX_INDEX:,} "
                           "(limits.MAX_INDEX)", item.span, hint="positions along an axis are int32 indices")


def global_lookup(global_axes: dict[str, Size], params: dict[str, Size]) -> Lookup:
    """Names in a circuit's axis parameter defaults: earlier parameters, then declared axes."""
    def lookup(n, sp):
        if n in params:
            return params[n]
        if n in global_axes:
            return global_axes[n]
        raise UnknownName(f"unknown axis {n!r} in a size", sp,
                          hint=_did_you_mean(n, list(global_axes) + list(params)))
    return lookup
