"""Front end, stage 2: resolve `use`, axis sizes and every wire's type; build the IR.

The checker walks each circuit once per set of axis arguments, giving every
expression a typed value and recording boxes and wires as it goes. Errors are
collected (one per statement at most, so a mistake does not cascade) and
raised together at the end. It never imports a backend.
"""
from __future__ import annotations

import difflib
import gc
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _resources
from . import syntax as S
from .errors import (AxisValueClash, CircuitError, CircuitSyntaxError, DuplicateDefinition, ErrorSink,
                     InvalidArgument, NoReturn, RecursiveCircuit, ShapeMismatch, SizeConflict,
                     SizeTooLarge, Span, UnknownName, UseNotFound, UseOutsideRoots, WrongArity)
from .ir import (Axis, Box, Diagram, Init, Port, Size, TensorType, TupleType, Weight, Wire,
                 const_label, eval_const, flat_types)

DEFAULT_MAX_WEIGHT_ELEMENTS = 2 ** 31

# ---------------------------------------------------------------- operation tables

ELEMENTWISE_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/",
                      "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "=="}
COMPARISONS = {"lt", "le", "gt", "ge", "eq"}
UNARY_FLOAT = {"gelu", "silu", "tanh", "sigmoid", "softplus", "exp", "log", "sqrt"}
UNARY_KEEP = {"relu", "abs", "square"}
UNARY = UNARY_FLOAT | UNARY_KEEP
REDUCTIONS = {"sum", "mean", "max", "min", "logsumexp"}
INITIALISERS = {"zeros", "ones", "normal", "uniform", "lecun", "glorot"}
REQUIRED = object()

# Signatures: positional parameter names, then keywords with defaults.
SIGNATURES: dict[str, tuple[list[str], dict[str, Any]]] = {
    "linear": (["x", "map"], {"bias": True}),
    "dot": (["a", "b"], {"over": REQUIRED}),
    "softmax": (["x"], {"over": REQUIRED}),
    "log_softmax": (["x"], {"over": REQUIRED}),
    "argmax": (["x"], {"over": REQUIRED}),
    "layernorm": (["x"], {"over": REQUIRED, "eps": 1e-5}),
    "rmsnorm": (["x"], {"over": REQUIRED, "eps": 1e-6}),
    "causal": (["s", "q", "k"], {}),
    "onehot": (["i", "a"], {}),
    "embed": (["i", "map"], {}),
    "arange": (["a"], {}),
    "size": (["a"], {}),
    "gather": (["x", "i"], {"along": REQUIRED}),
    "take": (["x", "a", "k"], {}),
    "rename": (["x", "map"], {}),
    "merge": (["x", "map"], {}),
    "split": (["x", "map"], {}),
    "conv": (["x", "map"], {"over": REQUIRED, "kernel": REQUIRED, "padding": "same", "bias": True, "stride": 1}),
    "pool": (["x"], {"over": REQUIRED, "window": REQUIRED, "op": "max", "stride": None}),
    "dropout": (["x", "rate"], {}),
    "where": (["cond", "a", "b"], {}),
    "maximum": (["a", "b"], {}),
    "minimum": (["a", "b"], {}),
}
for _r in REDUCTIONS:
    SIGNATURES[_r] = (["x"], {"over": None})
for _u in UNARY:
    SIGNATURES[_u] = (["x"], {})
VARIADIC = {"einsum", "stack", "concat", "scan"}
OPERATIONS = sorted(set(SIGNATURES) | VARIADIC)
OWNS_WEIGHTS = {"linear", "embed", "layernorm", "rmsnorm", "conv", "param", "call", "repeat", "scan"}


# ---------------------------------------------------------------- values


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


def _snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    s = re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", s)
    return s.lower()


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
            return f"int indices become floats through onehot({what}, axis) or embed({what}, vocab -> d)"
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


# ---------------------------------------------------------------- builders


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

    def __init__(self, name: str, axes: dict[str, Size], parent: "_Builder | None" = None):
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

    def freeze(self, inputs: tuple[Port, ...], output: Port, axis_args, span) -> Diagram:
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
        return Diagram(self.name, tuple(axis_args), inputs, output, wires, boxes, span, aliases)


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


# ---------------------------------------------------------------- the program


@dataclass
class _CircuitSrc:
    node: S.CircuitDef
    file: str


class Program:
    """A checked program: every circuit of a file and the files it uses.

    `program["Name"]` is the circuit's typed diagram with its axis parameters
    at their defaults; `program.instantiate("Name", hidden=256)` sets them.
    """

    def __init__(self, checker: "Checker", root: str, diagrams: dict[str, Diagram]):
        self._checker = checker
        self.file = root
        self._diagrams = diagrams

    @property
    def circuits(self) -> list[str]:
        """Names of all circuits, those of the root file first, in source order."""
        return list(self._diagrams)

    @property
    def axes(self) -> dict[str, Size]:
        """Every top-level axis and its size (symbolic where bound at compile time)."""
        return dict(self._checker.global_axes)

    @property
    def axis_formulas(self) -> dict[str, str]:
        """Axis -> its size as declared (`dk` -> `d // heads`), for legends and docs."""
        return {name: S.size_text(item.size) for name, (item, _file) in self._checker.axis_decls.items()
                if "\0" not in name and item.size is not None}

    @property
    def own_circuits(self) -> list[str]:
        """Circuits defined in the program's own file (not those it `use`s), in source order."""
        return [n for n in self._diagrams if self._checker.circuits[n].file == self.file]

    def __getitem__(self, name: str) -> Diagram:
        if name not in self._diagrams:
            hint = _did_you_mean(name, self._diagrams)
            raise KeyError(f"no circuit named {name!r} in {self.file}"
                           + (f"; {hint}" if hint else f"; circuits: {', '.join(self._diagrams)}"))
        return self._diagrams[name]

    def __contains__(self, name: str) -> bool:
        return name in self._diagrams

    def __iter__(self):
        return iter(self._diagrams)

    def instantiate(self, name: str, **axis_args: int) -> Diagram:
        """The circuit with some axis parameters set (raises CircuitError)."""
        self[name]
        sink = ErrorSink()
        self._checker.sink = sink
        sizes = {k: Size.of(int(v)) for k, v in axis_args.items()}
        src = self._checker.circuits[name]
        unknown = [k for k in sizes if k not in {a.name for a in src.node.axis_params}]
        if unknown:
            raise InvalidArgument(f"{name} has no axis parameter {unknown[0]!r}", src.node.name_span,
                                  source=self._checker.sources.get(src.file))
        d = self._checker.instantiate(name, sizes, src.node.span)
        sink.raise_if_any(self._checker.sources)
        return d

    def __repr__(self) -> str:
        return f"<Program {self.file}: {', '.join(self._diagrams)}>"


