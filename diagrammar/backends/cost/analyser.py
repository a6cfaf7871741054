"""Backend cost: the analysis of a diagram (which wires carry the batch, which need a gradient), per box
costs through the rules in COST, the peak memory, and the entry points."""
from __future__ import annotations

from ...errors import SizeTooLarge
from ...ir import Box, Diagram, Size, TensorType, flat_types
from .report import (
    BATCH,
    DTYPE_BYTES,
    ONE,
    ZERO,
    BoxCost,
    CostReport,
    Figure,
    _prod,
    _sum,
    human_count,
    human_flops,
    subst,
)
from .rules import COMPOUND, COST, _Acc, _Info, _Nested, _Site

_GUESS = 512  # stands in for a free size nobody bound, to locate the peak


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
        per_pair = frozenset()
        if b.op == "dispatch":  # the expert runs once per position of the index: its own axes (the k) count too
            idx_t = self.wtype(d, b.inputs[-1])
            per_pair = bins[-1].extras | frozenset(self.sym(a.name, a.size) for a in idx_t.axes
                                                   if a.name in b.attr("index_axes", ()))
        for w, i, t in zip(b.inputs, bins, inner_types):
            outer_t = self.wtype(d, w)
            out.append(_Info(i.extras | self._broadcast_syms(outer_t, t, along) | per_pair, i.grad))
        return tuple(out)

    def _box_outputs(self, d: Diagram, b: Box, bins: list[_Info]) -> list[_Info]:
        if b.op in COMPOUND:
            _, inner_out = self._fixpoint(d, b, bins)
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
        if b.op in ("call", "dispatch"):
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
                acc = COST[b.op](self, _Nested(d, b, row, path, depth, body_ins, copies, mult))
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
            if not w.state:  # batchnorm's running statistics are state, not parameters
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
        rule = COST.get(b.op)
        if rule is None:  # an operation this backend does not know: count nothing, but say so
            self.unknown.add(b.op)
        else:
            rule(self, _Site(d, b, bins, in_t, out_t, n_in, n_out, E, g, self), acc)
        return acc

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
                if b.op in ("call", "dispatch"):
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
