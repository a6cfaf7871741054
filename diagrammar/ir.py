"""The typed diagram: the one thing every backend reads.

A Diagram is a frozen, deterministic value: boxes in topological order, wires
that are bundles of named, sized axes, weights with shapes and initialisers,
and nested diagrams for circuit calls, `repeat` bodies and `scan` steps. Sizes
are symbolic (`Size`) where an axis is bound only at compile time.

Every box records, for each axis it touches, its role: consumed (contracted,
reduced, normalised over), produced (new), or passing (broadcast). The renderer
draws broadcasting from these roles and the cost backend counts from them.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Iterator

from .errors import Span

__all__ = ["Size", "FloorDiv", "Axis", "TensorType", "TupleType", "Wire", "Init", "Weight",
           "Box", "Port", "Requirement", "Diagram", "eval_const", "eval_whole", "const_symbols", "const_label"]


# ---------------------------------------------------------------- sizes


@dataclass(frozen=True, order=True)
class FloorDiv:
    """An opaque `num // den` that did not divide exactly at check time."""
    num: "Size"
    den: "Size"

    def __str__(self) -> str:
        return f"({self.num} // {self.den})"


def _sym_key(sym) -> str:
    return sym if isinstance(sym, str) else str(sym)


@dataclass(frozen=True)
class Size:
    """An integer polynomial over axes whose sizes are bound at compile time.

    `terms` maps monomials (sorted tuples of (symbol, power)) to coefficients;
    the canonical form makes `seq * 2 == 2 * seq` and lets the checker compare
    sizes it cannot evaluate yet.

    >>> str(Size.of(4) * Size.symbol("d"))
    '4*d'
    >>> (Size.symbol("d") // Size.of(2)).evaluate({"d": 10})
    5
    """

    terms: tuple = ()

    @staticmethod
    def of(n: int) -> "Size":
        return Size(((((), int(n)),) if n else ()))

    @staticmethod
    def symbol(sym) -> "Size":
        return Size(((((sym, 1),), 1),))

    @staticmethod
    def _make(d: dict) -> "Size":
        items = [(m, c) for m, c in d.items() if c != 0]
        items.sort(key=lambda mc: (len(mc[0]), [(_sym_key(s), p) for s, p in mc[0]]))
        return Size(tuple(items))

    def _dict(self) -> dict:
        return dict(self.terms)

    def __add__(self, other: Size | int) -> Size:
        try:
            terms = other.terms
        except AttributeError:  # `n + 1`, as a cost rule may write it (no test on the common path)
            if not isinstance(other, int):
                return NotImplemented
            terms = Size.of(other).terms
        d = self._dict()
        for m, c in terms:
            d[m] = d.get(m, 0) + c
        return Size._make(d)

    def __neg__(self) -> "Size":
        return Size._make({m: -c for m, c in self.terms})

    def __sub__(self, other: Size | int) -> Size:
        return self + (-other)

    __radd__ = __add__

    def __rsub__(self, other: int) -> Size:
        return Size.of(other) - self

    def __mul__(self, other: Size | int) -> Size:
        try:
            terms = other.terms
        except AttributeError:  # `n * 3`
            if not isinstance(other, int):
                return NotImplemented
            terms = Size.of(other).terms
        d: dict = {}
        for m1, c1 in self.terms:
            for m2, c2 in terms:
                powers: dict = {}
                for s, p in m1 + m2:
                    powers[s] = powers.get(s, 0) + p
                m = tuple(sorted(powers.items(), key=lambda sp: _sym_key(sp[0])))
                d[m] = d.get(m, 0) + c1 * c2
        return Size._make(d)

    __rmul__ = __mul__

    def __floordiv__(self, other: "Size") -> "Size":
        if other.is_const and other.value != 0:
            k = other.value
            if self.is_const:
                return Size.of(self.value // k)
            if all(c % k == 0 for _, c in self.terms):
                return Size._make({m: c // k for m, c in self.terms})
        elif not other.is_const and self == other:
            return Size.of(1)
        elif not other.is_const and len(other.terms) == 1 and other.terms[0][1] == 1:
            # exact division by a single monomial, e.g. (4*d) // d
            (mono, _), = other.terms
            out = {}
            for m, c in self.terms:
                pm = dict(m)
                for s, p in mono:
                    if pm.get(s, 0) < p:
                        break
                    pm[s] -= p
                else:
                    out[tuple(sorted(((s, p) for s, p in pm.items() if p), key=lambda sp: _sym_key(sp[0])))] = c
                    continue
                out = None
                break
            if out is not None:
                return Size._make(out)
        return Size.symbol(FloorDiv(self, other))

    @property
    def is_const(self) -> bool:
        return all(m == () for m, _ in self.terms)

    @property
    def value(self) -> int:
        """The integer, for a size with no free symbols."""
        if not self.is_const:
            raise ValueError(f"size {self} is not known until compile time")
        return self.terms[0][1] if self.terms else 0

    def symbols(self) -> set[str]:
        """Free axis names this size depends on."""
        out: set[str] = set()
        for m, _ in self.terms:
            for s, _p in m:
                if isinstance(s, FloorDiv):
                    out |= s.num.symbols() | s.den.symbols()
                else:
                    out.add(s)
        return out

    def evaluate(self, bindings: dict[str, int]) -> int:
        total = 0
        for m, c in self.terms:
            v = c
            for s, p in m:
                if isinstance(s, FloorDiv):
                    den = s.den.evaluate(bindings)
                    if den == 0:
                        raise ZeroDivisionError(f"{s} divides by zero")
                    base = s.num.evaluate(bindings) // den
                else:
                    if s not in bindings:
                        raise KeyError(s)
                    base = int(bindings[s])
                v *= base ** p
            total += v
        return total

    def bind(self, bindings: dict[str, int]) -> "Size":
        """Substitute the known symbols; the rest stay symbolic."""
        if self.symbols() <= set(bindings):
            return Size.of(self.evaluate(bindings))
        out = Size.of(0)
        for m, c in self.terms:
            v = Size.of(c)
            for s, p in m:
                if isinstance(s, FloorDiv):
                    base = s.num.bind(bindings) // s.den.bind(bindings)
                elif s in bindings:
                    base = Size.of(bindings[s])
                else:
                    base = Size.symbol(s)
                for _ in range(p):
                    v = v * base
            out = out + v
        return out

    def __str__(self) -> str:
        if not self.terms:
            return "0"
        parts = []
        for m, c in self.terms:
            factors = []
            for s, p in m:
                factors.extend([_sym_key(s)] * p)
            if not factors:
                parts.append(str(c))
            elif c == 1:
                parts.append("*".join(factors))
            elif c == -1:
                parts.append("-" + "*".join(factors))
            else:
                parts.append(f"{c}*" + "*".join(factors))
        text = " + ".join(parts)
        return text.replace("+ -", "- ")

    def __repr__(self) -> str:
        return f"Size({str(self)!r})"


# ---------------------------------------------------------------- types


@dataclass(frozen=True)
class Axis:
    name: str
    size: Size

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class TensorType:
    """A bundle of wires: named axes (order = layout, not meaning) and a dtype."""

    axes: tuple[Axis, ...]
    dtype: str = "float"  # float | int | bool

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def axis(self, name: str) -> Axis | None:
        for a in self.axes:
            if a.name == name:
                return a
        return None

    def same(self, other: "TensorType") -> bool:
        """Equal as types: the same set of axes (with sizes) and dtype."""
        return (isinstance(other, TensorType) and self.dtype == other.dtype
                and len(self.axes) == len(other.axes) and set(self.axes) == set(other.axes))

    def __str__(self) -> str:
        prefix = "" if self.dtype == "float" else self.dtype
        return prefix + "[" + ", ".join(self.names) + "]"

    def numel(self) -> Size:
        n = Size.of(1)
        for a in self.axes:
            n = n * a.size
        return n


@dataclass(frozen=True)
class TupleType:
    items: tuple[Any, ...]

    def same(self, other) -> bool:
        return (isinstance(other, TupleType) and len(self.items) == len(other.items)
                and all(a.same(b) for a, b in zip(self.items, other.items)))

    def __str__(self) -> str:
        return "(" + ", ".join(str(t) for t in self.items) + ")"

    def flat(self) -> list[TensorType]:
        out = []
        for t in self.items:
            out.extend(t.flat() if isinstance(t, TupleType) else [t])
        return out


def flat_types(t) -> list[TensorType]:
    return t.flat() if isinstance(t, TupleType) else [t]


# ---------------------------------------------------------------- boxes and wires


@dataclass(frozen=True)
class Wire:
    """One tensor value: its stable name within the diagram and its type."""
    name: str
    type: TensorType


@dataclass(frozen=True)
class Init:
    """How a weight starts: zeros, ones, normal(std), uniform(lo, hi), lecun, glorot, or an expression.

    `fan_in`/`fan_out` name the axes lecun and glorot scale over. An
    initialiser expression (`param A: [d, n] = log(arange(n) + 1)`) has kind
    "expr": `expr` is the checked expression as a diagram with no inputs, run
    once when the module is built and broadcast to the weight's axes; `text`
    is its source.
    """
    kind: str
    args: tuple[float, ...] = ()
    fan_in: tuple[str, ...] = ()
    fan_out: tuple[str, ...] = ()
    expr: Diagram | None = None
    text: str = ""

    def __str__(self) -> str:
        if self.kind == "expr":
            return self.text
        if self.args:
            return f"{self.kind}({', '.join(f'{a:g}' for a in self.args)})"
        return self.kind


@dataclass(frozen=True)
class Weight:
    """A learnable array owned by a box. `name` is local (W, b, scale, ...).

    `state` marks an array the box updates itself instead of being trained
    (batchnorm's running_mean and running_var): it is not a parameter, so
    `Diagram.weights()` and `parameter_count()` leave it out and
    `Diagram.state()` and `state_count()` list it.
    """
    name: str
    type: TensorType
    init: Init
    state: bool = False


@dataclass(frozen=True)
class Box:
    """One operation. `inputs`/`outputs` are wire names in the enclosing diagram.

    `body` is the nested diagram of a circuit call (op "call"), a `repeat`
    block (op "repeat") or a `scan` step (op "scan").
    """
    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: tuple[tuple[str, Any], ...] = ()
    weights: tuple[Weight, ...] = ()
    roles: tuple[tuple[str, str], ...] = ()
    body: "Diagram | None" = None
    span: Span | None = field(default=None, compare=False)

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    def role(self, axis: str) -> str | None:
        for a, r in self.roles:
            if a == axis:
                return r
        return None


@dataclass(frozen=True)
class Port:
    """A circuit input or its result: a type and the wires that carry it."""
    name: str
    type: Any  # TensorType | TupleType
    wires: tuple[str, ...]


_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


@dataclass(frozen=True)
class Requirement:
    """`require left OP right` where check time could not decide it: it reads a free size.

    A backend checks it once the free sizes are bound, before it allocates anything.
    `names` are the axes the text names, with their sizes, for the message.
    """
    left: Size
    op: str  # < <= > >= ==
    right: Size
    text: str  # as written: "seq <= ctx"
    names: tuple[tuple[str, Size], ...] = ()
    span: Span | None = field(default=None, compare=False)

    def holds(self, bindings: dict[str, int] | None = None) -> bool | None:
        """Whether it holds with these free sizes; None while a size it reads is unbound."""
        try:
            diff = (self.left - self.right).bind(dict(bindings or {}))
        except ZeroDivisionError:
            return False
        if not diff.is_const:
            return None
        return _COMPARE[self.op](diff.value, 0)

    def failure(self, bindings: dict[str, int] | None = None) -> str:
        """`require seq <= ctx fails: seq = 40, ctx = 32`."""
        shown = []
        for name, size in self.names:
            try:
                shown.append(f"{name} = {size.bind(dict(bindings or {}))}")
            except ZeroDivisionError:
                shown.append(f"{name} = {size}")
        return f"require {self.text} fails" + (": " + ", ".join(shown) if shown else "")


@dataclass(frozen=True)
class Diagram:
    """One instantiated circuit (its axis parameters bound).

    `axis_args` holds each axis parameter and its size, or, for a name parameter
    of a generic circuit (`[axis q]`), the name of the axis the call bound it to
    (`("q", "seq")`). `requires` are the `require`s still to check once free
    sizes are bound (see `Requirement`).
    """

    name: str
    axis_args: tuple[tuple[str, Size | str], ...]
    inputs: tuple[Port, ...]
    output: Port
    wires: tuple[Wire, ...]
    boxes: tuple[Box, ...]
    span: Span | None = field(default=None, compare=False)
    # wire -> the name an unpacking in the source gave it (`lstm, value = state` names state.1 `value`);
    # figures label ports and stored wires with these names
    aliases: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    requires: tuple[Requirement, ...] = field(default=(), compare=False)

    # -- lookups
    def wire(self, name: str) -> Wire:
        for w in self.wires:
            if w.name == name:
                return w
        raise KeyError(name)

    def box(self, name: str) -> Box:
        for b in self.boxes:
            if b.name == name:
                return b
        raise KeyError(name)

    @property
    def axes(self) -> tuple[Axis, ...]:
        """Every axis on a wire of this diagram, by first appearance."""
        seen: dict[str, Axis] = {}
        for w in self.wires:
            for a in w.type.axes:
                seen.setdefault(a.name, a)
        return tuple(seen.values())

    def free_sizes(self) -> set[str]:
        """Axis names whose sizes must be given at compile time."""
        out: set[str] = set()
        for w in self.wires:
            for a in w.type.axes:
                out |= a.size.symbols()
        for _, wt, _ in self.weights():
            for a in wt.type.axes:
                out |= a.size.symbols()
        for b in self.boxes:
            c = b.attr("count")
            if isinstance(c, Size):
                out |= c.symbols()
            for key in ("value", "start"):  # constants folded from sizes (const, full, slice)
                out |= const_symbols(b.attr(key))
            for w in b.weights:
                if w.init.expr is not None:
                    out |= w.init.expr.free_sizes()
            if b.body is not None:
                out |= b.body.free_sizes()
        return out

    def weights(self, prefix: str = "") -> Iterator[tuple[str, Weight, Size]]:
        """(dotted name, weight, copies) for every trained weight, nested ones included.

        `copies` is the product of enclosing `repeat` counts and `dispatch`
        expert counts (each copy has its own weights). State (`Weight.state`)
        is left out: see `state()`.
        """
        yield from self._weights(prefix, Size.of(1), False)

    def state(self, prefix: str = "") -> Iterator[tuple[str, Weight, Size]]:
        """(dotted name, weight, copies) for every state array (batchnorm's running statistics)."""
        yield from self._weights(prefix, Size.of(1), True)

    def _weights(self, prefix: str, copies: Size, state: bool):
        for b in self.boxes:
            for w in b.weights:
                if w.state == state:
                    name = f"{prefix}{b.name}" + (f".{w.name}" if w.name else "")
                    yield name, w, copies
            if b.body is not None:
                inner = copies * b.attr("count") if b.op in ("repeat", "dispatch") else copies
                yield from b.body._weights(f"{prefix}{b.name}.", inner, state)

    def parameter_count(self, bindings: dict[str, int] | None = None) -> Size:
        total = Size.of(0)
        for _, w, copies in self.weights():
            total = total + w.type.numel() * copies
        return total.bind(bindings) if bindings else total

    def state_count(self, bindings: dict[str, int] | None = None) -> Size:
        """The number of state values (not parameters: updated by the forward pass, never trained)."""
        total = Size.of(0)
        for _, w, copies in self.state():
            total = total + w.type.numel() * copies
        return total.bind(bindings) if bindings else total

    def graph(self):
        """A networkx DiGraph: nodes are boxes plus `input:`/`output` nodes; edges are wires."""
        import networkx as nx

        g = nx.DiGraph()
        producer: dict[str, str] = {}
        for port in self.inputs:
            node = f"input:{port.name}"
            g.add_node(node, kind="input", port=port)
            for w in port.wires:
                producer[w] = node
        for b in self.boxes:
            g.add_node(b.name, kind="box", box=b)
            for w in b.outputs:
                producer[w] = b.name
        for b in self.boxes:
            for w in b.inputs:
                g.add_edge(producer[w], b.name, wire=w)
        g.add_node("output", kind="output", port=self.output)
        for w in self.output.wires:
            g.add_edge(producer[w], "output", wire=w)
        return g

    def summary(self, bindings: dict[str, int] | None = None) -> str:
        ins = ", ".join(f"{p.name}: {p.type}" for p in self.inputs)
        n_weights = sum(1 for _ in self.weights())
        params = self.parameter_count(bindings)
        p = f"{params.value:,}" if params.is_const else str(params)
        state = self.state_count(bindings)
        extra = "" if state == Size.of(0) else f", {f'{state.value:,}' if state.is_const else state} state"
        return (f"{self.name}({ins}) -> {self.output.type}  {n_weights} weight{'s' if n_weights != 1 else ''}, "
                f"{p} parameter{'s' if p != '1' else ''}" + extra)

    def walk(self, prefix: str = "") -> Iterator[tuple[str, Box]]:
        """Every box, nested ones included, with its dotted path."""
        for b in self.boxes:
            yield prefix + b.name, b
            if b.body is not None:
                yield from b.body.walk(prefix + b.name + ".")

    # -- conveniences that hand the diagram to a backend (imported lazily,
    # so the IR itself never depends on jax or the renderer)
    def compile(self, *, rngs, **axis_sizes):
        """A flax.nnx.Module that runs this diagram (see backends/flax/)."""
        from .backends.flax import compile_diagram
        return compile_diagram(self, rngs=rngs, **axis_sizes)

    def render_svg(self, *, depth: int | None = 0, **options) -> str:
        from .backends.svg import render_svg
        return render_svg(self, depth=depth, **options)

    def _repr_svg_(self) -> str:
        return self.render_svg()

    def __repr__(self) -> str:
        return f"<Diagram {self.summary()}>"


# ---------------------------------------------------------------- constants

# A scalar constant folded at check time is a small tree of tuples:
# ("num", float) | ("axis", name, Size) | ("neg", t) | (op, a, b) | ("fn", name, t)
# A whole-number literal (`3`) is ("num", int), any other number ("num", float); ("floordiv", a, b),
# ("mod", a, b) and the casts ("fn", "int" | "float", t) come from v1's integer arithmetic.
_CONST_FNS = {
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "abs": abs, "tanh": math.tanh,
    "square": lambda x: x * x, "relu": lambda x: max(x, 0.0),
    "sigmoid": lambda x: 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x)),
    "softplus": lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x))),  # neither overflows for large |x|
    "erf": math.erf, "sin": math.sin, "cos": math.cos,
}
CONST_FUNCTIONS = frozenset(_CONST_FNS)  # the functions a constant folds through at check time
_CASTS = {"int": lambda x: float(math.trunc(x)), "float": float}