class Checker:
    """Loads files, resolves names and sizes, and instantiates circuits into diagrams."""

    def __init__(self, roots: list[Path], max_weight_elements: int = DEFAULT_MAX_WEIGHT_ELEMENTS):
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.max_weight_elements = max_weight_elements
        self.sink = ErrorSink()
        self.sources: dict[str, str] = {}
        self.modules: dict[str, S.Module] = {}
        self.axis_decls: dict[str, tuple[S.AxisItem, str]] = {}
        self.global_axes: dict[str, Size] = {}
        self.circuits: dict[str, _CircuitSrc] = {}
        self.root_order: list[str] = []
        self.cache: dict[tuple, Diagram] = {}
        self.stack: list[str] = []

    # ---------------------------------------------------- loading files

    def load_file(self, path: Path, display: str, span: Span | None = None) -> S.Module | None:
        real = str(Path(os.path.realpath(path)))
        if real in self.modules:
            return self.modules[real]
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            self.sink.add(CircuitSyntaxError(f"{display} is not UTF-8 text", span))
            return None
        except OSError as e:
            self.sink.add(UseNotFound(f"cannot read {display}: {e.strerror}", span))
            return None
        return self.load_text(text, display, real, base=path.parent)

    def load_text(self, text: str, display: str, key: str, base: Path | None) -> S.Module | None:
        self.sources[display] = text
        try:
            module = S.parse_module(text, display)
        except CircuitError as e:
            e.source = text
            self.sink.add(e)
            self.modules[key] = None
            return None
        self.modules[key] = module
        for use in module.uses:
            self._resolve_use(use, base)
        self._collect(module)
        return module

    def _resolve_use(self, use: S.Use, base: Path | None):
        rel = use.path
        if not rel.endswith(".circuit"):
            self.sink.add(UseNotFound(f"use names a .circuit file, got {rel!r}", use.span))
            return
        if os.path.isabs(rel) or rel.startswith("~"):
            self.sink.add(UseOutsideRoots(f"use paths are relative; {rel!r} is absolute", use.span,
                                          hint="write the path relative to this file or to diagrammar's circuits/"))
            return
        candidates = ([base / rel] if base is not None else []) + [_resources.circuits_dir() / rel]
        for cand in candidates:
            real = Path(os.path.realpath(cand))
            if not self._inside(real):
                # refused before it is read, even when it exists
                self.sink.add(UseOutsideRoots(
                    f"use {rel!r} points outside the search roots; it was not read", use.span,
                    hint="search roots: " + ", ".join(self._display(r) for r in self.roots)))
                return
            if real.is_file():
                self.load_file(real, self._display(real), use.span)
                return
        self.sink.add(UseNotFound(f"no file {rel!r} next to this file or in diagrammar's circuits/", use.span))

    def _inside(self, real: Path) -> bool:
        return any(real == r or r in real.parents for r in self.roots)

    def _display(self, p: Path) -> str:
        """A path as the user will recognise it: relative to the working folder when below it."""
        try:
            rel = os.path.relpath(p)
        except ValueError:
            return str(p)
        return str(p) if rel.startswith("..") else rel

    def _collect(self, module: S.Module):
        seen_here: set[str] = set()
        for decl in module.axes:
            for item in decl.items:
                prev = self.axis_decls.get(item.name)
                if item.name in seen_here:
                    self.sink.add(DuplicateDefinition(f"axis {item.name} is declared twice", item.span,
                                                      hint=f"first declared at {prev[0].span}" if prev else None))
                    continue
                seen_here.add(item.name)
                if prev is not None and prev[1] != module.file:
                    # the same axis in two files is fine when the sizes agree (checked later)
                    self.axis_decls.setdefault(f"{item.name}\0{module.file}", (item, module.file))
                    continue
                self.axis_decls[item.name] = (item, module.file)
        for c in module.circuits:
            prev = self.circuits.get(c.name)
            if prev is not None:
                if prev.node is c:
                    continue
                self.sink.add(DuplicateDefinition(f"circuit {c.name} is defined twice", c.name_span,
                                                  hint=f"first defined at {prev.node.name_span}"))
                continue
            self.circuits[c.name] = _CircuitSrc(c, module.file)

    # ---------------------------------------------------- global axes

    def resolve_axes(self):
        resolving: list[str] = []
        done: dict[str, Size] = {}

        def size_of(name: str, span: Span) -> Size:
            if name in done:
                return done[name]
            if name in resolving:
                cycle = " -> ".join(resolving[resolving.index(name):] + [name])
                raise SizeConflict(f"axis sizes depend on each other in a cycle: {cycle}", span)
            if name not in self.axis_decls:
                raise UnknownName(f"unknown axis {name!r} in a size", span,
                                  hint=_did_you_mean(name, [k for k in self.axis_decls if "\0" not in k]))
            item, _file = self.axis_decls[name]
            resolving.append(name)
            try:
                if item.size is None:
                    s = Size.symbol(name)
                else:
                    s = self.eval_size(item.size, lambda n, sp: size_of(n, sp))
                    self._check_positive(s, item)
            finally:
                resolving.pop()
            done[name] = s
            return s

        for key, (item, _file) in list(self.axis_decls.items()):
            try:
                s = size_of(item.name, item.span) if "\0" not in key else None
                if "\0" in key:
                    mine = item.size and self.eval_size(item.size, lambda n, sp: size_of(n, sp))
                    other = done.get(item.name) or size_of(item.name, item.span)
                    if item.size is not None and mine != other:
                        self.sink.add(SizeConflict(
                            f"axis {item.name} = {mine} here, but {other} in {self.axis_decls[item.name][1]}",
                            item.span, hint="an axis has one size in a whole program; use another name"))
            except CircuitError as e:
                self.sink.add(e)
                done.setdefault(item.name, Size.symbol(item.name))
        self.global_axes = {k: v for k, v in done.items()}

    def _check_positive(self, s: Size, item):
        if s.is_const and s.value <= 0:
            raise SizeTooLarge(f"axis {item.name} has size {s.value}; sizes must be at least 1", item.span)

    def eval_size(self, node, lookup) -> Size:
        if isinstance(node, S.SizeInt):
            return Size.of(node.value)
        if isinstance(node, S.SizeName):
            return lookup(node.name, node.span)
        if isinstance(node, S.SizeBin):
            a = self.eval_size(node.left, lookup)
            b = self.eval_size(node.right, lookup)
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

    # ---------------------------------------------------- circuits

    def instantiate(self, name: str, axis_args: dict[str, Size], span: Span) -> Diagram | None:
        src = self.circuits[name]
        node = src.node
        sizes: dict[str, Size] = {}
        for ap in node.axis_params:
            if ap.name in axis_args:
                sizes[ap.name] = axis_args[ap.name]
            elif ap.size is not None:
                try:
                    sizes[ap.name] = self.eval_size(ap.size, self._global_lookup(sizes))
                except CircuitError as e:
                    self.sink.add(e)
                    sizes[ap.name] = Size.symbol(ap.name)
            else:
                sizes[ap.name] = Size.symbol(ap.name)
        key = (name, tuple(sorted((k, v) for k, v in sizes.items())))
        if key in self.cache:
            return self.cache[key]
        if name in self.stack:
            cycle = " -> ".join(self.stack[self.stack.index(name):] + [name])
            self.sink.add(RecursiveCircuit(f"circuit {name} calls itself: {cycle}", span,
                                           hint="circuits cannot recurse; use repeat or scan"))
            return None
        self.stack.append(name)
        try:
            d = _CircuitChecker(self, src, sizes).run()
        finally:
            self.stack.pop()
        self.cache[key] = d
        return d

    def _global_lookup(self, params: dict[str, Size]):
        def lookup(n, sp):
            if n in params:
                return params[n]
            if n in self.global_axes:
                return self.global_axes[n]
            raise UnknownName(f"unknown axis {n!r} in a size", sp,
                              hint=_did_you_mean(n, list(self.global_axes) + list(params)))
        return lookup


