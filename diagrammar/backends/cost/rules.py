"""Backend cost: the cost rule of every operation, found by its name in COST.

A rule is `rule(an, s, acc)`: `an` is the analyser (`an.sym`, `an.axes_syms`),
`s` a `_Site` with what is known of the box (input and output types, element
counts with the batch and broadcast axes included, which operands need a
gradient) and `acc` the `_Acc` it fills: matmul, element-wise and
transcendental FLOPs and backward FLOPs (the analyser adds the weights and
activation bytes). A nested diagram's rule (call, repeat, scan) is
`rule(an, n) -> _Acc` instead: it costs the body through `an.cost` and says
how often the body runs.

The README's "How FLOPs are counted" and this package's docstring give the
counting rules these implement.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ... import ops
from ...ir import Box, Diagram, Size, TensorType
from .report import ONE, ZERO, _k, _prod, _sum

COST: dict[str, Callable] = {}

# Operations that never reach this backend (see tests/test_catalogue.py).
NOT_SUPPORTED: dict[str, str] = {}

COMPARISONS = ops.COMPARISONS
COMPOUND = {o.name for o in ops.family("call")}  # a nested diagram: costed as its body
_RANK = {"bool": 0, "int": 1, "float": 2}


cost_rule = ops.registrar(COST)  # @cost_rule("name", ...) files the function in COST


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

    def add(self, o: _Acc) -> None:
        self.params = self.params + o.params
        self.mm = self.mm + o.mm
        self.ew = self.ew + o.ew
        self.tr = self.tr + o.tr
        self.bwd = self.bwd + o.bwd
        self.act = self.act + o.act


@dataclass
class _Site:
    """What a leaf rule knows of its box."""
    d: Diagram
    b: Box
    bins: list  # _Info of each input
    in_t: list  # TensorType of each input
    out_t: list  # TensorType of each output
    n_in: list  # elements of each input, extras included
    n_out: Size  # elements of the first output, extras included
    E: Size  # the product of the extra axes (batch, broadcast) of the inputs
    g: list  # per input: does it need a gradient?
    an: object

    def reduced(self, t: TensorType, over) -> Size:
        """Elements of `t` (with extras) once the axes `over` are summed away."""
        return _prod(self.an.sym(a.name, a.size) for a in t.axes if a.name not in over) * self.E


@dataclass
class _Nested:
    """What a nested diagram's rule knows of its box."""
    d: Diagram
    b: Box
    row: dict  # its row of the report: the rule sets "label" and "mult"
    path: str
    depth: int
    body_ins: tuple  # _Info of the body's inputs
    copies: Size  # repeat copies around it (weights are counted once per copy)
    mult: Size  # how many times it runs per example


# ---------------------------------------------------------------- linear maps and contractions


@cost_rule("linear")
def linear(an, s, acc):
    outs = an.axes_syms(s.out_t[0])
    macs = s.n_in[0] * _prod(outs[a] for a in s.b.attr("out_axes"))
    acc.mm = _k(2) * macs
    acc.bwd = _k(2) * macs * _k(1 + s.g[0])
    if s.b.attr("bias"):
        acc.ew = s.n_out
        acc.bwd = acc.bwd + s.n_out


@cost_rule("dot", "einsum")
def contraction(an, s, acc):
    acc.mm, acc.ew, acc.bwd = _contraction(an, s.b, s.in_t, s.bins, s.out_t[0], s.g)


@cost_rule("conv", "conv_transpose")
def conv(an, s, acc):
    acc.mm, acc.bwd = _conv(an, s.b, s.in_t[0], s.out_t[0], s.E, s.g[0])
    if s.b.attr("bias"):
        acc.ew = s.n_out
        acc.bwd = acc.bwd + s.n_out


def _contraction(an, b: Box, in_t: list[TensorType], bins: list[_Info], out: TensorType, g: list[bool]):
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
        axes = an.axes_syms(t)
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


