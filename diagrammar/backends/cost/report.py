"""Backend cost: the figures of a report (a formula and a value each), the report, and its table."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ...ir import FloorDiv, Size

CATEGORIES = ("matmul", "elementwise", "transcendental")
DTYPE_BYTES = {"float": 4, "int": 4, "bool": 1}
BATCH = "batch"

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


def _k(n: float) -> Size:
    return Size.of(int(n))


def _sum(items: Iterable[Size]) -> Size:
    out = ZERO
    for s in items:
        out = out + s
    return out


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

    def __add__(self, other: Figure) -> Figure:
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