class _CircuitChecker:
    """Checks one circuit body with its axis parameters bound."""

    def __init__(self, checker: Checker, src: _CircuitSrc, axis_args: dict[str, Size]):
        self.ck = checker
        self.src = src
        self.node = src.node
        self.axis_args = axis_args
        axes = dict(checker.global_axes)
        axes.update(axis_args)
        self.b = _Builder(src.node.name, axes)
        self.stmt_boxes: list[_BoxB] = []

    # ---------------------------------------------------- helpers

    def err(self, cls, msg, span, **kw):
        raise cls(msg, span, **kw)

    def axis_size(self, name: str, span: Span, *types: TensorType) -> Size:
        for t in types:
            if isinstance(t, TensorType):
                a = t.axis(name)
                if a is not None:
                    return a.size
        if name in self.b.axes:
            return self.b.axes[name]
        self.err(UnknownName, f"unknown axis {name!r}", span,
                 hint=_did_you_mean(name, list(self.b.axes)) or f"declare it: axis {name} = ...")

    def axis(self, name: str, span: Span, *types) -> Axis:
        return Axis(name, self.axis_size(name, span, *types))

    def resolve_type(self, node):
        if isinstance(node, S.TupleTypeNode):
            return TupleType(tuple(self.resolve_type(t) for t in node.items))
        seen = set()
        axes = []
        for name, span in node.axes:
            if name in seen:
                self.err(ShapeMismatch, f"axis {name} appears twice in one type", span,
                         hint="a tensor has each named axis once; declare a second axis (axis key = seq)")
            seen.add(name)
            axes.append(self.axis(name, span))
        return TensorType(tuple(axes), node.dtype)

    def add_box(self, op, inputs, out_types, span, attrs=None, weights=(), roles=None, body=None, label=None):
        outs = [self.b.new_wire(t) for t in out_types]
        box = _BoxB(op, list(inputs), outs, dict(attrs or {}), list(weights), dict(roles or {}), span, body,
                    label_hint=label)
        if weights:
            for w in weights:
                n = w.type.numel()
                if n.is_const and n.value > self.ck.max_weight_elements:
                    self.err(SizeTooLarge,
                             f"{op} weight {w.name or 'param'} {w.type} has {n.value:,} elements, over the budget of "
                             f"{self.ck.max_weight_elements:,}", span,
                             hint="check the sizes, or raise max_weight_elements")
        self.b.boxes.append(box)
        self.stmt_boxes.append(box)
        return [T(o, t) for o, t in zip(outs, out_types)]

    def tensor(self, v, span, what="this operand") -> T:
        if isinstance(v, _Poison):
            raise _Skip()
        if isinstance(v, C):
            return self.materialise(v, span)
        if isinstance(v, Tup):
            self.err(ShapeMismatch, f"{what} is a tuple of {len(v.items)} bundles; a single bundle is needed",
                     span, hint="unpack it first: a, b = ...")
        return v

    def materialise(self, c: C, span, dtype: str = "float") -> T:
        return self.add_box("const", [], [TensorType((), dtype)], span,
                            attrs={"value": c.tree, "label": const_label(c.tree)})[0]

    def operands(self, values: list, spans: list, what: str = "this operand") -> list[T]:
        """Tensors for an element-wise operation. A whole-number constant next to
        int operands stays int (`arange(n) - 1` is int); other constants are float."""
        tensors = [v for v in values if isinstance(v, T)]
        int_context = bool(tensors) and all(t.type.dtype == "int" for t in tensors)
        out = []
        for v, sp in zip(values, spans):
            if isinstance(v, C):
                dtype = "int" if int_context and _is_integral(v.tree) else "float"
                out.append(self.materialise(v, sp, dtype))
            else:
                out.append(self.tensor(v, sp, what))
        return out

    def float_tensor(self, v, span, what="the input") -> T:
        t = self.tensor(v, span, what)
        if t.type.dtype != "float":
            self.err(ShapeMismatch, f"{what} is {t.type}, but this operation needs a float bundle", span,
                     hint="int indices become floats through onehot(i, axis) or embed(i, vocab -> d)")
        return t

    def axis_names(self, node, what="axes") -> list[tuple[str, Span]]:
        if isinstance(node, S.Name):
            return [(node.id, node.span)]
        if isinstance(node, (S.TupleExpr, S.AxisList)):
            out = []
            for it in node.items:
                if not isinstance(it, S.Name):
                    self.err(InvalidArgument, f"expected an axis name in {what}", it.span)
                out.append((it.id, it.span))
            return out
        self.err(InvalidArgument, f"expected an axis name or a tuple of axis names for {what}",
                 getattr(node, "span", None))

    def mapping(self, node, what) -> tuple[list, list]:
        if not isinstance(node, S.Mapping):
            self.err(InvalidArgument, f"{what} needs a mapping `from -> to`", node.span,
                     hint="for example: d -> hidden, or (heads, dk) -> d")
        return self.axis_names(node.src, what), self.axis_names(node.dst, what)

    def const_number(self, node, what) -> float:
        v = self.expr(node)
        if not isinstance(v, C):
            self.err(InvalidArgument, f"{what} must be a number known when checking", node.span)
        return eval_const(v.tree, {}) if not _has_free(v.tree) else self.err(
            InvalidArgument, f"{what} must not depend on a size bound at compile time", node.span)

    def int_tuple(self, node, what) -> tuple[int, ...]:
        items = node.items if isinstance(node, S.TupleExpr) else (node,)
        out = []
        for it in items:
            x = self.const_number(it, what)
            if x != int(x) or x < 1:
                self.err(InvalidArgument, f"{what} must be positive integers", it.span)
            out.append(int(x))
        return tuple(out)

    def word(self, node, what, choices) -> str:
        if isinstance(node, S.Name) and node.id in choices:
            return node.id
        got = node.id if isinstance(node, S.Name) else "an expression"
        self.err(InvalidArgument, f"{what} must be one of {', '.join(choices)}; got {got}", node.span)

    def flag(self, node, what) -> bool:
        return self.word(node, what, ("true", "false")) == "true"

    def bind_args(self, call: S.Call, positional: list[str], keywords: dict) -> dict:
        out: dict[str, Any] = {}
        pos_i = 0
        for a in call.args:
            if isinstance(a, S.Keyword):
                if a.name in out:
                    self.err(DuplicateDefinition, f"argument {a.name} given twice", a.span)
                if a.name not in keywords and a.name not in positional:
                    allowed = positional + list(keywords)
                    self.err(InvalidArgument, f"{call.func} has no argument {a.name!r}", a.span,
                             hint=_did_you_mean(a.name, allowed) or f"arguments: {', '.join(allowed)}")
                out[a.name] = a.value
            elif isinstance(a, S.ResultSpec):
                self.err(InvalidArgument, f"{call.func} takes no `-> result` argument", a.span)
            else:
                if pos_i >= len(positional):
                    self.err(WrongArity, f"{call.func} takes {len(positional)} positional argument"
                             f"{'s' if len(positional) != 1 else ''}, got more", a.span,
                             hint=f"{call.func}({', '.join(positional)}" +
                             "".join(f", {k} = ..." for k in keywords) + ")")
                out[positional[pos_i]] = a
                pos_i += 1
        for p in positional:
            if p not in out:
                self.err(WrongArity, f"{call.func} needs its argument {p!r}", call.span,
                         hint=f"{call.func}({', '.join(positional)}" +
                         "".join(f", {k} = ..." for k, v in keywords.items() if v is REQUIRED) + ")")
        for k, v in keywords.items():
            if k not in out:
                if v is REQUIRED:
                    self.err(WrongArity, f"{call.func} needs the keyword argument {k} = ...", call.span)
                out[k] = None
        return out

    # ---------------------------------------------------- the body

    def run(self) -> Diagram | None:
        node = self.node
        ports = []
        for ap in node.axis_params:
            if ap.name in {p.name for p in node.params}:
                self.ck.sink.add(AxisValueClash(f"{ap.name} is both an axis parameter and an input", ap.span))
        seen = set()
        for p in node.params:
            try:
                if p.name in seen:
                    self.err(DuplicateDefinition, f"input {p.name} is declared twice", p.span)
                seen.add(p.name)
                if p.name in self.b.axes:
                    self.err(AxisValueClash, f"{p.name} is an axis and cannot also name an input", p.span,
                             hint=f"rename the input, e.g. {p.name}_")
                ptype = self.resolve_type(p.type)
            except CircuitError as e:
                self.ck.sink.add(e)
                self.b.values[p.name] = POISON
                ports.append(None)
                continue
            value = self._input_value(p.name, ptype)
            self.b.values[p.name] = value
            ports.append(Port(p.name, ptype, tuple(v.wire for v in _flat(value))))
        try:
            ret_type = self.resolve_type(node.returns)
        except CircuitError as e:
            self.ck.sink.add(e)
            ret_type = None
        result = self.block(node.body, top=True)
        if result is None:
            if not any(isinstance(st, S.Return) for st in node.body):
                self.ck.sink.add(NoReturn(f"circuit {node.name} has no return statement", node.name_span,
                                          hint=f"end the body with: return <value of type {node.returns and ret_type}>"))
            return None
        value, rspan = result
        if any(p is None for p in ports) or ret_type is None or isinstance(value, _Poison):
            return None
        try:
            value = self.coerce_return(value, ret_type, rspan)
        except CircuitError as e:
            self.ck.sink.add(e)
            return None
        except _Skip:
            return None
        out = Port("return", ret_type, tuple(v.wire for v in _flat(value)))
        return self.b.freeze(tuple(ports), out, tuple(self.axis_args.items()), node.span)

    def _input_value(self, name, ptype):
        if isinstance(ptype, TupleType):
            return Tup(tuple(self._input_value(f"{name}.{i}", t) for i, t in enumerate(ptype.items)))
        wire = self.b.unique_wire(name)
        self.b.wires[wire] = Wire(wire, ptype)
        return T(wire, ptype)

    def coerce_return(self, value, rtype, span):
        if isinstance(rtype, TupleType):
            if not isinstance(value, Tup) or len(value.items) != len(rtype.items):
                n = len(value.items) if isinstance(value, Tup) else 1
                self.err(WrongArity, f"returns {n} bundle{'s' if n != 1 else ''}, but the signature says {rtype}",
                         span)
            return Tup(tuple(self.coerce_return(v, t, span) for v, t in zip(value.items, rtype.items)))
        if isinstance(value, C):
            value = self.materialise(value, span)
        t = self.tensor(value, span, "the returned value")
        if not t.type.same(rtype):
            self.err(ShapeMismatch, f"returns {t.type}, but the signature says {rtype}", span,
                     table=type_table(rtype, t.type, "signature", "returned"),
                     hint=mismatch_hint(rtype, t.type, "the result"))
        return t

    def block(self, stmts, top=False):
        """Checks statements; returns (value, span) of the return statement if any."""
        ret = None
        for st in stmts:
            if ret is not None:
                self.ck.sink.add(InvalidArgument("statement after return is never reached", st.span))
                break
            self.stmt_boxes = []
            try:
                if isinstance(st, S.Assign):
                    self.assign(st)
                elif isinstance(st, S.ParamStmt):
                    self.param(st)
                elif isinstance(st, S.Return):
                    ret = self.return_stmt(st)
                    if not top:
                        self.ck.sink.add(InvalidArgument("return inside repeat is not allowed", st.span))
                elif isinstance(st, S.Repeat):
                    self.repeat(st)
            except CircuitError as e:
                self.ck.sink.add(e)
                self._poison_targets(st)
            except _Skip:
                self._poison_targets(st)
        return ret

    def _poison_targets(self, st):
        if isinstance(st, S.Assign):
            for name, _ in st.targets:
                self.b.values[name] = POISON
        elif isinstance(st, S.ParamStmt):
            self.b.values[st.name] = POISON
        elif isinstance(st, S.Return):
            pass

    def check_target(self, name, span):
        if name in self.b.axes:
            self.err(AxisValueClash, f"{name} is an axis and cannot also name a value", span,
                     hint=f"pick another name for the value, e.g. {name}_")

    def assign(self, st: S.Assign):
        for name, span in st.targets:
            self.check_target(name, span)
        value = self.expr(st.value)
        if isinstance(value, _Poison) or (isinstance(value, Tup) and any(isinstance(v, _Poison) for v in _flat(value))):
            raise _Skip()
        names = [n for n, _ in st.targets]
        if len(names) > 1:
            if not isinstance(value, Tup) or len(value.items) != len(names):
                n = len(value.items) if isinstance(value, Tup) else 1
                self.err(WrongArity, f"{len(names)} names on the left, but the right gives {n} "
                         f"bundle{'s' if n != 1 else ''}", st.span)
            items = list(value.items)
        else:
            items = [value]
        self.finish_statement(names, items)
        for n, v in zip(names, items):
            self.b.values[n] = v
        if len(names) > 1:  # an unpacking names parts of a value made elsewhere (an input, a call's result)
            for n, v in zip(names, items):
                flat = _flat(v)
                for i, x in enumerate(flat):
                    if isinstance(x, T) and x.wire not in self.b.aliases and not x.wire.startswith("%"):
                        self.b.aliases[x.wire] = n if len(flat) == 1 else f"{n}.{i}"

    def finish_statement(self, targets: list[str], items: list):
        """Names this statement's boxes and wires after its targets (see docs/language.md)."""
        created = {w for bx in self.stmt_boxes for w in bx.outputs}
        mapping: dict[str, str] = {}
        new_items = []
        for name, v in zip(targets, items):
            def rename(t: T, name=name):
                if t.wire in created and t.wire not in mapping:
                    mapping[t.wire] = self.b.unique_wire(name)
                    self.b.wires[mapping[t.wire]] = None  # reserve
                return t
            flat = _flat(v)
            if isinstance(v, Tup):
                for i, x in enumerate(flat):
                    if isinstance(x, T):
                        rename(x, f"{name}.{i}")
            elif isinstance(v, T):
                rename(v)
            new_items.append(v)
        base = targets[0] if len(targets) == 1 else "_".join(targets)
        for bx in self.stmt_boxes:
            for w in bx.outputs:
                if w not in mapping:
                    mapping[w] = self.b.unique_wire(f"{base}:{bx.label_hint or bx.op}")
                    self.b.wires[mapping[w]] = None
        for new in mapping.values():
            del self.b.wires[new]
        self.b.rename_wires(mapping, self.stmt_boxes)
        for i, v in enumerate(new_items):
            new_items[i] = _map_value(v, lambda t: T(mapping.get(t.wire, t.wire), t.type))
        items[:] = new_items
        owners = [bx for bx in self.stmt_boxes if bx.op in OWNS_WEIGHTS and (bx.weights or bx.body is not None)]
        for bx in owners:
            if len(owners) == 1 and len(targets) == 1 and targets[0] not in self.b.box_names and \
                    bx.op not in ("repeat",):
                bx.name = targets[0]
            else:
                bx.name = self.b.unique_box(bx.label_hint or bx.op)
            self.b.box_names.add(bx.name)
        for bx in self.stmt_boxes:
            if bx.name is None:
                base = bx.outputs[0] if bx.outputs else bx.op
                if base in self.b.box_names:
                    base = f"{base}:{bx.op}"
                bx.name = self.b.unique_box(base, "@")
                self.b.box_names.add(bx.name)

    def param(self, st: S.ParamStmt):
        self.check_target(st.name, st.name_span)
        if st.name in self.b.values:
            self.err(DuplicateDefinition, f"{st.name} is already defined", st.name_span)
        ptype = self.resolve_type(st.type)
        if not isinstance(ptype, TensorType) or ptype.dtype != "float":
            self.err(InvalidArgument, f"a param is a float bundle such as [d]; got {ptype}", st.type.span)
        init = self.initialiser(st.init, ptype)
        (out,) = self.add_box("param", [], [ptype], st.span, weights=[Weight("", ptype, init)],
                              roles={a.name: "produced" for a in ptype.axes})
        box = self.stmt_boxes[-1]
        items = [out]
        self.finish_statement([st.name], items)
        box.name = st.name if st.name not in self.b.box_names or box.name == st.name else box.name
        self.b.values[st.name] = items[0]

    def initialiser(self, node, ptype: TensorType) -> Init:
        names = ptype.names
        if node is None:
            return Init("normal", (0.02,))
        if isinstance(node, S.Name) and node.id in ("zeros", "ones"):
            return Init(node.id)
        if isinstance(node, S.Name) and node.id in ("lecun", "glorot"):
            if len(names) < 2:
                return Init(node.id, (), names, ())
            return Init(node.id, (), names[:-1], names[-1:])
        if isinstance(node, S.Call) and node.func in ("normal", "uniform"):
            want = 1 if node.func == "normal" else 2
            if len(node.args) != want or any(isinstance(a, (S.Keyword, S.Mapping)) for a in node.args):
                self.err(WrongArity, f"{node.func} takes {want} number{'s' if want > 1 else ''}: "
                         + ("normal(std)" if want == 1 else "uniform(lo, hi)"), node.span)
            vals = tuple(self.const_number(a, f"{node.func}'s argument") for a in node.args)
            if node.func == "normal" and vals[0] < 0:
                self.err(InvalidArgument, "normal(std) needs std >= 0", node.span)
            if node.func == "uniform" and vals[0] > vals[1]:
                self.err(InvalidArgument, "uniform(lo, hi) needs lo <= hi", node.span)
            return Init(node.func, vals)
        self.err(InvalidArgument, "unknown initialiser", node.span,
                 hint="initialisers: zeros, ones, normal(std), uniform(lo, hi), lecun, glorot")

    def return_stmt(self, st: S.Return):
        if len(st.values) == 1:
            value = self.expr(st.values[0])
        else:
            value = Tup(tuple(self.expr(v) for v in st.values))
        target = "out" if "out" not in self.b.values else "out_"
        if isinstance(value, C):
            value = self.materialise(value, st.span)
        items = [value]
        self.finish_statement([target], items)
        return items[0], st.span

    def repeat(self, st: S.Repeat):
        count = self.eval_size_here(st.count)
        if count.is_const and count.value < 1:
            self.err(InvalidArgument, f"repeat needs a count of at least 1, got {count.value}", st.count.span)
        carried = []
        for name in _assigned_names(st.body):
            v = self.b.lookup(name)
            if v is not None and not isinstance(v, C):
                carried.append((name, v))
        outer_boxes = self.stmt_boxes
        inner = _CircuitChecker.__new__(_CircuitChecker)
        inner.ck, inner.src, inner.node, inner.axis_args = self.ck, self.src, self.node, {}
        inner.b = _Builder("repeat", self.b.axes, parent=self.b)
        inner.stmt_boxes = []
        # carried values enter the body as its first inputs
        in_ports = []
        for name, v in carried:
            if isinstance(v, _Poison):
                raise _Skip()
            inner.b.values[name] = _map_value(v, lambda t: t)  # placeholder, replaced below
            val = inner._input_value(name, _type_of(v))
            inner.b.values[name] = val
            in_ports.append(Port(name, _type_of(v), tuple(x.wire for x in _flat(val))))
        inner.block(st.body)
        outs = []
        for name, v in carried:
            final = inner.b.values.get(name)
            if isinstance(final, _Poison):
                raise _Skip()
            if not _type_of(final).same(_type_of(v)):
                t0, t1 = _type_of(v), _type_of(final)
                table = type_table(t0, t1, "before", "after") if isinstance(t0, TensorType) and isinstance(t1, TensorType) else []
                self.err(ShapeMismatch, f"the repeat body changes the type of {name} from {t0} to {t1}",
                         st.span, table=table, hint="each copy must give back what it got")
            outs.append(final)
        cap_ports = [Port(n, inner_v.type, (inner_v.wire,)) for n, _o, inner_v in inner.b.captures]
        out_wires = tuple(x.wire for v in outs for x in _flat(v))
        out_type = TupleType(tuple(_type_of(v) for v in outs))
        body = inner.b.freeze(tuple(in_ports + cap_ports), Port("carry", out_type, out_wires), (), st.span)
        self.stmt_boxes = outer_boxes
        in_wires = [x.wire for _, v in carried for x in _flat(v)] + [o.wire for _n, o, _i in inner.b.captures]
        out_types = [x.type for _, v in carried for x in _flat(v)]
        roles = {a.name: "replaced" for t in out_types for a in t.axes}
        results = self.add_box("repeat", in_wires, out_types, st.span, roles=roles,
                               attrs={"count": count, "carried": len(out_types)}, body=body, label="repeat")
        # rebind carried names
        it = iter(results)
        new_vals = []
        for name, v in carried:
            new_vals.append(_map_value(v, lambda t: next(it)))
        names = [n for n, _ in carried]
        self.finish_statement(names or ["repeat"], new_vals if names else [Tup(())])
        for n, nv in zip(names, new_vals):
            self.b.values[n] = nv

    def eval_size_here(self, node) -> Size:
        def lookup(n, sp):
            if n in self.b.axes:
                return self.b.axes[n]
            v = self.b.lookup(n)
            self.err(UnknownName, f"unknown axis {n!r} in a size", sp,
                     hint=_did_you_mean(n, list(self.b.axes)))
        return self.ck.eval_size(node, lookup)

    # ---------------------------------------------------- expressions

    def expr(self, node):
        if isinstance(node, S.Name):
            return self.name(node)
        if isinstance(node, S.Number):
            return C(("num", node.value))
        if isinstance(node, S.BinOp):
            return self.binop(node)
        if isinstance(node, S.Neg):
            v = self.expr(node.operand)
            if isinstance(v, C):
                return C(("neg", v.tree))
            t = self.tensor(v, node.operand.span)
            return self.add_box("neg", [t.wire], [t.type], node.span, roles=_passing(t.type))[0]
        if isinstance(node, S.TupleExpr):
            return Tup(tuple(self.expr(i) for i in node.items))
        if isinstance(node, S.Call):
            return self.call(node)
        if isinstance(node, S.AxisList):
            self.err(InvalidArgument, "an axis list [a, b] is a type, not a value", node.span,
                     hint="axis lists appear in einsum(..., -> [a, b]) and in signatures")
        if isinstance(node, (S.Mapping, S.ResultSpec, S.Keyword)):
            self.err(InvalidArgument, "a mapping `a -> b` is only an argument of an operation", node.span)
        self.err(InvalidArgument, "unexpected expression", node.span)

    def name(self, node: S.Name):
        v = self.b.lookup(node.id)
        if v is not None:
            return v
        if node.id in self.b.axes:
            return C(("axis", node.id, self.b.axes[node.id]))
        if node.id == "inf":
            return C(("num", math.inf))
        if node.id in self.ck.circuits:
            self.err(InvalidArgument, f"{node.id} is a circuit; call it: {node.id}(...)", node.span)
        options = list(self.b.values) + list(self.b.axes)
        self.err(UnknownName, f"unknown name {node.id!r}", node.span, hint=_did_you_mean(node.id, options))

    def broadcast(self, ts: list[T], span, what) -> TensorType:
        axes: dict[str, Axis] = {}
        for t in ts:
            for a in t.type.axes:
                prev = axes.get(a.name)
                if prev is None:
                    axes[a.name] = a
                elif prev.size != a.size:
                    self.err(SizeConflict, f"{what}: axis {a.name} has size {prev.size} on one side and "
                             f"{a.size} on the other", span,
                             table=type_table(ts[0].type, ts[-1].type, "left", "right"))
        return TensorType(tuple(axes.values()), "float")

    def binop(self, node: S.BinOp):
        a = self.expr(node.left)
        b = self.expr(node.right)
        if isinstance(a, C) and isinstance(b, C) and node.op not in COMPARISONS:
            return C((node.op, a.tree, b.tree))
        ta, tb = self.operands([a, b], [node.left.span, node.right.span])
        t = self.broadcast([ta, tb], node.span, f"cannot apply {ELEMENTWISE_BINARY[node.op]}")
        dtype = _promote(ta.type.dtype, tb.type.dtype)
        if node.op in COMPARISONS:
            dtype = "bool"
        elif node.op == "div":
            dtype = "float"
        elif dtype == "bool":
            dtype = "int"
        t = TensorType(t.axes, dtype)
        return self.add_box(node.op, [ta.wire, tb.wire], [t], node.span, roles=_passing(t))[0]

    def call(self, node: S.Call):
        f = node.func
        if f in self.ck.circuits:
            return self.call_circuit(node)
        if node.sizes:
            self.err(InvalidArgument, f"{f} is an operation; only circuits take [axis = size] arguments",
                     node.span)
        if f in INITIALISERS and f not in SIGNATURES:
            self.err(InvalidArgument, f"{f}(...) is an initialiser; it only appears in `param name: [axes] = {f}(...)`",
                     node.span)
        method = getattr(self, "op_" + f, None)
        if method is None:
            if f in UNARY:
                method = self.op_unary
            elif f in REDUCTIONS:
                method = self.op_reduce
            else:
                options = OPERATIONS + list(self.ck.circuits)
                self.err(UnknownName, f"unknown operation or circuit {f!r}", node.func_span,
                         hint=_did_you_mean(f, options) or "operations: " + ", ".join(OPERATIONS))
        if f in SIGNATURES:
            pos, kws = SIGNATURES[f]
            args = self.bind_args(node, pos, kws)
            return method(node, args)
        return method(node)

    # -- element-wise
    def op_unary(self, node, args):
        v = self.expr(args["x"])
        f = node.func
        if isinstance(v, C) and f in ("sqrt", "exp", "log", "abs", "tanh", "square", "relu", "sigmoid", "softplus"):
            return C(("fn", f, v.tree))
        t = self.tensor(v, args["x"].span)
        dtype = t.type.dtype if f in UNARY_KEEP and t.type.dtype != "bool" else "float"
        out = TensorType(t.type.axes, dtype)
        return self.add_box(f, [t.wire], [out], node.span, roles=_passing(out))[0]

    def _elementwise(self, node, args, op, dtype_fn):
        ts = self.operands([self.expr(v) for v in args.values()], [v.span for v in args.values()])
        return self._elementwise_values(node, ts, op, dtype_fn)

    def _elementwise_values(self, node, ts, op, dtype_fn):
        t = self.broadcast(ts, node.span, f"cannot apply {op}")
        out = TensorType(t.axes, dtype_fn(ts))
        return self.add_box(op, [x.wire for x in ts], [out], node.span, roles=_passing(out))[0]

    def op_maximum(self, node, args):
        return self._elementwise(node, args, "maximum", lambda ts: _promote(ts[0].type.dtype, ts[1].type.dtype))

    def op_minimum(self, node, args):
        return self._elementwise(node, args, "minimum", lambda ts: _promote(ts[0].type.dtype, ts[1].type.dtype))

    def op_where(self, node, args):
        cond = self.tensor(self.expr(args["cond"]), args["cond"].span, "the condition")
        if cond.type.dtype != "bool":
            self.err(ShapeMismatch, f"where's condition must be bool, got {cond.type}", args["cond"].span,
                     hint="comparisons (<, <=, >, >=, ==) give bool bundles")
        a, b = self.operands([self.expr(args["a"]), self.expr(args["b"])], [args["a"].span, args["b"].span])
        return self._elementwise_values(node, [cond, a, b], "where",
                                        lambda ts: _promote(ts[1].type.dtype, ts[2].type.dtype))

    def op_dropout(self, node, args):
        t = self.float_tensor(self.expr(args["x"]), args["x"].span)
        rate = self.const_number(args["rate"], "dropout's rate")
        if not 0 <= rate < 1:
            self.err(InvalidArgument, f"dropout's rate must be in [0, 1), got {rate:g}", args["rate"].span)
        return self.add_box("dropout", [t.wire], [t.type], node.span, attrs={"rate": rate},
                            roles=_passing(t.type))[0]

    def op_size(self, node, args):
        (name, span), = self.axis_names(args["a"], "size")
        return C(("axis", name, self.axis_size(name, span)))

    # -- linear maps and contractions
    def op_linear(self, node, args):
        x = self.float_tensor(self.expr(args["x"]), args["x"].span, "linear's input")
        src, dst = self.mapping(args["map"], "linear")
        bias = True if args["bias"] is None else self.flag(args["bias"], "bias")
        in_axes = []
        for name, span in src:
            a = x.type.axis(name)
            if a is None:
                known = [Axis(n, self.b.axes[n]) if x.type.axis(n) is None else x.type.axis(n)
                         for n, _ in src if n in self.b.axes or x.type.axis(n) is not None]
                self.err(ShapeMismatch, f"linear maps {name}, but its input is {x.type}", span,
                         table=type_table(TensorType(tuple(known)), x.type, "mapped", "input") if known else [],
                         hint=_did_you_mean(name, x.type.names) or "map axes the input has")
            in_axes.append(a)
        _no_dupes(self, src, "linear's input axes")
        _no_dupes(self, dst, "linear's output axes")
        src_names = {n for n, _ in src}
        out_axes = []
        for name, span in dst:
            if name not in src_names and x.type.axis(name) is not None:
                self.err(ShapeMismatch, f"linear's output axis {name} is already on its input {x.type}", span,
                         hint=f"map it too ({name} -> ...), or give the output another axis")
            out_axes.append(self.axis(name, span) if name not in src_names else self.axis(name, span, x.type))
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
        return self.add_box("linear", [x.wire], [out], node.span, weights=weights, roles=roles,
                            attrs={"in_axes": tuple(a.name for a in in_axes),
                                   "out_axes": tuple(a.name for a in out_axes), "bias": bias})[0]

    def op_dot(self, node, args):
        a = self.float_tensor(self.expr(args["a"]), args["a"].span, "dot's first operand")
        b = self.float_tensor(self.expr(args["b"]), args["b"].span, "dot's second operand")
        over = self.axis_names(args["over"], "over")
        for name, span in over:
            for t, which in ((a, "first"), (b, "second")):
                if t.type.axis(name) is None:
                    self.err(ShapeMismatch, f"dot sums over {name}, but the {which} operand {t.type} has no {name}",
                             span, table=type_table(a.type, b.type, "first", "second"),
                             hint=mismatch_hint(TensorType((self.axis(name, span, a.type, b.type),)),
                                                TensorType(()), "x") and
                             f"rename an axis so both operands share {name}")
        self.broadcast([a, b], node.span, "dot")
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
        return self.add_box("dot", [a.wire, b.wire], [out], node.span, roles=roles,
                            attrs={"over": tuple(n for n, _ in over)})[0]

    def op_einsum(self, node):
        operands, result = [], None
        for a in node.args:
            if isinstance(a, S.ResultSpec):
                if result is not None:
                    self.err(InvalidArgument, "einsum takes one `-> [axes]`", a.span)
                result = self.axis_names(a.value, "einsum's result")
            elif isinstance(a, (S.Keyword, S.Mapping)):
                self.err(InvalidArgument, "einsum takes operands and then `-> [axes]`", a.span)
            else:
                operands.append(self.float_tensor(self.expr(a), a.span, "einsum's operand"))
        if result is None:
            self.err(WrongArity, "einsum needs its result axes: einsum(a, b, -> [i, k])", node.span)
        if not operands:
            self.err(WrongArity, "einsum needs at least one operand", node.span)
        union = self.broadcast(operands, node.span, "einsum")
        out_axes = []
        for name, span in result:
            ax = union.axis(name)
            if ax is None:
                self.err(ShapeMismatch, f"einsum's result axis {name} is on no operand", span,
                         hint=_did_you_mean(name, union.names))
            out_axes.append(ax)
        _no_dupes(self, result, "einsum's result")
        out = TensorType(tuple(out_axes))
        roles = _passing(out)
        for ax in union.axes:
            if out.axis(ax.name) is None:
                roles[ax.name] = "consumed"
        return self.add_box("einsum", [t.wire for t in operands], [out], node.span, roles=roles,
                            attrs={"result": tuple(n for n, _ in result)})[0]

    # -- along axes
    def _over(self, t: T, node, what, default_all=False) -> list[str]:
        if node is None:
            if default_all:
                return list(t.type.names)
            self.err(WrongArity, f"{what} needs over = axes", None)
        names = self.axis_names(node, "over")
        for name, span in names:
            if t.type.axis(name) is None:
                self.err(ShapeMismatch, f"{what} over {name}, but the input {t.type} has no {name}", span,
                         hint=_did_you_mean(name, t.type.names) or f"axes of the input: {', '.join(t.type.names)}")
        _no_dupes(self, names, "over")
        return [n for n, _ in names]

    def op_reduce(self, node, args):
        t = self.tensor(self.expr(args["x"]), args["x"].span)
        over = self._over(t, args["over"], node.func, default_all=True)
        dtype = t.type.dtype if node.func in ("max", "min", "sum") and t.type.dtype != "bool" else "float"
        out = TensorType(tuple(a for a in t.type.axes if a.name not in over), dtype)
        roles = _passing(out)
        roles.update({n: "consumed" for n in over})
        return self.add_box(node.func, [t.wire], [out], node.span, roles=roles, attrs={"over": tuple(over)})[0]

    def _normalise(self, node, args, op, weights_fn=None):
        t = self.float_tensor(self.expr(args["x"]), args["x"].span)
        over = self._over(t, args["over"], op)
        roles = _passing(t.type)
        roles.update({n: "consumed" for n in over})
        attrs = {"over": tuple(over)}
        weights = []
        if weights_fn is not None:
            eps = args.get("eps")
            attrs["eps"] = SIGNATURES[op][1]["eps"] if eps is None else self.const_number(eps, "eps")
            over_t = TensorType(tuple(t.type.axis(n) for n in over))
            weights = weights_fn(over_t)
        return self.add_box(op, [t.wire], [t.type], node.span, roles=roles, attrs=attrs, weights=weights)[0]

    def op_softmax(self, node, args):
        return self._normalise(node, args, "softmax")

    def op_log_softmax(self, node, args):
        return self._normalise(node, args, "log_softmax")

    def op_layernorm(self, node, args):
        return self._normalise(node, args, "layernorm",
                               lambda t: [Weight("scale", t, Init("ones")), Weight("bias", t, Init("zeros"))])

    def op_rmsnorm(self, node, args):
        return self._normalise(node, args, "rmsnorm", lambda t: [Weight("scale", t, Init("ones"))])

    def op_argmax(self, node, args):
        t = self.tensor(self.expr(args["x"]), args["x"].span)
        over = self._over(t, args["over"], "argmax")
        if len(over) != 1:
            self.err(InvalidArgument, "argmax picks along one axis", args["over"].span)
        out = TensorType(tuple(a for a in t.type.axes if a.name not in over), "int")
        roles = _passing(out)
        roles[over[0]] = "consumed"
        return self.add_box("argmax", [t.wire], [out], node.span, roles=roles, attrs={"over": tuple(over)})[0]

    def op_causal(self, node, args):
        s = self.float_tensor(self.expr(args["s"]), args["s"].span, "causal's scores")
        (q, qs), = self.axis_names(args["q"], "causal's query axis")
        (k, ks), = self.axis_names(args["k"], "causal's key axis")
        for name, span in ((q, qs), (k, ks)):
            if s.type.axis(name) is None:
                self.err(ShapeMismatch, f"causal masks along {name}, but the scores {s.type} have no {name}", span)
        if q == k:
            self.err(InvalidArgument, "causal needs two different axes (query and key)", node.span,
                     hint="declare a key axis of the same size: axis key = seq")
        return self.add_box("causal", [s.wire], [s.type], node.span, roles=_passing(s.type),
                            attrs={"q": q, "k": k})[0]

    # -- indices
    def _int_tensor(self, v, span, what):
        t = self.tensor(v, span, what)
        if t.type.dtype != "int":
            self.err(ShapeMismatch, f"{what} must be int indices, got {t.type}", span,
                     hint="declare the input as int[...], or use argmax/arange to make indices")
        return t

    def op_onehot(self, node, args):
        i = self._int_tensor(self.expr(args["i"]), args["i"].span, "onehot's indices")
        (name, span), = self.axis_names(args["a"], "onehot's axis")
        if i.type.axis(name) is not None:
            self.err(ShapeMismatch, f"onehot makes a new axis {name}, but {i.type} already has it", span)
        a = self.axis(name, span)
        out = TensorType(i.type.axes + (a,))
        roles = _passing(out)
        roles[name] = "produced"
        return self.add_box("onehot", [i.wire], [out], node.span, roles=roles, attrs={"axis": name})[0]

    def op_embed(self, node, args):
        i = self._int_tensor(self.expr(args["i"]), args["i"].span, "embed's indices")
        src, dst = self.mapping(args["map"], "embed")
        if len(src) != 1:
            self.err(InvalidArgument, "embed looks up along one vocabulary axis: embed(i, vocab -> d)",
                     args["map"].span)
        vocab = self.axis(*src[0])
        out_axes = []
        for name, span in dst:
            if i.type.axis(name) is not None or name == vocab.name:
                self.err(ShapeMismatch, f"embed's output axis {name} is already on the indices {i.type}", span)
            out_axes.append(self.axis(name, span))
        _no_dupes(self, dst, "embed's output axes")
        if i.type.axis(vocab.name) is not None:
            self.err(ShapeMismatch, f"the indices {i.type} already carry the vocabulary axis {vocab.name}",
                     src[0][1])
        out = TensorType(i.type.axes + tuple(out_axes))
        roles = _passing(out)
        roles.update({a.name: "produced" for a in out_axes})
        w = Weight("W", TensorType((vocab,) + tuple(out_axes)),
                   Init("embed", (), (), tuple(a.name for a in out_axes)))
        return self.add_box("embed", [i.wire], [out], node.span, roles=roles, weights=[w],
                            attrs={"vocab": vocab.name, "out_axes": tuple(a.name for a in out_axes)})[0]

    def op_arange(self, node, args):
        (name, span), = self.axis_names(args["a"], "arange's axis")
        out = TensorType((self.axis(name, span),), "int")
        return self.add_box("arange", [], [out], node.span, roles={name: "produced"}, attrs={"axis": name})[0]

    def op_gather(self, node, args):
        x = self.tensor(self.expr(args["x"]), args["x"].span, "gather's input")
        i = self._int_tensor(self.expr(args["i"]), args["i"].span, "gather's indices")
        (along, span), = self.axis_names(args["along"], "along")
        if x.type.axis(along) is None:
            self.err(ShapeMismatch, f"gather picks along {along}, but the input {x.type} has no {along}", span)
        if i.type.axis(along) is not None:
            self.err(ShapeMismatch, f"the indices {i.type} must not carry the axis {along} they pick from", span)
        rest = TensorType(tuple(a for a in x.type.axes if a.name != along))
        self.broadcast([T(x.wire, rest), i], node.span, "gather")
        axes = []
        for a in x.type.axes:
            if a.name == along:
                axes.extend(b for b in i.type.axes if x.type.axis(b.name) is None)
            else:
                axes.append(a)
        out = TensorType(tuple(axes), x.type.dtype)
        roles = _passing(out)
        roles[along] = "consumed"
        return self.add_box("gather", [x.wire, i.wire], [out], node.span, roles=roles, attrs={"along": along})[0]

    def op_take(self, node, args):
        x = self.tensor(self.expr(args["x"]), args["x"].span, "take's input")
        (name, span), = self.axis_names(args["a"], "take's axis")
        a = x.type.axis(name)
        if a is None:
            self.err(ShapeMismatch, f"take picks along {name}, but the input {x.type} has no {name}", span)
        k = self.const_number(args["k"], "take's index")
        if k != int(k):
            self.err(InvalidArgument, "take's index must be a whole number", args["k"].span)
        k = int(k)
        if a.size.is_const and not -a.size.value <= k < a.size.value:
            self.err(InvalidArgument, f"take's index {k} is outside {name} (size {a.size.value})", args["k"].span)
        out = TensorType(tuple(b for b in x.type.axes if b.name != name), x.type.dtype)
        roles = _passing(out)
        roles[name] = "consumed"
        return self.add_box("take", [x.wire], [out], node.span, roles=roles, attrs={"axis": name, "index": k})[0]

    # -- shape
    def op_rename(self, node, args):
        x = self.tensor(self.expr(args["x"]), args["x"].span, "rename's input")
        src, dst = self.mapping(args["map"], "rename")
        if len(src) != len(dst):
            self.err(WrongArity, f"rename maps {len(src)} axes to {len(dst)}", args["map"].span)
        table = {}
        for (s, ss), (d, ds) in zip(src, dst):
            a = x.type.axis(s)
            if a is None:
                self.err(ShapeMismatch, f"rename's input {x.type} has no axis {s}", ss,
                         hint=_did_you_mean(s, x.type.names))
            size = self.axis_size(d, ds)
            if size != a.size:
                self.err(SizeConflict, f"rename {s} -> {d} changes the size from {a.size} to {size}", node.span,
                         hint=f"a different size needs a map: linear(x, {s} -> {d})")
            table[s] = Axis(d, size)
        renamed = {v.name for v in table.values()}
        for a in x.type.axes:
            if a.name in renamed and a.name not in table:
                self.err(ShapeMismatch, f"rename's result would have the axis {a.name} twice", node.span)
        out = TensorType(tuple(table.get(a.name, a) for a in x.type.axes), x.type.dtype)
        roles = _passing(out)
        for s, a in table.items():
            roles[s] = "consumed"
            roles[a.name] = "produced"
        return self.add_box("rename", [x.wire], [out], node.span, roles=roles,
                            attrs={"src": tuple(table), "dst": tuple(a.name for a in table.values())})[0]

    def op_merge(self, node, args):
        x = self.tensor(self.expr(args["x"]), args["x"].span, "merge's input")
        src, dst = self.mapping(args["map"], "merge")
        if len(dst) != 1:
            self.err(InvalidArgument, "merge makes one axis: merge(x, (a, b) -> c)", args["map"].span)
        (c, cs), = dst
        total = Size.of(1)
        for s, ss in src:
            a = x.type.axis(s)
            if a is None:
                self.err(ShapeMismatch, f"merge's input {x.type} has no axis {s}", ss)
            total = total * a.size
        _no_dupes(self, src, "merge")
        size = self.axis_size(c, cs)
        if size != total:
            self.err(SizeConflict, f"merge makes {c} of size {size} from {total} elements", node.span,
                     hint=f"declare axis {c} = " + " * ".join(s for s, _ in src))
        src_names = [s for s, _ in src]
        if c not in src_names and x.type.axis(c) is not None:
            self.err(ShapeMismatch, f"merge's input already has an axis {c}", cs)
        axes = []
        for a in x.type.axes:
            if a.name == src_names[0]:
                axes.append(Axis(c, size))
            elif a.name not in src_names:
                axes.append(a)
        out = TensorType(tuple(axes), x.type.dtype)
        roles = _passing(out)
        roles.update({s: "consumed" for s in src_names})
        roles[c] = "produced"
        return self.add_box("merge", [x.wire], [out], node.span, roles=roles,
                            attrs={"src": tuple(src_names), "dst": c})[0]

    def op_split(self, node, args):
        x = self.tensor(self.expr(args["x"]), args["x"].span, "split's input")
        src, dst = self.mapping(args["map"], "split")
        if len(src) != 1:
            self.err(InvalidArgument, "split takes one axis apart: split(x, c -> (a, b))", args["map"].span)
        (c, cs), = src
        a = x.type.axis(c)
        if a is None:
            self.err(ShapeMismatch, f"split's input {x.type} has no axis {c}", cs)
        _no_dupes(self, dst, "split")
        new = [self.axis(n, s) for n, s in dst]
        total = Size.of(1)
        for ax in new:
            total = total * ax.size
            if ax.name != c and x.type.axis(ax.name) is not None:
                self.err(ShapeMismatch, f"split's input already has an axis {ax.name}", node.span)
        if total != a.size:
            self.err(SizeConflict, f"split takes {c} of size {a.size} apart into {total} elements", node.span)
        axes = []
        for ax in x.type.axes:
            axes.extend(new if ax.name == c else [ax])
        out = TensorType(tuple(axes), x.type.dtype)
        roles = _passing(out)
        roles[c] = "consumed"
        roles.update({ax.name: "produced" for ax in new})
        return self.add_box("split", [x.wire], [out], node.span, roles=roles,
                            attrs={"src": c, "dst": tuple(ax.name for ax in new)})[0]

    def _variadic(self, node, what):
        operands, kws = [], {}
        for a in node.args:
            if isinstance(a, S.Keyword):
                kws[a.name] = a
            elif isinstance(a, (S.Mapping, S.ResultSpec)):
                self.err(InvalidArgument, f"{what} takes operands and keyword arguments", a.span)
            else:
                operands.append((self.tensor(self.expr(a), a.span, f"{what}'s operand"), a.span))
        return operands, kws

    def op_stack(self, node):
        operands, kws = self._variadic(node, "stack")
        extra = set(kws) - {"along"}
        if extra:
            self.err(InvalidArgument, f"stack has no argument {sorted(extra)[0]!r}", kws[sorted(extra)[0]].span)
        if "along" not in kws:
            self.err(WrongArity, "stack needs along = new_axis", node.span)
        if not operands:
            self.err(WrongArity, "stack needs at least one operand", node.span)
        (name, span), = self.axis_names(kws["along"].value, "along")
        first = operands[0][0]
        for t, sp in operands[1:]:
            if not t.type.same(first.type):
                self.err(ShapeMismatch, f"stack's operands must have one type; {first.type} and {t.type} differ", sp,
                         table=type_table(first.type, t.type, "first", "this"),
                         hint=mismatch_hint(first.type, t.type))
        if first.type.axis(name) is not None:
            self.err(ShapeMismatch, f"stack makes a new axis {name}, but the operands already have it", span)
        size = self.axis_size(name, span)
        if size != Size.of(len(operands)):
            self.err(SizeConflict, f"stack along {name} needs {size} operands, got {len(operands)}", node.span,
                     hint=f"declare axis {name} = {len(operands)}")
        out = TensorType((Axis(name, size),) + first.type.axes, first.type.dtype)
        roles = _passing(out)
        roles[name] = "produced"
        return self.add_box("stack", [t.wire for t, _ in operands], [out], node.span, roles=roles,
                            attrs={"along": name})[0]

    def op_concat(self, node):
        operands, kws = self._variadic(node, "concat")
        extra = set(kws) - {"along"}
        if extra:
            self.err(InvalidArgument, f"concat has no argument {sorted(extra)[0]!r}", kws[sorted(extra)[0]].span)
        if "along" not in kws:
            self.err(WrongArity, "concat needs along = a -> c", node.span)
        if len(operands) < 1:
            self.err(WrongArity, "concat needs operands", node.span)
        src, dst = self.mapping(kws["along"].value, "concat's along")
        if len(dst) != 1:
            self.err(InvalidArgument, "concat makes one axis: along = a -> c", kws["along"].span)
        if len(src) == 1:
            src = src * len(operands)
        if len(src) != len(operands):
            self.err(WrongArity, f"concat has {len(operands)} operands but {len(src)} axes to join", kws["along"].span)
        (c, cs), = dst
        total = Size.of(0)
        rest = None
        for (t, sp), (a, aspan) in zip(operands, src):
            ax = t.type.axis(a)
            if ax is None:
                self.err(ShapeMismatch, f"concat joins along {a}, but the operand {t.type} has no {a}", sp)
            total = total + ax.size
            r = TensorType(tuple(b for b in t.type.axes if b.name != a), t.type.dtype)
            if rest is None:
                rest = r
            elif not r.same(rest):
                self.err(ShapeMismatch, f"concat's operands differ apart from the joined axis: {rest} and {r}", sp,
                         table=type_table(rest, r, "first", "this"))
        size = self.axis_size(c, cs)
        if size != total:
            self.err(SizeConflict, f"concat makes {c} of size {size} from {total} positions", node.span,
                     hint=f"declare axis {c} = " + " + ".join(a for a, _ in src))
        first = operands[0][0].type
        axes = [Axis(c, size) if b.name == src[0][0] else b for b in first.axes]
        out = TensorType(tuple(axes), first.dtype)
        roles = _passing(out)
        roles.update({a: "consumed" for a, _ in src})
        roles[c] = "produced"
        return self.add_box("concat", [t.wire for t, _ in operands], [out], node.span, roles=roles,
                            attrs={"along": tuple(a for a, _ in src), "dst": c})[0]

    # -- convolution and pooling
    def _spatial(self, x: T, over_node, what, kernel, stride, padding):
        if isinstance(over_node, S.Mapping):
            src, dst = self.mapping(over_node, what)
        else:
            src = self.axis_names(over_node, what)
            dst = None
        if dst is not None and len(dst) != len(src):
            self.err(WrongArity, f"{what} maps {len(src)} axes to {len(dst)}", over_node.span)
        if len(kernel) == 1 and len(src) > 1:
            kernel = kernel * len(src)
        if len(kernel) != len(src):
            self.err(WrongArity, f"{what} has {len(src)} spatial axes but a window of {len(kernel)}", over_node.span)
        if len(stride) == 1 and len(src) > 1:
            stride = stride * len(src)
        if len(stride) != len(src):
            self.err(WrongArity, f"{what}'s stride has {len(stride)} entries for {len(src)} axes", over_node.span)
        outs = []
        for i, (name, span) in enumerate(src):
            a = x.type.axis(name)
            if a is None:
                self.err(ShapeMismatch, f"{what} slides over {name}, but the input {x.type} has no {name}", span)
            k, s = kernel[i], stride[i]
            if padding == "same":
                want = (a.size + Size.of(s - 1)) // Size.of(s) if s > 1 else a.size
            else:
                want = (a.size - Size.of(k)) // Size.of(s) + Size.of(1)
            if want.is_const and want.value < 1:
                self.err(SizeConflict, f"{what}'s window {k} is larger than {name} ({a.size})", span)
            if dst is None:
                if want != a.size:
                    self.err(SizeConflict, f"{what} changes the size of {name} from {a.size} to {want}; "
                             "name the new axes", over_node.span,
                             hint=f"over = ({', '.join(n for n, _ in src)}) -> "
                                  f"({', '.join(n + '2' for n, _ in src)}), with those axes declared")
                outs.append(a)
            else:
                oname, ospan = dst[i]
                osize = self.axis_size(oname, ospan) if oname != name else a.size
                if osize != want:
                    self.err(SizeConflict, f"{what} gives {oname} the size {want}, but {oname} is {osize}", ospan,
                             hint=f"declare axis {oname} = {want}")
                outs.append(Axis(oname, osize))
        return [n for n, _ in src], outs, kernel, stride

    def op_conv(self, node, args):
        x = self.float_tensor(self.expr(args["x"]), args["x"].span, "conv's input")
        kernel = self.int_tuple(args["kernel"], "conv's kernel")
        stride = (1,) if args["stride"] is None else self.int_tuple(args["stride"], "conv's stride")
        padding = "same" if args["padding"] is None else self.word(args["padding"], "padding", ("same", "valid"))
        bias = True if args["bias"] is None else self.flag(args["bias"], "bias")
        src, dst = self.mapping(args["map"], "conv's channels")
        if len(src) != 1 or len(dst) != 1:
            self.err(InvalidArgument, "conv maps one channel axis: cin -> cout", args["map"].span)
        (cin, cins), (cout, couts) = src[0], dst[0]
        cin_ax = x.type.axis(cin)
        if cin_ax is None:
            self.err(ShapeMismatch, f"conv reads channels {cin}, but the input {x.type} has no {cin}", cins)
        cout_ax = self.axis(cout, couts, x.type) if cout == cin else self.axis(cout, couts)
        over, outs, kernel, stride = self._spatial(x, args["over"], "conv", kernel, stride, padding)
        if cin in over:
            self.err(InvalidArgument, "the channel axis cannot also be a spatial axis", cins)
        if cout != cin and x.type.axis(cout) is not None:
            self.err(ShapeMismatch, f"conv's output channel axis {cout} is already on its input", couts)
        table = dict(zip(over, outs))
        table[cin] = cout_ax
        out = TensorType(tuple(table.get(a.name, a) for a in x.type.axes))
        k_axes = tuple(Axis(f"k_{n}", Size.of(k)) for n, k in zip(over, kernel))
        weights = [Weight("W", TensorType(k_axes + (cin_ax, cout_ax)),
                          Init("lecun", (), tuple(a.name for a in k_axes) + (cin,), ()))]
        if bias:
            weights.append(Weight("b", TensorType((cout_ax,)), Init("zeros")))
        roles = _passing(out)
        roles.update({n: "replaced" for n in over})
        roles[cin] = "consumed"
        roles[cout] = "replaced" if cout == cin else "produced"
        return self.add_box("conv", [x.wire], [out], node.span, roles=roles, weights=weights,
                            attrs={"over": tuple(over), "out_over": tuple(a.name for a in outs), "kernel": kernel,
                                   "stride": stride, "padding": padding, "cin": cin, "cout": cout,
                                   "bias": bias})[0]

    def op_pool(self, node, args):
        x = self.float_tensor(self.expr(args["x"]), args["x"].span, "pool's input")
        window = self.int_tuple(args["window"], "pool's window")
        stride = window if args["stride"] is None else self.int_tuple(args["stride"], "pool's stride")
        op = "max" if args["op"] is None else self.word(args["op"], "pool's op", ("max", "mean"))
        over, outs, window, stride = self._spatial(x, args["over"], "pool", window, stride, "valid")
        table = dict(zip(over, outs))
        out = TensorType(tuple(table.get(a.name, a) for a in x.type.axes))
        roles = _passing(out)
        roles.update({n: "replaced" for n in over})
        return self.add_box("pool", [x.wire], [out], node.span, roles=roles,
                            attrs={"over": tuple(over), "out_over": tuple(a.name for a in outs), "window": window,
                                   "stride": stride, "op": op})[0]

    # -- circuits and recurrence
    def call_sizes(self, node: S.Call, callee: S.CircuitDef) -> dict[str, Size]:
        names = {a.name for a in callee.axis_params}
        out = {}
        for item in node.sizes:
            if item.name not in names:
                self.err(InvalidArgument, f"{callee.name} has no axis parameter {item.name!r}", item.span,
                         hint=_did_you_mean(item.name, names) or
                         (f"its axis parameters: {', '.join(sorted(names))}" if names else
                          f"{callee.name} takes no axis parameters"))
            if item.size is None:
                self.err(InvalidArgument, f"give {item.name} a size: {item.name} = ...", item.span)
            if item.name in out:
                self.err(DuplicateDefinition, f"axis parameter {item.name} given twice", item.span)
            s = self.eval_size_here(item.size)
            if s.is_const and s.value < 1:
                self.err(SizeTooLarge, f"{item.name} = {s.value}; sizes must be at least 1", item.span)
            out[item.name] = s
        return out

    def match_args(self, callee: Diagram, values: list, spans: list, what: str, span: Span):
        """Match argument values to the callee's inputs; returns (wires, batch axes)."""
        if len(values) != len(callee.inputs):
            self.err(WrongArity, f"{what} takes {len(callee.inputs)} input{'s' if len(callee.inputs) != 1 else ''}"
                     f" ({', '.join(p.name for p in callee.inputs)}), got {len(values)}", span)
        batch: dict[str, Axis] = {}
        wires = []
        inner_axes = {a.name for a in callee.axes}
        for port, v, sp in zip(callee.inputs, values, spans):
            if isinstance(v, _Poison):
                raise _Skip()
            if isinstance(v, C):
                v = self.materialise(v, sp)
            want_flat = flat_types(port.type)
            got_flat = _flat(v)
            if len(want_flat) != len(got_flat) or (isinstance(port.type, TupleType) != isinstance(v, Tup)):
                self.err(ShapeMismatch, f"{what}'s input {port.name} is {port.type}, got {_type_of(v)}", sp)
            for want, got in zip(want_flat, got_flat):
                got = self.tensor(got, sp)
                bad = [a for a in want.axes if got.type.axis(a.name) is None or got.type.axis(a.name).size != a.size]
                if bad or want.dtype != got.type.dtype:
                    self.err(ShapeMismatch, f"{what}'s input {port.name} is {want}, got {got.type}", sp,
                             table=type_table(want, got.type, "input", "argument"),
                             hint=mismatch_hint(want, got.type, port.name))
                for a in got.type.axes:
                    if want.axis(a.name) is None:
                        if a.name in inner_axes:
                            self.err(ShapeMismatch, f"{what} would broadcast over {a.name}, but {a.name} is one of "
                                     f"its own axes", sp, table=type_table(want, got.type, "input", "argument"),
                                     hint=mismatch_hint(want, got.type, port.name))
                        prev = batch.get(a.name)
                        if prev is not None and prev.size != a.size:
                            self.err(SizeConflict, f"broadcast axis {a.name} has two sizes", sp)
                        batch[a.name] = a
                wires.append(got.wire)
        return wires, list(batch.values())

    def call_circuit(self, node: S.Call):
        callee_src = self.ck.circuits[node.func]
        sizes = self.call_sizes(node, callee_src.node)
        values, spans = [], []
        for a in node.args:
            if isinstance(a, (S.Keyword, S.Mapping, S.ResultSpec)):
                self.err(InvalidArgument, f"circuit {node.func} takes its inputs by position", a.span)
            values.append(self.expr(a))
            spans.append(a.span)
        callee = self.ck.instantiate(node.func, sizes, node.span)
        if callee is None:
            raise _Skip()
        wires, batch = self.match_args(callee, values, spans, node.func, node.span)
        out_types = [TensorType(tuple(batch) + t.axes, t.dtype) for t in flat_types(callee.output.type)]
        self._check_outer_sizes(out_types, node.span, node.func)
        roles = _body_roles(callee, batch)
        results = self.add_box("call", wires, out_types, node.span, body=callee, roles=roles,
                               attrs={"circuit": node.func, "batch": tuple(a.name for a in batch)},
                               label=_snake(node.func))
        return _rebuild(callee.output.type, iter(results))

    def _check_outer_sizes(self, types, span, what):
        for t in types:
            for a in t.axes:
                mine = self.b.axes.get(a.name)
                if mine is not None and mine != a.size:
                    self.err(SizeConflict, f"{what} returns axis {a.name} of size {a.size}, but here {a.name} is "
                             f"{mine}", span, hint="give the circuit's axis parameter another name")

    def op_scan(self, node: S.Call):
        if not node.args or not isinstance(node.args[0], S.Name) or node.args[0].id not in self.ck.circuits:
            self.err(InvalidArgument, "scan's first argument is the step circuit: scan(Step, xs, along = t, init = s)",
                     node.args[0].span if node.args else node.span,
                     hint=_did_you_mean(node.args[0].id, self.ck.circuits)
                     if node.args and isinstance(node.args[0], S.Name) else None)
        step_name = node.args[0].id
        xs, kws = [], {}
        for a in node.args[1:]:
            if isinstance(a, S.Keyword):
                if a.name in kws:
                    self.err(DuplicateDefinition, f"argument {a.name} given twice", a.span)
                kws[a.name] = a
            elif isinstance(a, (S.Mapping, S.ResultSpec)):
                self.err(InvalidArgument, "scan takes the step, sequences, and keyword arguments", a.span)
            else:
                xs.append((self.expr(a), a.span))
        for k, a in kws.items():
            if k not in ("along", "init", "const"):
                self.err(InvalidArgument, f"scan has no argument {k!r}", a.span,
                         hint=_did_you_mean(k, ["along", "init", "const"]) or "arguments: along, init, const")
        if "along" not in kws:
            self.err(WrongArity, "scan needs along = axis", node.span)
        if "init" not in kws:
            self.err(WrongArity, "scan needs init = state", node.span)
        (t_name, t_span), = self.axis_names(kws["along"].value, "along")
        init = self.expr(kws["init"].value)
        if isinstance(init, C):
            init = self.materialise(init, kws["init"].span)
        consts, const_spans = [], []
        if "const" in kws:
            cnode = kws["const"].value
            items = cnode.items if isinstance(cnode, S.TupleExpr) else (cnode,)
            for it in items:
                consts.append(self.expr(it))
                const_spans.append(it.span)
        t_size = None
        x_vals = []
        for v, sp in xs:
            t = self.tensor(v, sp, "a scanned sequence")
            ax = t.type.axis(t_name)
            if ax is None:
                self.err(ShapeMismatch, f"scan runs along {t_name}, but the sequence {t.type} has no {t_name}", sp)
            if t_size is not None and ax.size != t_size:
                self.err(SizeConflict, f"scanned sequences differ in the length of {t_name}", sp)
            t_size = ax.size
            x_vals.append(T(t.wire, TensorType(tuple(a for a in t.type.axes if a.name != t_name), t.type.dtype)))
        if t_size is None:
            t_size = self.axis_size(t_name, t_span)
        step = self.ck.instantiate(step_name, {}, node.span)
        if step is None:
            raise _Skip()
        n_in = len(step.inputs)
        init_items = init.items if isinstance(init, Tup) else (init,)
        # the state is one input (maybe of tuple type), or a tuple state spread over several inputs
        spread = (isinstance(init, Tup) and n_in == len(init_items) + len(x_vals) + len(consts)
                  and not (n_in == 1 + len(x_vals) + len(consts)))
        state_args = list(init_items) if spread else [init]
        args = state_args + x_vals + consts
        spans = [kws["init"].span] * len(state_args) + [sp for _, sp in xs] + const_spans
        if len(args) != n_in:
            self.err(WrongArity, f"scan's step {step_name} takes {n_in} inputs, but scan gives it "
                     f"{len(state_args)} state, {len(x_vals)} sequence and {len(consts)} const input"
                     f"{'s' if len(consts) != 1 else ''}", node.span,
                     hint=f"{step_name}(state, x_t..., consts...) -> (state, y_t)")
        wires, batch = self.match_args(step, args, spans, f"step {step_name}", node.span)
        if any(a.name == t_name for a in batch):
            self.err(ShapeMismatch, f"the step would broadcast over the scanned axis {t_name}", node.span)
        # the step returns (state, y) or, with a spread tuple state, (s1, ..., sn, y)
        out_t = step.output.type
        state_t = _type_of(init)
        if not isinstance(out_t, TupleType):
            self.err(ShapeMismatch, f"a scan step returns (state, y_t); {step_name} returns {out_t}", node.span)
        if spread and len(out_t.items) == len(init_items) + 1:
            new_state_t = TupleType(out_t.items[:-1])
            y_t = out_t.items[-1]
        elif len(out_t.items) == 2:
            new_state_t, y_t = out_t.items
        else:
            self.err(ShapeMismatch, f"a scan step returns (state, y_t); {step_name} returns {out_t}", node.span)
        bnames = tuple(a.name for a in batch)
        new_state_b = _add_batch(new_state_t, batch)
        if not _same_type(new_state_b, state_t):
            self.err(ShapeMismatch, f"{step_name} returns the state as {new_state_t}, but it got {state_t}",
                     node.span, hint="a scan step gives back the state with the type of init")
        y_full = _add_axis(_add_batch(y_t, batch), Axis(t_name, t_size))
        out_types = flat_types(new_state_b) + flat_types(y_full)
        self._check_outer_sizes(out_types, node.span, f"scan of {step_name}")
        roles = _body_roles(step, batch)
        roles[t_name] = "consumed" if xs else "produced"
        results = self.add_box("scan", wires, out_types, node.span, body=step, roles=roles,
                               attrs={"circuit": step_name, "along": t_name, "length": t_size,
                                      "n_state": len(flat_types(state_t)), "n_xs": len(x_vals),
                                      "n_const": sum(len(flat_types(_type_of(c))) for c in consts),
                                      "batch": bnames, "spread_state": spread},
                               label=_snake(step_name))
        it = iter(results)
        state_v = _rebuild(state_t, it)
        ys_v = _rebuild(y_full, it)
        return Tup((state_v, ys_v))


