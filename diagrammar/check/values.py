"""Front end, checker: the values an expression gives and the diagram under construction (scopes).

An expression checks to a `T` (a wire and its type), a `Tup` of values, a `C`
(a scalar constant folded at check time) or `POISON` (it already failed). A
`_Builder` is one diagram being built: its wires, boxes and the names in
scope; a repeat body's builder reads the enclosing one's names as inputs.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import Span
from ..ir import Box, Diagram, Port, Size, TensorType, TupleType, Wire


@dataclass(frozen=True)
class T:
    """A tensor value: the wire that carries it and its type."""
    wire: str
    type: TensorType


@dataclass(frozen=True)
class Tup:
    items: tuple


@dataclass(frozen=True)
class C:
    """A scalar constant folded at check time (a tree of ir.eval_const)."""
    tree: tuple


class _Poison:
    """The value of an expression that already failed; it fails silently."""


POISON = _Poison()


class _Skip(Exception):
    """Raised when an operand is poisoned: the error was already reported."""


@dataclass
class _BoxB:
    op: str
    inputs: list
    outputs: list
    attrs: dict
    weights: list
    roles: dict
    span: Span | None
    body: Diagram | None = None
    name: str | None = None
    label_hint: str | None = None  # base for an op-derived name


class _Builder:
    """One diagram under construction: its wires, boxes and names in scope."""

    def __init__(self, name: str, axes: dict[str, Size], parent: _Builder | None = None):
        self.name = name
        self.axes = axes  # axis name -> size, visible in this circuit
        self.wires: dict[str, Wire] = {}
        self.boxes: list[_BoxB] = []
        self.values: dict[str, Any] = {}
        self.box_names: set[str] = set()
        self.parent = parent  # a repeat body reads values of the enclosing circuit
        self.captures: list[tuple[str, Any, Any]] = []  # (name, outer value, inner value)
        self.counter = 0
        self.next_suffix: dict[tuple[str, str], int] = {}
        self.aliases: dict[str, str] = {}  # wire -> the name an unpacking gave it (`h, c = state`)

    def new_wire(self, ttype: TensorType) -> str:
        self.counter += 1
        name = f"%{self.counter}"
        self.wires[name] = Wire(name, ttype)
        return name

    def unique_wire(self, base: str) -> str:
        return self._unique(base, "@", self.wires)

    def unique_box(self, base: str, sep: str = "_") -> str:
        return self._unique(base, sep, self.box_names)

    def _unique(self, base: str, sep: str, taken) -> str:
        """`base`, or `base{sep}k` with the next free k (remembered per base, so n
        rebindings of one name cost O(n), not O(n**2))."""
        if base not in taken:
            return base
        key = (base, sep)
        k = self.next_suffix.get(key, 2)
        while f"{base}{sep}{k}" in taken:
            k += 1
        self.next_suffix[key] = k + 1
        return f"{base}{sep}{k}"

    def lookup(self, name: str):
        if name in self.values:
            return self.values[name]
        if self.parent is not None:
            outer = self.parent.lookup(name)
            if outer is None:
                return None
            inner = self._capture(name, outer)
            self.values[name] = inner
            return inner
        return None

    def _capture(self, name, outer):
        """A repeat body reads an outer value: it becomes an input of the body."""
        if isinstance(outer, (C, _Poison)):
            return outer
        if isinstance(outer, Tup):
            return Tup(tuple(self._capture(f"{name}.{i}", v) for i, v in enumerate(outer.items)))
        wire = self.unique_wire(name)
        self.wires[wire] = Wire(wire, outer.type)
        inner = T(wire, outer.type)
        self.captures.append((name, outer, inner))
        return inner

    def rename_wires(self, mapping: dict[str, str], boxes: list[_BoxB]):
        for old, new in mapping.items():
            w = self.wires.pop(old)
            self.wires[new] = Wire(new, w.type)
        for b in boxes:
            b.inputs = [mapping.get(w, w) for w in b.inputs]
            b.outputs = [mapping.get(w, w) for w in b.outputs]

    def freeze(self, inputs: tuple[Port, ...], output: Port, axis_args, span, requires=()) -> Diagram:
        boxes = tuple(
            Box(name=b.name, op=b.op, inputs=tuple(b.inputs), outputs=tuple(b.outputs),
                attrs=tuple(sorted(b.attrs.items())), weights=tuple(b.weights),
                roles=tuple(b.roles.items()), body=b.body, span=b.span)
            for b in self.boxes)
        # wires in dataflow order: inputs, then each box's outputs
        order: list[str] = []
        for p in inputs:
            order.extend(p.wires)
        for b in boxes:
            order.extend(b.outputs)
        wires = tuple(self.wires[n] for n in dict.fromkeys(order))
        aliases = tuple(sorted((w, n) for w, n in self.aliases.items() if w in self.wires and w != n))
        return Diagram(self.name, tuple(axis_args), inputs, output, wires, boxes, span, aliases, tuple(requires))


# ---------------------------------------------------------------- values and their types


def _map_value(v, fn):
    if isinstance(v, Tup):
        return Tup(tuple(_map_value(x, fn) for x in v.items))
    if isinstance(v, T):
        return fn(v)
    return v


def _flat(v) -> list:
    if isinstance(v, Tup):
        out = []
        for x in v.items:
            out.extend(_flat(x))
        return out
    return [v]


def _type_of(v):
    if isinstance(v, Tup):
        return TupleType(tuple(_type_of(x) for x in v.items))
    if isinstance(v, T):
        return v.type
    if isinstance(v, C):
        return TensorType((), "float")
    return None


def _rebuild(t, it):
    if isinstance(t, TupleType):
        return Tup(tuple(_rebuild(x, it) for x in t.items))
    return next(it)


def _add_batch(t, batch):
    if isinstance(t, TupleType):
        return TupleType(tuple(_add_batch(x, batch) for x in t.items))
    return TensorType(tuple(batch) + t.axes, t.dtype)


def _add_axis(t, axis):
    if isinstance(t, TupleType):
        return TupleType(tuple(_add_axis(x, axis) for x in t.items))
    return TensorType((axis,) + t.axes, t.dtype)


def _same_type(a, b) -> bool:
    return a is not None and b is not None and a.same(b)


def _passing(t: TensorType) -> dict[str, str]:
    return {a.name: "passing" for a in t.axes}


def _promote(a: str, b: str) -> str:
    order = {"bool": 0, "int": 1, "float": 2}
    return a if order[a] >= order[b] else b


def _is_integral(tree) -> bool:
    """A constant that is a whole number whatever the sizes (no /, sqrt, ...)."""
    kind = tree[0]
    if kind == "num":
        return math.isfinite(tree[1]) and tree[1] == int(tree[1])
    if kind == "axis":
        return True
    if kind == "neg":
        return _is_integral(tree[1])
    if kind in ("add", "sub", "mul"):
        return _is_integral(tree[1]) and _is_integral(tree[2])
    return False


def _is_whole(tree) -> bool:
    """A whole-number constant by how it is written: whole literals (`3`, not `3.0`), sizes, and
    `+ - * // %` and `int(...)` of them; `/` and functions make a constant float."""
    kind = tree[0]
    if kind == "num":
        return isinstance(tree[1], int)
    if kind == "axis":
        return True
    if kind == "neg":
        return _is_whole(tree[1])
    if kind in ("add", "sub", "mul", "floordiv", "mod"):
        return _is_whole(tree[1]) and _is_whole(tree[2])
    return kind == "fn" and tree[1] == "int"


def _has_free(tree) -> bool:
    if tree[0] == "axis":
        return not tree[2].is_const
    return any(isinstance(x, tuple) and _has_free(x) for x in tree[1:])


def _snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    s = re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", s)
    return s.lower()