def _conv(an, b: Box, x: TensorType, out: TensorType, E: Size, needs_grad: bool):
    over, out_over = b.attr("over"), b.attr("out_over")
    kernel, stride, padding = b.attr("kernel"), b.attr("stride"), b.attr("padding")
    cin, cout = b.attr("cin"), b.attr("cout")
    taps = ONE
    dilation = b.attr("dilation") or (1,) * len(over)
    for i, (name, oname, k, s) in enumerate(zip(over, out_over, kernel, stride)):
        a, o = x.axis(name), out.axis(oname)
        n_sym, o_sym = an.sym(name, a.size), an.sym(oname, o.size)
        if b.op == "conv_transpose" or dilation[i] != 1 or padding not in ("same", "valid"):
            t = _taps(an, b, i, a.size, n_sym, o_sym, k, s, dilation[i])
        elif padding == "valid":
            t = o_sym * _k(k)  # every tap of every output lands inside
        elif s == 1:
            pl = (k - 1) // 2
            pr = k - 1 - pl
            t = n_sym * _k(k) - _k(pl * (pl + 1) // 2 + pr * (pr + 1) // 2)
        else:
            n_val = a.size.bind(an.bindings) if an.bindings else a.size
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
    other = _prod(an.sym(a.name, a.size) for a in x.axes if a.name not in over and a.name != cin) * E
    w_in, cout_ax = b.weights[0].type.axes[-2], out.axis(cout)  # cin, or cin / groups for a grouped conv
    macs = other * taps * an.sym(w_in.name, w_in.size) * an.sym(cout, cout_ax.size)
    return _k(2) * macs, _k(2) * macs * _k(1 + needs_grad)


def _taps(an, b: Box, i: int, n_size: Size, n_sym: Size, o_sym: Size, k: int, s: int, d: int) -> Size:
    """Kernel taps along spatial axis i that meet the unpadded input, summed over the output positions.

    conv: output o reads input o*s + t*d - lo, counted when inside [0, n) (taps in the padding do no
    work, as XLA counts). conv_transpose: input i adds into full position i*s + t, counted when that
    position survives the crop [lo, lo + n_out). With n known, counted exactly; otherwise as a formula
    that is exact once n exceeds the kernel (stride 1 for conv; any stride for conv_transpose), or an
    upper bound (every tap) for a strided conv of a free size.
    """
    n_val = n_size.bind(an.bindings) if an.bindings else n_size
    if b.op == "conv_transpose":
        (lo, hi), extra = b.attr("padding")[i], b.attr("output_padding")[i]
        keep = k - hi + extra  # the last input position keeps the taps t < keep
        cut = sum(-(-(lo - t) // s) if lo > t else 0 for t in range(k))
        cut += sum((t - keep) // s + 1 if t >= keep else 0 for t in range(k))
        if n_val.is_const:
            n = n_val.value
            n_out = (n - 1) * s + k - lo - hi + extra
            inside = sum(1 for j in range(n) for t in range(k) if lo <= j * s + t < lo + n_out)
            return n_sym * _k(k) - _k(n * k - inside)
        return n_sym * _k(k) - _k(cut)
    padding = b.attr("padding")
    if padding == "valid":
        lo = hi = 0
    elif padding == "same":
        reach = d * (k - 1) + 1
        if s == 1:
            total = reach - 1
        elif n_val.is_const:
            n = n_val.value
            total = max((-(-n // s) - 1) * s + reach - n, 0)
        else:
            return o_sym * _k(k)
        lo, hi = total // 2, total - total // 2
    else:
        lo, hi = padding[i]
    if n_val.is_const:
        n = n_val.value
        n_out = (n + lo + hi - d * (k - 1) - 1) // s + 1
        inside = sum(1 for o in range(n_out) for t in range(k) if 0 <= o * s + t * d - lo < n)
        return o_sym * _k(k) - _k(n_out * k - inside)
    if s == 1:
        return o_sym * _k(k) - _k(sum(max(lo - t * d, 0) + max(hi - d * (k - 1 - t), 0) for t in range(k)))
    return o_sym * _k(k)


# ---------------------------------------------------------------- element-wise


@cost_rule("add", "sub", "mul", "div", "lt", "le", "gt", "ge", "eq", "maximum", "minimum", "where")
def binary(an, s, acc):
    # one FLOP per result, plus a conversion of each operand of another dtype
    op, in_t = s.b.op, s.in_t
    if op in COMPARISONS:
        work = max((t.dtype for t in in_t), key=_RANK.__getitem__)
    else:
        work = s.out_t[0].dtype
    first = 1 if op == "where" else 0
    acc.ew = s.n_out + _sum(n for n, t in zip(s.n_in[first:], in_t[first:]) if t.dtype != work)
    acc.bwd = _binary_backward(op, s.n_out, s.n_in, s.g)


def _binary_backward(op: str, n_out: Size, n_in: list[Size], g: list[bool]) -> Size:
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


@cost_rule("neg")
def neg(an, s, acc):
    acc.ew = s.n_out
    acc.bwd = s.n_out if s.g[0] else ZERO


def _unary(e: int, t: int, bw: int):
    """A unary function: e element-wise FLOPs, t transcendentals and bw backward FLOPs per element."""
    def unary(an, s, acc):
        acc.ew, acc.tr = _k(e) * s.n_out, _k(t) * s.n_out
        acc.bwd = _k(bw) * s.n_out if s.g[0] else ZERO
    return unary


for _name, _rule in (("relu", (1, 0, 2)), ("abs", (1, 0, 5)), ("square", (1, 0, 2)),
                     ("exp", (0, 1, 1)), ("log", (0, 1, 1)), ("sqrt", (0, 1, 2)), ("tanh", (0, 1, 4)),
                     ("sigmoid", (3, 1, 3)), ("silu", (4, 1, 6)), ("softplus", (6, 2, 7)),
                     ("erf", (0, 1, 4)), ("sin", (0, 1, 2)), ("cos", (0, 1, 3)),
                     ("int", (1, 0, 0)), ("float", (1, 0, 0)), ("bool", (1, 0, 0))):  # casts: a conversion each
    cost_rule(_name)(_unary(*_rule))


@cost_rule("gelu")
def gelu(an, s, acc):
    # the tanh form, or the exact one: 0.5 * x * (1 + erf(x / sqrt 2)), four products and sums and an erf
    _unary(8, 1, 16)(an, s, acc) if s.b.attr("approximate", True) else _unary(4, 1, 10)(an, s, acc)


@cost_rule("floordiv", "mod")
def integer_division(an, s, acc):
    # Python's floor: a truncating division, then the sign corrections (9 and 10 operations, as XLA counts
    # jnp.floor_divide and jnp.remainder); ints carry no gradient
    acc.ew = _k(9 if s.b.op == "floordiv" else 10) * s.n_out + _sum(
        n for n, t in zip(s.n_in, s.in_t) if t.dtype != "int")


# ---------------------------------------------------------------- along axes


@cost_rule("sum", "max", "min", "mean", "logsumexp")
def reduction(an, s, acc):
    op, g = s.b.op, s.g
    n, m = s.n_in[0], s.n_out
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


@cost_rule("softmax", "log_softmax", "layernorm", "rmsnorm")
def normalisation(an, s, acc):
    op = s.b.op
    n = s.n_in[0]
    m = s.reduced(s.in_t[0], set(s.b.attr("over")))
    rule = {"softmax": (_k(4) * n - m, n, _k(6) * n),
            "log_softmax": (_k(4) * n - _k(2) * m, n + m, _k(3) * n),
            "layernorm": (_k(7) * n + _k(2) * m, m, _k(20) * n),
            "rmsnorm": (_k(4) * n + m, m, _k(10) * n)}[op]
    acc.ew, acc.tr = rule[0], rule[1]
    acc.bwd = rule[2] if (s.g[0] or s.b.weights) else ZERO


@cost_rule("batchnorm")
def batchnorm(an, s, acc):
    """Counted as in eval mode: per feature one rsqrt and the scale and shift folded; per element x*a + c."""
    n = s.n_in[0]
    features = _prod(an.sym(a.name, a.size) for a in s.in_t[0].axes if a.name not in set(s.b.attr("over")))
    acc.ew, acc.tr = _k(2) * n + _k(3) * features, features
    acc.bwd = _k(2) * n


@cost_rule("argmax")
def argmax(an, s, acc):
    acc.ew = _k(9) * (s.n_in[0] - s.n_out)


@cost_rule("causal")
def causal(an, s, acc):
    acc.ew = _k(2) * s.n_out  # compare positions, select
    acc.bwd = s.n_out if s.g[0] else ZERO


# ---------------------------------------------------------------- indices, windows, data movement


@cost_rule("onehot")
def onehot(an, s, acc):
    acc.ew = _k(2) * s.n_out


@cost_rule("embed", "gather")
def lookup(an, s, acc):
    # a bounds-checked lookup: per index, wrap negatives and test the range (6); per result, the fill select
    acc.ew = s.n_out + _k(6) * s.n_in[-1]
    acc.bwd = s.n_out if (s.b.op == "embed" or s.g[0]) else ZERO


@cost_rule("scatter_add")
def scatter_add(an, s, acc):
    # one add per element of x (the indices are checked, not computed on); its backward is a gather
    acc.ew = s.n_in[0]
    acc.bwd = s.n_in[0] if s.g[0] else ZERO


@cost_rule("topk")
def topk(an, s, acc):
    # one comparison per entry ranked; the values' backward scatters the picked gradients back
    acc.ew = s.n_in[0]
    acc.bwd = s.n_in[0] if s.g[0] else ZERO


@cost_rule("pool")
def pool(an, s, acc):
    b = s.b
    window = math.prod(b.attr("window"))
    acc.ew = s.n_out * _k(window - (0 if b.attr("op") == "mean" else 1))
    acc.bwd = _k(8 if b.attr("op") == "max" else 3) * s.n_in[0] if s.g[0] else ZERO


@cost_rule("rename", "merge", "split", "stack", "concat", "take", "arange", "const", "param", "dropout", "pad",
           "slice", "full")
def free(an, s, acc):
    """Data movement, constants and weights cost no FLOPs; dropout counts as the identity (inference)."""


# ---------------------------------------------------------------- nested diagrams


@cost_rule("call")
def call(an, n):
    n.row["label"] = f"call {n.b.attr('circuit')}"
    acc = an.cost(n.b.body, n.path + ".", n.depth + 1, n.body_ins, n.copies, n.mult)
    n.row["mult"] = n.mult
    return acc


@cost_rule("repeat")
def repeat(an, n):
    count = n.b.attr("count")
    n.row["label"] = f"repeat x{count}"
    acc = an.cost(n.b.body, n.path + ".", n.depth + 1, n.body_ins, n.copies * count, n.mult * count)
    n.row["mult"] = n.mult * count
    return acc


@cost_rule("scan")
def scan(an, n):
    along = n.b.attr("along")
    steps = an.sym(along, n.b.attr("length"))
    n.row["label"] = f"scan {n.b.attr('circuit')} over {along}"
    acc = an.cost(n.b.body, n.path + ".", n.depth + 1, n.body_ins, n.copies, n.mult * steps)
    n.row["mult"] = n.mult * steps
    return acc


@cost_rule("dispatch")
def dispatch(an, n):
    # the body's inputs carry the index's axes (analyser._inner_inputs): it is counted once per chosen
    # (position, expert) pair, k per token, while the weights count every one of the E copies
    along = n.b.attr("along")
    n.row["label"] = f"dispatch {n.b.attr('circuit')} among {along}"
    acc = an.cost(n.b.body, n.path + ".", n.depth + 1, n.body_ins, n.copies * an.sym(along, n.b.attr("count")),
                  n.mult)
    n.row["mult"] = n.mult
    return acc


# ---------------------------------------------------------------- operations registered from Python


def cost_for(op: ops.Operation):
    """The cost rule of one registered operation (ops.bind_table puts it in COST).

    Its `cost(out, *ins, **keywords)` gets element counts and gives
    element-wise FLOPs, or a dict by category (and "backward").
    """
    def registered(an, s, acc):
        got = op.cost(s.n_out, *s.n_in, **dict(s.b.attrs))
        parts = got if isinstance(got, dict) else {"elementwise": got}
        unknown = set(parts) - {"matmul", "elementwise", "transcendental", "backward"}
        if unknown:
            raise ValueError(f"{op.name}'s cost gave {min(unknown)!r}; the categories are matmul, "
                             "elementwise, transcendental and backward")
        for key, field in (("matmul", "mm"), ("elementwise", "ew"), ("transcendental", "tr"), ("backward", "bwd")):
            v = parts.get(key, 0)
            setattr(acc, field, v if isinstance(v, Size) else Size.of(int(v)))
    return registered


ops.bind_table(COST, cost_for)
