"""Backend: the cost of a diagram (parameters, FLOPs and memory), per box and in total.

Pure Python over the IR (never imports jax). Every figure is computed twice:
as a **formula** in the axis NAMES (`2*d*dk*heads*seq`, a `Size` whose symbols
are axis names, `batch` for the batch size) and as a **value** (the axes'
sizes, the `bindings` for free sizes and the batch size substituted; an `int`
once everything is known).

How we count (the README quotes this):

- A box is broadcast over the wires that pass by it, so its work is counted
  over the full iteration space of its inputs and outputs, including the batch
  and the extra axes a circuit call or scan is broadcast over. A wire carries
  the batch (and call broadcast axes) only when it depends on an input; values
  computed from weights and constants alone are computed once, as `jax.vmap`
  does.
- **matmul**: linear, dot, einsum and conv, two FLOPs per multiply-add (a
  multiply-add is one point of the contraction's iteration space: the product
  of all its axes). A conv counts only the kernel taps that land inside the
  (padded) input, as XLA does. An einsum first sums away the axes only one
  operand has (element-wise work, as jnp.einsum does) and then contracts left
  to right; a product that sums nothing costs one FLOP per element. A bias add
  is element-wise.
- **elementwise**: one FLOP per output element for `+ - * /`, negation,
  comparisons, maximum, minimum, where, relu, abs, square (plus one per
  element of an operand whose dtype must be converted); reductions cost one
  FLOP per element folded (`n_in - n_out`; `mean` adds one division per result).
  Composite functions count what jax.nn's definitions cost in XLA: sigmoid 3
  (+1 transcendental), gelu (tanh form) 8 (+1), silu 4 (+1), softplus 6 (+2),
  softmax `4n - m` (+n exp; `m` elements after reducing), log_softmax `4n - 2m`
  (+n + m), logsumexp `3n + 2m` (+n + m), layernorm `7n + 2m` (+m rsqrt),
  rmsnorm `4n + m` (+m), causal `2n` (compare positions, select), onehot
  `2n` (compare, convert), argmax `9(n - m)`, pool `window - 1` per output
  (+1 for mean), and a lookup (embed, gather) `n + 6` per index: the
  bounds-checked indexing of `jnp.take` (wrap negative indices, test the
  range, fill what falls outside).
- **transcendental**: exp, log, tanh, sigmoid, sqrt, and the exponentials and
  reciprocal square roots inside gelu, silu, softplus, softmax and the norms:
  one per element (XLA reports these separately as `transcendentals`).
- Data movement costs nothing: rename, merge, split, stack, concat, take
  (a static index), arange, const, param. Dropout counts as the
  identity: the figures describe the forward pass at inference.
- `repeat N` multiplies its body by N (N copies, N sets of weights); `scan`
  multiplies its step by the scan length (weights shared); a circuit call is
  the sum of its body.

Backward-pass FLOPs (the gradient of a scalar loss with respect to every
weight, i.e. one training step minus its forward pass) follow per-operation
rules, calibrated against XLA's count of `jax.vjp` for jax.nn's definitions.
An operand gets a gradient only if it depends on a weight (data inputs,
indices and masks do not):

- matmuls: one forward's worth of multiply-adds per operand that needs a
  gradient: 2x forward for a linear map on an activation (input and weight
  gradients), 1x on raw data (weight gradient only), 2x for dot(q, k) of two
  activations. A bias gradient is a sum over the output: `n_out`.
- add: a sum over broadcast axes per operand (`n_out - n_operand`); sub: the
  same plus a negation; mul: `n_out` + the sum; div: 1 and 5 per element for
  the two operands; maximum/minimum 6 per operand; where 2 per branch; neg 1.
- unary, per element: relu 2, abs 5, square 2, exp 1, log 1, sqrt 2, tanh 4,
  sigmoid 3, gelu 16, silu 6, softplus 7.
- softmax 6n, log_softmax 3n, logsumexp n, mean n, max/min 5n, sum 0,
  layernorm 20n, rmsnorm 10n, causal n, pool 8 (max) or 3 (mean) per
  input element, gather/embed a scatter-add of `n_out`; data movement 0.

Activation bytes: 4 per element for float and int wires, 1 for bool. The peak
memory is that of the forward pass run box by box in topological order: every
input is live at the start, a box's outputs are allocated while it runs and a
wire is freed after its last consumer (the circuit's outputs live to the end);
inside a call the caller's wires that are still needed later stay live. A
`repeat` runs its copies one after another; a `scan` holds its stacked outputs
while the step runs. Weights are counted separately (`weight_bytes`); the
`peak_bytes` figure adds them. The peak is a maximum, so its formula is the
polynomial of the live set at the peak for the sizes given (sizes still free
are taken as 512 to find where the peak is).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from ..errors import SizeTooLarge
from ..ir import Box, Diagram, FloorDiv, Size, TensorType, flat_types

__all__ = ["CATEGORIES", "DTYPE_BYTES", "Figure", "BoxCost", "CostReport", "analyse", "box_annotations",
           "check_budget", "subst", "human_count", "human_flops", "human_bytes", "format_table"]

CATEGORIES = ("matmul", "elementwise", "transcendental")
DTYPE_BYTES = {"float": 4, "int": 4, "bool": 1}
BATCH = "batch"
_GUESS = 512  # stands in for a free size nobody bound, to locate the peak

ZERO = Size.of(0)
ONE = Size.of(1)


# ---------------------------------------------------------------- sizes


def subst(size: Size, env: dict[str, Size]) -> Size:
    """`size` with each symbol named in `env` replaced by a Size (others stay symbolic).

    >>> str(subst(Size.symbol("key") * Size.symbol("d"), {"key": Size.symbol("seq")}))
    'd*seq'
    """
    out = ZERO
    for mono, coeff in size.terms:
        term = Size.of(coeff)
        for sym, power in mono:
            if isinstance(sym, FloorDiv):
                base = subst(sym.num, env) // subst(sym.den, env)
            elif sym in env:
                base = env[sym]
            else:
                base = Size.symbol(sym)
            for _ in range(power):
                term = term * base
        out = out + term
    return out


def _prod(items: Iterable[Size]) -> Size:
    out = ONE
    for s in items:
        out = out * s
    return out


def _k(n: int | float) -> Size:
    return Size.of(int(n))


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Figure:
    """One figure: `formula` in axis names (and `batch`), `value` with sizes substituted."""

    formula: Size
    value: Size

    @property
    def number(self) -> int | None:
        """The integer, once every size is known; None otherwise."""
        return self.value.value if self.value.is_const else None

    def to_json(self) -> dict:
        n = self.number
        return {"value": n if n is not None else str(self.value), "formula": str(self.formula)}

    def __add__(self, other: "Figure") -> "Figure":
        return Figure(self.formula + other.formula, self.value + other.value)

    def __str__(self) -> str:
        n = self.number
        return f"{n:,}" if n is not None else str(self.value)


@dataclass(frozen=True)
class BoxCost:
    """The cost of one box, nested ones included (figures count every copy and step).

    A call, repeat or scan row is the sum of the rows inside it; `multiplier`
    says how many times the box runs per example (repeat counts times scan
    lengths around it), and is already included in every figure.
    """

    path: str
    name: str
    op: str
    label: str
    depth: int
    output_type: str
    multiplier: Figure
    params: Figure
    flops: dict[str, Figure]
    forward_flops: Figure
    backward_flops: Figure
    activation_bytes: Figure

    def to_json(self) -> dict:
        return {"path": self.path, "name": self.name, "op": self.op, "label": self.label, "depth": self.depth,
                "output_type": self.output_type, "multiplier": self.multiplier.to_json(),
                "params": self.params.to_json(),
                "flops": {c: f.to_json() for c, f in self.flops.items()},
                "forward_flops": self.forward_flops.to_json(),
                "backward_flops": self.backward_flops.to_json(),
                "activation_bytes": self.activation_bytes.to_json()}


@dataclass(frozen=True)
class CostReport:
    """Per-box rows (in `Diagram.walk()` order) and totals for one circuit."""

    circuit: str
    signature: str
    batch: int
    bindings: dict[str, int]
    free_sizes: tuple[str, ...]
    symbols: dict[str, str]  # formula symbol -> the size it stands for
    boxes: tuple[BoxCost, ...]
    parameters: Figure
    weight_bytes: Figure
    flops: dict[str, Figure]
    forward_flops: Figure
    backward_flops: Figure
    activation_bytes: Figure
    input_bytes: Figure
    output_bytes: Figure
    peak_activation_bytes: Figure
    peak_bytes: Figure

    @property
    def complete(self) -> bool:
        """True when every size is known (every figure has a number)."""
        return self.forward_flops.number is not None and self.parameters.number is not None

    def box(self, path: str) -> BoxCost:
        for b in self.boxes:
            if b.path == path:
                return b
        raise KeyError(path)

    def totals(self) -> dict[str, Figure]:
        out = {"parameters": self.parameters, "weight_bytes": self.weight_bytes}
        out.update({f"flops.{c}": f for c, f in self.flops.items()})
        out.update(forward_flops=self.forward_flops, backward_flops=self.backward_flops,
                   activation_bytes=self.activation_bytes, input_bytes=self.input_bytes,
                   output_bytes=self.output_bytes, peak_activation_bytes=self.peak_activation_bytes,
                   peak_bytes=self.peak_bytes)
        return out

    def to_json(self) -> dict:
        return {
            "circuit": self.circuit, "signature": self.signature, "batch": self.batch,
            "bindings": dict(self.bindings), "free_sizes": list(self.free_sizes), "symbols": dict(self.symbols),
            "totals": {
                "parameters": self.parameters.to_json(), "weight_bytes": self.weight_bytes.to_json(),
                "flops": {c: f.to_json() for c, f in self.flops.items()},
                "forward_flops": self.forward_flops.to_json(), "backward_flops": self.backward_flops.to_json(),
                "activation_bytes": self.activation_bytes.to_json(), "input_bytes": self.input_bytes.to_json(),
                "output_bytes": self.output_bytes.to_json(),
                "peak_activation_bytes": self.peak_activation_bytes.to_json(),
                "peak_bytes": self.peak_bytes.to_json(),
            },
            "boxes": [b.to_json() for b in self.boxes],
        }


# ---------------------------------------------------------------- per-op rules

# unary element-wise: (element-wise FLOPs, transcendentals, backward FLOPs) per element
UNARY_RULES = {
    "relu": (1, 0, 2), "abs": (1, 0, 5), "square": (1, 0, 2),
    "exp": (0, 1, 1), "log": (0, 1, 1), "sqrt": (0, 1, 2), "tanh": (0, 1, 4),
    "sigmoid": (3, 1, 3), "gelu": (8, 1, 16), "silu": (4, 1, 6), "softplus": (6, 2, 7),
}
BINARY = {"add", "sub", "mul", "div", "lt", "le", "gt", "ge", "eq", "maximum", "minimum", "where"}
COMPARISONS = {"lt", "le", "gt", "ge", "eq"}
FREE_OPS = {"rename", "merge", "split", "stack", "concat", "take", "arange", "const", "param", "dropout"}
COMPOUND = {"call", "repeat", "scan"}
_RANK = {"bool": 0, "int": 1, "float": 2}


@dataclass(frozen=True)
class _Info:
    """What the analysis knows of a wire: extra axes it carries (batch, broadcast) and whether it needs a gradient."""
    extras: frozenset
    grad: bool


@dataclass
class _Acc:
    params: Size = ZERO
    mm: Size = ZERO
    ew: Size = ZERO
    tr: Size = ZERO
    bwd: Size = ZERO
    act: Size = ZERO

    def add(self, o: "_Acc") -> None:
        self.params = self.params + o.params
        self.mm = self.mm + o.mm
        self.ew = self.ew + o.ew
        self.tr = self.tr + o.tr
        self.bwd = self.bwd + o.bwd
        self.act = self.act + o.act


class _Analyser:
    def __init__(self, diagram: Diagram, batch: int, bindings: dict[str, int]):
        self.d = diagram
        self.batch = int(batch)
        self.bindings = {k: int(v) for k, v in bindings.items()}
        self.claims: dict[str, Size] = {BATCH: Size.symbol(("\0", BATCH))}  # name -> the size it denotes
        self.rows: list[dict] = []
        self.unknown: set[str] = set()
        self._envs: dict = {}
        self._wire_tables: dict[int, dict[str, TensorType]] = {}  # diagrams stay alive while self does
        self._numel: dict = {}
        self.infos: dict[str, dict[str, _Info]] = {}
        self._prop_cache: dict = {}
        # root axes claim their names first
        for a in diagram.axes:
            self.sym(a.name, a.size)

    # -- symbols
    def sym(self, name: str, size: Size) -> Size:
        """The formula symbol for an axis: its name, unless that name already means another size."""
        prev = self.claims.get(name)
        if prev is None:
            self.claims[name] = size
            return Size.symbol(name)
        return Size.symbol(name) if prev == size else size

    def env(self, guess: bool = False) -> dict[str, Size]:
        out = {}
        for name, size in self.claims.items():
            if name == BATCH:
                out[name] = Size.of(self.batch)
                continue
            v = size.bind(self.bindings) if self.bindings else size
            if guess and not v.is_const:
                v = v.bind({s: _GUESS for s in v.symbols()})
            out[name] = v
        return out

    def _env_for(self, guess: bool) -> dict[str, Size]:
        key = (guess, len(self.claims))
        if key not in self._envs:
            self._envs[key] = self.env(guess)
        return self._envs[key]

    def value(self, formula: Size) -> Size:
        v = subst(formula, self._env_for(False))
        return v.bind(self.bindings) if self.bindings and not v.is_const else v

    def guess(self, formula: Size) -> int:
        v = subst(formula, self._env_for(True))
        if not v.is_const:
            v = v.bind({s: _GUESS for s in v.symbols()} | self.bindings)
        return v.value

    def fig(self, formula: Size) -> Figure:
        return Figure(formula, self.value(formula))

    # -- wires
    def wtype(self, d: Diagram, name: str) -> TensorType:
        """A wire's type by name (Diagram.wire scans its list; an analysis looks up every wire)."""
        table = self._wire_tables.get(id(d))
        if table is None:
            table = self._wire_tables[id(d)] = {w.name: w.type for w in d.wires}
        return table[name]

    def numel(self, t: TensorType, info: _Info) -> Size:
        key = (t.axes, info.extras)
        hit = self._numel.get(key)
        if hit is None:
            hit = self._numel[key] = (_prod(self.sym(a.name, a.size) for a in t.axes)
                                      * _prod(sorted(info.extras, key=str)))
        return hit

    def nbytes(self, t: TensorType, info: _Info) -> Size:
        return self.numel(t, info) * Size.of(DTYPE_BYTES[t.dtype])

    def axes_syms(self, t: TensorType) -> dict[str, Size]:
        return {a.name: self.sym(a.name, a.size) for a in t.axes}

    # ------------------------------------------------ propagation (extras and gradients)

    def propagate(self, d: Diagram, ins: tuple[_Info, ...]) -> tuple[dict[str, _Info], tuple[_Info, ...]]:
        key = (id(d), ins)
        hit = self._prop_cache.get(key)
        if hit is not None:
            return hit
        info: dict[str, _Info] = {}
        flat_in = [w for p in d.inputs for w in p.wires]
        for w, i in zip(flat_in, ins):
            info[w] = i
        for b in d.boxes:
            bins = [info[w] for w in b.inputs]
            outs = self._box_outputs(d, b, bins)
            for w, i in zip(b.outputs, outs):
                info[w] = i
        out = tuple(info[w] for w in d.output.wires)
        self._prop_cache[key] = (info, out)
        return info, out

    def _union(self, infos) -> frozenset:
        ex = frozenset()
        for i in infos:
            ex = ex | i.extras
        return ex

    def _broadcast_syms(self, outer: TensorType, inner: TensorType, skip: str | None = None) -> frozenset:
        return frozenset(self.sym(a.name, a.size) for a in outer.axes
                         if inner.axis(a.name) is None and a.name != skip)

    def _inner_inputs(self, d: Diagram, b: Box, bins: list[_Info]) -> tuple[_Info, ...]:
        """Info of a body's input wires, before any fixpoint."""
        body = b.body
        inner_types = [t for p in body.inputs for t in flat_types(p.type)]
        out = []
        along = b.attr("along") if b.op == "scan" else None
        for w, i, t in zip(b.inputs, bins, inner_types):
            outer_t = self.wtype(d, w)
            out.append(_Info(i.extras | self._broadcast_syms(outer_t, t, along), i.grad))
        return tuple(out)

    def _box_outputs(self, d: Diagram, b: Box, bins: list[_Info]) -> list[_Info]:
        if b.op in COMPOUND:
            ins, inner_out = self._fixpoint(d, b, bins)
            ex = self._union(bins)
            if b.op == "repeat":
                return list(inner_out)
            return [_Info(ex, i.grad) for i in inner_out]
        ex = self._union(bins)
        grad = bool(b.weights) or any(i.grad for i in bins)
        outs = []
        for w in b.outputs:
            t = self.wtype(d, w)
            outs.append(_Info(ex, grad and t.dtype == "float"))
        return outs

    def _fixpoint(self, d: Diagram, b: Box, bins: list[_Info]):
        """Body input infos (carried values settle after a few rounds) and body output infos."""
        ins = list(self._inner_inputs(d, b, bins))
        if b.op == "call":
            _, out = self.propagate(b.body, tuple(ins))
            return tuple(ins), out
        if b.op == "repeat":
            n = len(b.outputs)  # carried values come first among the inputs, captures after
        else:
            n = int(b.attr("n_state", 0))
        if b.op == "scan":
            # a state that starts unbatched becomes batched when any step input is
            ex = self._union(ins)
            ins[:n] = [_Info(ex, i.grad) for i in ins[:n]]
        for _ in range(64):
            _, out = self.propagate(b.body, tuple(ins))
            new = list(ins)
            for j in range(n):
                o = out[j]
                new[j] = _Info(ins[j].extras | o.extras, ins[j].grad or o.grad)
            if new == ins:
                return tuple(ins), out
            ins = new
        return tuple(ins), out

    # ------------------------------------------------ costs

    def run(self) -> None:
        d = self.d
        ins = tuple(_Info(frozenset({Size.symbol(BATCH)}), False) for p in d.inputs for _ in p.wires)
        # claim every axis name in walk order before anything is evaluated
        self._claim(d)
        self.root_acc = self.cost(d, "", 0, ins, ONE, ONE)
        self.root_ins = ins

    def _claim(self, d: Diagram) -> None:
        for a in d.axes:
            self.sym(a.name, a.size)
        for b in d.boxes:
            for w in b.weights:
                for a in w.type.axes:
                    self.sym(a.name, a.size)
            if b.body is not None:
                self._claim(b.body)

    def cost(self, d: Diagram, prefix: str, depth: int, ins: tuple[_Info, ...], copies: Size, mult: Size) -> _Acc:
        info, _ = self.propagate(d, ins)
        self.infos[prefix] = info
        total = _Acc()
        for b in d.boxes:
            path = prefix + b.name
            bins = [info[w] for w in b.inputs]
            row = {"path": path, "name": b.name, "op": b.op, "depth": depth,
                   "output_type": _out_type(self.wtype, d, b), "label": b.op}
            self.rows.append(row)
            if b.op in COMPOUND:
                body_ins, _ = self._fixpoint(d, b, bins)
                if b.op == "repeat":
                    count = b.attr("count")
                    row["label"] = f"repeat x{count}"
                    acc = self.cost(b.body, path + ".", depth + 1, body_ins, copies * count, mult * count)
                    row["mult"] = mult * count
                elif b.op == "scan":
                    along = b.attr("along")
                    steps = self.sym(along, b.attr("length"))
                    row["label"] = f"scan {b.attr('circuit')} over {along}"
                    acc = self.cost(b.body, path + ".", depth + 1, body_ins, copies, mult * steps)
                    row["mult"] = mult * steps
                else:
                    row["label"] = f"call {b.attr('circuit')}"
                    acc = self.cost(b.body, path + ".", depth + 1, body_ins, copies, mult)
                    row["mult"] = mult
            else:
                acc = self.leaf(d, b, bins, [info[w] for w in b.outputs])
                acc.params = acc.params * copies
                for f in ("mm", "ew", "tr", "bwd", "act"):
                    setattr(acc, f, getattr(acc, f) * mult)
                row["mult"] = mult
            row["acc"] = acc
            total.add(acc)
        return total

    def leaf(self, d: Diagram, b: Box, bins: list[_Info], bouts: list[_Info]) -> _Acc:
        acc = _Acc()
        for w in b.weights:
            acc.params = acc.params + _prod(self.sym(a.name, a.size) for a in w.type.axes)
        in_t = [self.wtype(d, w) for w in b.inputs]
        out_t = [self.wtype(d, w) for w in b.outputs]
        if b.op != "param":
            seen = set()
            for w, t, i in zip(b.outputs, out_t, bouts):
                if w not in seen:
                    seen.add(w)
                    acc.act = acc.act + self.nbytes(t, i)
        n_in = [self.numel(t, i) for t, i in zip(in_t, bins)]
        n_out = self.numel(out_t[0], bouts[0]) if out_t else ZERO
        ex = self._union(bins)
        E = _prod(sorted(ex, key=str))
        g = [i.grad for i in bins]
        op = b.op

        def reduced(t: TensorType, over) -> Size:
            """Elements of `t` (with extras) once the axes `over` are summed away."""
            return _prod(self.sym(a.name, a.size) for a in t.axes if a.name not in over) * E

        if op == "linear":
            outs = self.axes_syms(out_t[0])
            macs = n_in[0] * _prod(outs[a] for a in b.attr("out_axes"))
            acc.mm = _k(2) * macs
            acc.bwd = _k(2) * macs * _k(1 + g[0])
            if b.attr("bias"):
                acc.ew = n_out
                acc.bwd = acc.bwd + n_out
        elif op in ("dot", "einsum"):
            acc.mm, acc.ew, acc.bwd = self._contraction(b, in_t, bins, out_t[0], g)
        elif op == "conv":
            acc.mm, acc.bwd = self._conv(b, in_t[0], out_t[0], E, g[0])
            if b.attr("bias"):
                acc.ew = n_out
                acc.bwd = acc.bwd + n_out
        elif op in BINARY:
            # one FLOP per result, plus a conversion of each operand of another dtype
            if op in COMPARISONS:
                work = max((t.dtype for t in in_t), key=_RANK.__getitem__)
            else:
                work = out_t[0].dtype
            first = 1 if op == "where" else 0
            acc.ew = n_out + _sum(n for n, t in zip(n_in[first:], in_t[first:]) if t.dtype != work)
            acc.bwd = self._binary_backward(op, n_out, n_in, g)
        elif op == "neg":
            acc.ew = n_out
            acc.bwd = n_out if g[0] else ZERO
        elif op in UNARY_RULES:
            e, t_, bw = UNARY_RULES[op]
            acc.ew, acc.tr = _k(e) * n_out, _k(t_) * n_out
            acc.bwd = _k(bw) * n_out if g[0] else ZERO
        elif op in ("sum", "max", "min", "mean", "logsumexp"):
            n, m = n_in[0], n_out
            if op == "sum":
                acc.ew = n - m
            elif op in ("max", "min"):
                acc.ew = n - m
                acc.bwd = _k(5) * n if g[0] else ZERO
            elif op == "mean":
                acc.ew = n
                acc.bwd = n if g[0] else ZERO
            else:
                acc.ew, acc.tr = _k(3) * n + _k(2) * m, n + m
                acc.bwd = n if g[0] else ZERO
        elif op in ("softmax", "log_softmax", "layernorm", "rmsnorm"):
            n = n_in[0]
            m = reduced(in_t[0], set(b.attr("over")))
            rule = {"softmax": (_k(4) * n - m, n, _k(6) * n),
                    "log_softmax": (_k(4) * n - _k(2) * m, n + m, _k(3) * n),
                    "layernorm": (_k(7) * n + _k(2) * m, m, _k(20) * n),
                    "rmsnorm": (_k(4) * n + m, m, _k(10) * n)}[op]
            acc.ew, acc.tr = rule[0], rule[1]
            acc.bwd = rule[2] if (g[0] or b.weights) else ZERO
        elif op == "argmax":
            acc.ew = _k(9) * (n_in[0] - n_out)
        elif op == "causal":
            acc.ew = _k(2) * n_out  # compare positions, select
            acc.bwd = n_out if g[0] else ZERO
        elif op == "onehot":
            acc.ew = _k(2) * n_out
        elif op == "pool":
            window = math.prod(b.attr("window"))
            acc.ew = n_out * _k(window - (0 if b.attr("op") == "mean" else 1))
            acc.bwd = _k(8 if b.attr("op") == "max" else 3) * n_in[0] if g[0] else ZERO
        elif op in ("embed", "gather"):
            # a bounds-checked lookup: per index, wrap negatives and test the range (6); per result, the fill select
            acc.ew = n_out + _k(6) * n_in[-1]
            acc.bwd = n_out if (op == "embed" or g[0]) else ZERO
        elif op in FREE_OPS:
            pass
        else:  # an operation this backend does not know yet: count nothing, but say so
            self.unknown.add(op)
        return acc

    def _contraction(self, b: Box, in_t: list[TensorType], bins: list[_Info], out: TensorType, g: list[bool]):
        """dot and einsum: (matmul, element-wise, backward) FLOPs.

        An axis that only one operand has and the result lacks is summed out of
        that operand first (element-wise work, as jnp.einsum does); the
        operands are then contracted left to right, each step a multiply-add
        over the union of its two sides' axes (a step that sums nothing is a
        product without adds: one FLOP per element, as XLA counts it).
        """
        ops = []
        ew = ZERO
        result = set(out.names)
        for j, (t, i) in enumerate(zip(in_t, bins)):
            others = {n for k, t2 in enumerate(in_t) if k != j for n in t2.names}
            axes = self.axes_syms(t)
            ex = _prod(sorted(i.extras, key=str))
            private = [n for n in axes if n not in others and n not in result]
            if private:
                full = _prod(axes.values()) * ex
                axes = {n: s for n, s in axes.items() if n not in private}
                ew = ew + full - _prod(axes.values()) * ex
            ops.append((axes, i.extras, g[j]))
        if len(ops) == 1:
            return ZERO, ew, ZERO
        mm = bwd = ZERO
        cur_axes, cur_ex, cur_g = ops[0]
        for j in range(1, len(ops)):
            axes, ex, gj = ops[j]
            union = {**cur_axes, **axes}
            ex_u = cur_ex | ex
            space = _prod(union.values()) * _prod(sorted(ex_u, key=str))
            later = result | {n for t2 in in_t[j + 1:] for n in t2.names}
            if all(n in later for n in union):  # nothing summed: one multiply per element, no add
                mm = mm + space
                bwd = bwd + space * _k(int(cur_g) + int(gj))
            else:
                mm = mm + _k(2) * space
                bwd = bwd + _k(2) * space * _k(int(cur_g) + int(gj))
            cur_axes = {n: s for n, s in union.items() if n in later}
            cur_ex, cur_g = ex_u, cur_g or gj
        return mm, ew, bwd

    def _binary_backward(self, op: str, n_out: Size, n_in: list[Size], g: list[bool]) -> Size:
        if op in COMPARISONS:
            return ZERO
        total = ZERO
        for j, (n, needs) in enumerate(zip(n_in, g)):
            if not needs or (op == "where" and j == 0):
                continue
            red = n_out - n
            per = {"add": ZERO, "sub": (n if j == 1 else ZERO), "mul": n_out,
                   "div": n_out * _k(1 if j == 0 else 5), "maximum": _k(6) * n_out, "minimum": _k(6) * n_out,
                   "where": _k(2) * n_out}[op]
            total = total + per + red
        return total

    def _conv(self, b: Box, x: TensorType, out: TensorType, E: Size, needs_grad: bool):
        over, out_over = b.attr("over"), b.attr("out_over")
        kernel, stride, padding = b.attr("kernel"), b.attr("stride"), b.attr("padding")
        cin, cout = b.attr("cin"), b.attr("cout")
        taps = ONE
        for name, oname, k, s in zip(over, out_over, kernel, stride):
            a, o = x.axis(name), out.axis(oname)
            n_sym, o_sym = self.sym(name, a.size), self.sym(oname, o.size)
            if padding == "valid":
                t = o_sym * _k(k)  # every tap of every output lands inside
            elif s == 1:
                pl = (k - 1) // 2
                pr = k - 1 - pl
                t = n_sym * _k(k) - _k(pl * (pl + 1) // 2 + pr * (pr + 1) // 2)
            else:
                n_val = a.size.bind(self.bindings) if self.bindings else a.size
                if n_val.is_const:
                    n = n_val.value
                    outs = -(-n // s)
                    pad = max((outs - 1) * s + k - n, 0)
                    pl = pad // 2
                    valid = sum(1 for oi in range(outs) for j in range(k) if 0 <= oi * s + j - pl < n)
                    t = o_sym * _k(k) - _k(outs * k - valid)
                else:
                    t = o_sym * _k(k)  # an upper bound: padding taps counted too
            taps = taps * t
        other = _prod(self.sym(a.name, a.size) for a in x.axes if a.name not in over and a.name != cin) * E
        cin_ax, cout_ax = x.axis(cin), out.axis(cout)
        macs = other * taps * self.sym(cin, cin_ax.size) * self.sym(cout, cout_ax.size)
        return _k(2) * macs, _k(2) * macs * _k(1 + needs_grad)

    # ------------------------------------------------ peak memory

    def peak(self, d: Diagram, prefix: str, pinned: set[str]) -> tuple[int, Size]:
        """Peak live bytes (guessed number, formula) while running `d`; its inputs count as live at the start."""
        info = self.infos[prefix]
        last: dict[str, int] = {}
        for i, b in enumerate(d.boxes):
            for w in b.inputs:
                last[w] = i
        keep = set(d.output.wires) | set(pinned)
        weight_wires = {w for b in d.boxes if b.op == "param" for w in b.outputs}

        def wbytes(w: str) -> Size:
            if w in weight_wires:
                return ZERO
            return self.nbytes(self.wtype(d, w), info[w])

        live: dict[str, Size] = {}
        for p in d.inputs:
            for w in p.wires:
                live[w] = wbytes(w)
        cur = _sum(live.values())
        best_n, best_f = self.guess(cur), cur
        for i, b in enumerate(d.boxes):
            new = [w for w in dict.fromkeys(b.outputs) if w not in live]
            out_bytes = _sum(wbytes(w) for w in new)
            if b.op in COMPOUND:
                in_wires = list(dict.fromkeys(b.inputs))
                in_bytes = _sum(live.get(w, ZERO) for w in in_wires)
                body_in = [w for p in b.body.inputs for w in p.wires]
                needed = {bw for w, bw in zip(b.inputs, body_in) if w in keep or last.get(w, -1) > i}
                sub = prefix + b.name + "."
                if b.op == "call":
                    pn, pf = self.peak(b.body, sub, needed)
                    here = cur - in_bytes + pf
                    here_n = self.guess(cur - in_bytes) + pn
                elif b.op == "repeat":
                    n_carried = len(b.outputs)
                    captures = set(body_in[n_carried:])
                    pn, pf = self.peak(b.body, sub, needed | captures)
                    here = cur - in_bytes + pf
                    here_n = self.guess(cur - in_bytes) + pn
                    count = b.attr("count")
                    if not (count.is_const and count.value == 1):
                        held = _sum(live.get(w, ZERO) for w, bw in zip(b.inputs[:n_carried], body_in)
                                    if bw in needed)
                        pn2, pf2 = self.peak(b.body, sub, captures)
                        n2 = self.guess(cur - in_bytes + held) + pn2
                        if n2 > here_n:
                            here, here_n = cur - in_bytes + held + pf2, n2
                else:  # scan: the stacked outputs are allocated, the step runs on slices
                    n_const = int(b.attr("n_const", 0))
                    consts = set(body_in[len(body_in) - n_const:]) if n_const else set()
                    const_outer = [w for w, bw in zip(b.inputs, body_in) if bw in consts]
                    const_bytes = _sum(live.get(w, ZERO) for w in dict.fromkeys(const_outer))
                    pn, pf = self.peak(b.body, sub, consts)
                    here = cur - const_bytes + out_bytes + pf
                    here_n = self.guess(cur - const_bytes + out_bytes) + pn
            else:
                here = cur + out_bytes
                here_n = self.guess(here)
            if here_n > best_n:
                best_n, best_f = here_n, here
            for w in new:
                live[w] = wbytes(w)
            cur = cur + out_bytes
            for w in dict.fromkeys(b.inputs):
                if last.get(w) == i and w not in keep and w in live:
                    cur = cur - live.pop(w)
        return best_n, best_f


def _sum(items: Iterable[Size]) -> Size:
    out = ZERO
    for s in items:
        out = out + s
    return out


def _out_type(wtype, d: Diagram, b: Box) -> str:
    types = [str(wtype(d, w)) for w in b.outputs]
    if not types:
        return "()"
    return types[0] if len(types) == 1 else "(" + ", ".join(types) + ")"


# ---------------------------------------------------------------- entry points


def analyse(diagram: Diagram, *, batch: int = 1, bindings: dict[str, int] | None = None) -> CostReport:
    """Parameters, FLOPs and memory of `diagram` per box and in total.

    Args:
        diagram: a checked circuit, e.g. `diagrammar.load(path)["Name"]`.
        batch: the batch size; it multiplies every activation and FLOP figure
            that depends on an input (the symbol `batch` in formulas).
        bindings: sizes of the circuit's free axes. Figures whose sizes are
            not all known keep a symbolic `value` (`Figure.number` is None).

    Returns:
        A `CostReport`: one `BoxCost` row per box in `Diagram.walk()` order
        (nested boxes included) and the totals; `.to_json()` for machines.

    Raises:
        ValueError: `batch` below 1, or a binding for an axis that is not free.

    Example:
        >>> import diagrammar
        >>> text = "axis d = 8, h = 16\\ncircuit F(x: [d]) -> [h]:\\n    return linear(x, d -> h)\\n"
        >>> r = analyse(diagrammar.parse(text)["F"], batch=2)
        >>> str(r.flops["matmul"].formula), r.flops["matmul"].number
        ('2*batch*d*h', 512)
        >>> r.parameters.number
        144
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    bindings = dict(bindings or {})
    free = diagram.free_sizes()
    unknown = sorted(k for k in bindings if k not in free)
    if unknown:
        fixed = ", ".join(unknown)
        raise ValueError(f"{diagram.name} has no free size {fixed}"
                         + (f"; its free sizes: {', '.join(sorted(free))}" if free else "; all its sizes are fixed"))
    an = _Analyser(diagram, batch, bindings)
    an.run()
    rows = []
    for r in an.rows:
        acc: _Acc = r["acc"]
        flops = {"matmul": an.fig(acc.mm), "elementwise": an.fig(acc.ew), "transcendental": an.fig(acc.tr)}
        rows.append(BoxCost(path=r["path"], name=r["name"], op=r["op"], label=r["label"], depth=r["depth"],
                            output_type=r["output_type"], multiplier=an.fig(r["mult"]), params=an.fig(acc.params),
                            flops=flops, forward_flops=an.fig(acc.mm + acc.ew + acc.tr),
                            backward_flops=an.fig(acc.bwd), activation_bytes=an.fig(acc.act)))
    acc = an.root_acc
    ins = an.root_ins
    in_info = dict(zip([w for p in diagram.inputs for w in p.wires], ins))
    input_bytes = _sum(an.nbytes(an.wtype(diagram, w), in_info[w]) for w in dict.fromkeys(in_info))
    root_info = an.infos[""]
    weight_wires = {w for b in diagram.boxes if b.op == "param" for w in b.outputs}
    output_bytes = _sum(an.nbytes(an.wtype(diagram, w), root_info[w]) for w in dict.fromkeys(diagram.output.wires)
                        if w not in weight_wires)
    weight_bytes = acc.params * Size.of(DTYPE_BYTES["float"])
    _, peak_f = an.peak(diagram, "", set())
    symbols = {}
    for name, size in an.claims.items():
        symbols[name] = str(batch) if name == BATCH else str(size)
    params_fig = an.fig(acc.params)
    return CostReport(
        circuit=diagram.name,
        signature=f"{diagram.name}({', '.join(f'{p.name}: {p.type}' for p in diagram.inputs)})"
                  f" -> {diagram.output.type}",
        batch=batch, bindings=bindings, free_sizes=tuple(sorted(free)), symbols=symbols, boxes=tuple(rows),
        parameters=params_fig, weight_bytes=an.fig(weight_bytes),
        flops={"matmul": an.fig(acc.mm), "elementwise": an.fig(acc.ew), "transcendental": an.fig(acc.tr)},
        forward_flops=an.fig(acc.mm + acc.ew + acc.tr), backward_flops=an.fig(acc.bwd),
        activation_bytes=an.fig(acc.act), input_bytes=an.fig(input_bytes), output_bytes=an.fig(output_bytes),
        peak_activation_bytes=an.fig(peak_f), peak_bytes=an.fig(peak_f + weight_bytes))


def box_annotations(diagram: Diagram, batch: int = 1, bindings: dict[str, int] | None = None) -> dict[str, str]:
    """Short cost labels for the renderer (`render --cost`), by dotted box path.

    Args:
        diagram: a checked circuit.
        batch: the batch size (see `analyse`).
        bindings: sizes of free axes; figures that stay unknown show as
            formulas in axis names.

    Returns:
        `{path: text}` with paths as in `Diagram.walk()` and texts such as
        "4.2k params, 1.1 MFLOP" (the box's weights and forward FLOPs, every
        repeat copy and scan step included). Boxes that cost nothing (no
        weights and no FLOPs: rename, take, ...) are left out.

    Example:
        >>> import diagrammar
        >>> text = ("axis d = 64, h = 256\\ncircuit F(x: [d]) -> [d]:\\n"
        ...         "    return linear(relu(linear(x, d -> h)), h -> d)\\n")
        >>> box_annotations(diagrammar.parse(text)["F"])
        {'linear': '16.6k params, 33.0 kFLOP', 'out:relu': '256 FLOP', 'linear_2': '16.4k params, 32.8 kFLOP'}
    """
    report = analyse(diagram, batch=batch, bindings=bindings)
    out = {}
    for row in report.boxes:
        parts = []
        p, f = row.params, row.forward_flops
        if p.formula != ZERO:
            parts.append(f"{human_count(p.number)} params" if p.number is not None else f"{p.value} params")
        if f.formula != ZERO:
            parts.append(human_flops(f.number) if f.number is not None else f"{f.value} FLOP")
        if parts:
            out[row.path] = ", ".join(parts)
    return out


def check_budget(diagram: Diagram, max_parameters: int, bindings: dict[str, int] | None = None) -> Size:
    """Refuse a model whose weights exceed a parameter budget, before anything is allocated.

    Args:
        diagram: a checked circuit.
        max_parameters: the largest number of parameters allowed (every copy
            of a `repeat` counts).
        bindings: sizes of the circuit's free axes.

    Returns:
        The parameter count. While sizes are still free the count is
        symbolic and cannot be refused yet: it is returned as it is.

    Raises:
        SizeTooLarge: the count exceeds `max_parameters`; the message gives
            both figures and the hint names the largest weights.

    Example:
        >>> import diagrammar
        >>> d = diagrammar.parse("axis n\\ncircuit F(x: [n]) -> [n]:\\n    return linear(x, n -> n)\\n")["F"]
        >>> check_budget(d, 10**6, {"n": 100}).value
        10100
    """
    count = diagram.parameter_count()
    if bindings:
        count = count.bind({k: int(v) for k, v in bindings.items()})
    if not count.is_const or count.value <= max_parameters:
        return count
    biggest = []
    for name, w, copies in diagram.weights():
        n = (w.type.numel() * copies)
        if bindings:
            n = n.bind({k: int(v) for k, v in bindings.items()})
        if n.is_const:
            biggest.append((n.value, name, w))
    biggest.sort(key=lambda t: -t[0])
    top = ", ".join(f"{name} {w.type} {n:,}" for n, name, w in biggest[:3])
    def both(n: int) -> str:
        return f"{n:,} ({human_count(n)})" if n >= 1000 else f"{n}"

    err = SizeTooLarge(
        f"{diagram.name} has {both(count.value)} parameters, over the budget of {both(max_parameters)}",
        diagram.span,
        hint=(f"largest weights: {top}; " if top else "") + "shrink the sizes, or raise the parameter budget")
    err.source = _source_of(diagram)
    raise err


def _source_of(diagram: Diagram) -> str | None:
    span = diagram.span
    if span is None:
        return None
    try:
        with open(span.file, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- human-readable units


def _scaled(n: float, base: int, units: list[str]) -> tuple[str, str]:
    i = 0
    x = float(n)
    while abs(x) >= base and i < len(units) - 1:
        x /= base
        i += 1
    if i == 0:
        return f"{int(n)}", units[0]
    return (f"{x:.1f}" if abs(x) < 100 else f"{x:.0f}"), units[i]


def human_count(n: int | None) -> str:
    """4200 -> '4.2k', 1_100_000 -> '1.1M'."""
    if n is None:
        return "?"
    v, u = _scaled(n, 1000, ["", "k", "M", "G", "T", "P", "E"])
    return v + u


def human_flops(n: int | None) -> str:
    """1_100_000 -> '1.1 MFLOP'."""
    if n is None:
        return "?"
    v, u = _scaled(n, 1000, ["", "k", "M", "G", "T", "P", "E"])
    return f"{v} {u}FLOP"


def human_bytes(n: int | None) -> str:
    """1536 -> '1.5 KiB'."""
    if n is None:
        return "?"
    v, u = _scaled(n, 1024, ["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
    return f"{v} {u}"


# ---------------------------------------------------------------- the table


def _cell(fig: Figure, fmt) -> str:
    n = fig.number
    return fmt(n) if n is not None else str(fig.value)


def format_table(report: CostReport) -> str:
    """A table per box (indented by nesting), then the totals, in human-readable units."""
    head = ("box", "op", "output", "params", "FLOPs", "activations")
    rows = [head]
    for b in report.boxes:
        rows.append(("  " * b.depth + b.name, b.label, b.output_type,
                     _cell(b.params, human_count) if b.params.formula != ZERO else "-",
                     _cell(b.forward_flops, lambda n: human_flops(n).replace("FLOP", "").strip() or "0")
                     if b.forward_flops.formula != ZERO else "-",
                     _cell(b.activation_bytes, human_bytes) if b.activation_bytes.formula != ZERO else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    sizes = ", ".join(f"{k}={v}" for k, v in sorted(report.bindings.items()))
    lines.append(f"{report.signature}   batch={report.batch}" + (f", {sizes}" if sizes else ""))
    for j, r in enumerate(rows):
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2])]
        cells += [r[i].rjust(widths[i]) for i in range(3, len(head))]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("(figures include every repeat copy and scan step; FLOPs are forward, per batch)")
    lines.append("")

    def total(label, fig, fmt, formula=True):
        text = _cell(fig, fmt)
        n = fig.number
        exact = f" ({n:,})" if n is not None and n >= 1000 and fmt is not human_bytes else ""
        f = f"   = {fig.formula}" if formula and fig.formula != fig.value else ""
        return f"{label:<32}{text}{exact}{f}"

    lines.append(total("parameters", report.parameters, human_count))
    lines.append(total("weights", report.weight_bytes, human_bytes, formula=False))
    for c in CATEGORIES:
        lines.append(total(f"forward FLOPs, {c}", report.flops[c], human_flops))
    lines.append(total("forward FLOPs, total", report.forward_flops, human_flops))
    lines.append(total("backward FLOPs", report.backward_flops, human_flops))
    lines.append(total("activations written", report.activation_bytes, human_bytes, formula=False))
    lines.append(total("peak activation memory", report.peak_activation_bytes, human_bytes, formula=False))
    lines.append(total("peak memory with weights", report.peak_bytes, human_bytes, formula=False))
    return "\n".join(lines)
