"""Front end, checker: axis sizes, the declared ones of a program and those written in a circuit."""
from __future__ import annotations

from collections.abc import Callable

from .. import syntax as S
from ..errors import (
    CircuitError,
    ErrorSink,
    InvalidArgument,
    SizeConflict,
    SizeTooLarge,
    Span,
    UnknownName,
)
from ..ir import Size
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
        return a // b
    raise InvalidArgument("not a size", node.span)


def resolve_axes(axis_decls: dict, sink: ErrorSink) -> dict[str, Size]:
    """Every declared axis's size; an axis declared again in another file must agree.

    `axis_decls` maps a name to (its AxisItem, its file); a repeated
    declaration from another file is keyed `name\\0file`. Errors go to `sink`
    and leave the axis symbolic.
    """
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
            if item.size is None:
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
                mine = item.size and eval_size(item.size, lambda n, sp: size_of(n, sp))
                other = done.get(item.name) or size_of(item.name, item.span)
                if item.size is not None and mine != other:
                    sink.add(SizeConflict(
                        f"axis {item.name} = {mine} here, but {other} in {axis_decls[item.name][1]}",
                        item.span, hint="an axis has one size in a whole program; use another name"))
        except CircuitError as e:
            sink.add(e)
            done.setdefault(item.name, Size.symbol(item.name))
    return dict(done)


def _check_positive(s: Size, item):
    if s.is_const and s.value <= 0:
        raise SizeTooLarge(f"axis {item.name} has size {s.value}; sizes must be at least 1", item.span)


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