# ---------------------------------------------------------------- small helpers


def _assigned_names(stmts) -> list[str]:
    out = []
    for st in stmts:
        if isinstance(st, S.Assign):
            for n, _ in st.targets:
                if n not in out:
                    out.append(n)
        elif isinstance(st, S.Repeat):
            for n in _assigned_names(st.body):
                if n not in out:
                    out.append(n)
    return out


def _body_roles(body: Diagram, batch: list[Axis]) -> dict[str, str]:
    """Roles of a call's axes: the callee covers its own axes; batch axes pass by."""
    ins = {a.name for p in body.inputs for t in flat_types(p.type) for a in t.axes}
    outs = {a.name for t in flat_types(body.output.type) for a in t.axes}
    roles = {a.name: "passing" for a in batch}
    for name in sorted(ins | outs):
        if name not in roles:
            roles[name] = "replaced" if name in ins and name in outs else "consumed" if name in ins else "produced"
    return roles


def _passing(t: TensorType) -> dict[str, str]:
    return {a.name: "passing" for a in t.axes}


def _promote(a: str, b: str) -> str:
    order = {"bool": 0, "int": 1, "float": 2}
    return a if order[a] >= order[b] else b


def _no_dupes(ck, names, what):
    seen = set()
    for n, sp in names:
        if n in seen:
            ck.err(ShapeMismatch, f"axis {n} appears twice in {what}", sp)
        seen.add(n)