def eval_const(tree, bindings: dict[str, int] | None = None) -> float:
    """The value of a folded constant, as a float (`bindings`: the free sizes).

    Raises:
        KeyError: a free size it needs is not bound.
        ZeroDivisionError: `//` or `%` by zero.
        ValueError, OverflowError: `int` of NaN or an infinity.
    """
    kind = tree[0]
    if kind == "num":
        return float(tree[1])
    if kind == "axis":
        s = tree[2]
        return float(s.value if s.is_const else s.evaluate(bindings or {}))
    if kind == "neg":
        return -eval_const(tree[1], bindings)
    if kind == "fn":
        fn = _CASTS.get(tree[1]) or _CONST_FNS[tree[1]]
        return float(fn(eval_const(tree[2], bindings)))
    if kind in ("floordiv", "mod"):
        return float(eval_whole(tree, bindings))
    a, b = eval_const(tree[1], bindings), eval_const(tree[2], bindings)
    return {"add": a + b, "sub": a - b, "mul": a * b,
            "div": a / b if b else math.copysign(math.inf, a) if a else math.nan}[kind]


def eval_whole(tree, bindings: dict[str, int] | None = None) -> int:
    """The exact integer value of a whole constant (`//` and `%` floor as Python's do).

    A tree that is not whole (`2.5`, `d / 2`) gives its value truncated toward
    zero; raises as `eval_const`.

    >>> eval_whole(("floordiv", ("num", -7), ("num", 2))), eval_whole(("mod", ("num", -7), ("num", 2)))
    (-4, 1)
    """
    kind = tree[0]
    if kind == "num" and isinstance(tree[1], int):
        return tree[1]
    if kind == "axis":
        s = tree[2]
        return s.value if s.is_const else s.evaluate(bindings or {})
    if kind == "neg":
        return -eval_whole(tree[1], bindings)
    if kind in ("add", "sub", "mul", "floordiv", "mod"):
        a, b = eval_whole(tree[1], bindings), eval_whole(tree[2], bindings)
        return {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "floordiv": operator.floordiv,
                "mod": operator.mod}[kind](a, b)
    return math.trunc(eval_const(tree, bindings))


def const_symbols(tree) -> set[str]:
    """The free sizes a folded constant reads (none for anything that is not a constant tree)."""
    if not isinstance(tree, tuple) or not tree:
        return set()
    if tree[0] == "axis":
        return tree[2].symbols() if isinstance(tree[2], Size) else set()
    out: set[str] = set()
    for x in tree[1:]:
        out |= const_symbols(x)
    return out


def const_label(tree) -> str:
    kind = tree[0]
    if kind == "num":
        v = tree[1]
        return "inf" if v == math.inf else f"{v:g}"
    if kind == "axis":
        return tree[1]
    if kind == "neg":
        return "-" + const_label(tree[1])
    if kind == "fn":
        return f"{tree[1]}({const_label(tree[2])})"
    sym = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%"}[kind]
    return f"{const_label(tree[1])} {sym} {const_label(tree[2])}"