def src_names_order(src):
    return [n for n, _ in src]


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


def _has_free(tree) -> bool:
    if tree[0] == "axis":
        return not tree[2].is_const
    return any(isinstance(x, tuple) and _has_free(x) for x in tree[1:])


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


# ---------------------------------------------------------------- entry points


class _NoCycleCollection:
    """Pause the cyclic garbage collector while checking.

    Checking allocates many small objects and no cycles worth collecting; a
    generational collection every few thousand allocations re-walks the whole
    young heap and made checking time grow faster than program size.
    """

    def __enter__(self):
        self.was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.was_enabled:
            gc.enable()


def _check(checker: Checker, root_module: S.Module | None, root: str) -> Program:
    checker.resolve_axes()
    diagrams: dict[str, Diagram] = {}
    order = []
    if root_module is not None:
        order = [c.name for c in root_module.circuits]
    order += [n for n in checker.circuits if n not in order]
    for name in order:
        src = checker.circuits[name]
        d = checker.instantiate(name, {}, src.node.span)
        if d is not None:
            diagrams[name] = d
    checker.sink.raise_if_any(checker.sources)
    return Program(checker, root, diagrams)


def load(path, *, max_weight_elements: int = DEFAULT_MAX_WEIGHT_ELEMENTS) -> Program:
    """Read, check and return a program from a `.circuit` file.

    `use` may read files next to this one (and below) and in the bundled
    circuits/ folder; nothing else. Raises CircuitError with every problem found.
    """
    path = Path(path)
    display = str(path)
    checker = Checker([path.parent, _resources.circuits_dir()], max_weight_elements)
    if not path.is_file():
        raise UseNotFound(f"no such file: {path}")
    with _NoCycleCollection():
        module = checker.load_file(path, display)
        return _check(checker, module, display)


def parse(text: str, name: str = "<text>", *, root: str | os.PathLike | None = None,
          max_weight_elements: int = DEFAULT_MAX_WEIGHT_ELEMENTS) -> Program:
    """Check program text. `use` resolves against `root` (if given) and circuits/.

    >>> program = parse("axis d = 4\\ncircuit Id(x: [d]) -> [d]:\\n    return x\\n")
    >>> program["Id"].output.type
    TensorType(axes=(Axis(name='d', size=Size('4')),), dtype='float')
    """
    roots = ([Path(root)] if root is not None else []) + [_resources.circuits_dir()]
    checker = Checker(roots, max_weight_elements)
    with _NoCycleCollection():
        module = checker.load_text(text, name, f"<text:{name}>", Path(root) if root is not None else None)
        return _check(checker, module, name)
