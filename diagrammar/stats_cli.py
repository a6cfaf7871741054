"""`diagrammar stats FILE`: parameters, FLOPs and memory per box, then totals.

Pure Python over the IR (backends/cost.py); never imports jax.

    diagrammar stats circuits/transformer.circuit --circuit Decoder --batch 32
    diagrammar stats model.circuit --set seq=1024 --json
"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import CircuitError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="a .circuit file")
    parser.add_argument("--circuit", metavar="NAME",
                        help="the circuit to count (default: every circuit defined in FILE)")
    parser.add_argument("--batch", type=int, default=1, metavar="B",
                        help="batch size: multiplies activations and FLOPs (default 1)")
    parser.add_argument("--set", action="append", default=[], metavar="AXIS=SIZE", dest="sizes",
                        help="size of a free axis, or an axis parameter of the circuit (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")


def _parse_sizes(items: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip()
        try:
            size = int(value)
        except ValueError:
            size = None
        if not eq or not name.isidentifier() or size is None:
            raise ValueError(f"--set takes AXIS=SIZE with a whole number, got {item!r}")
        if size < 1:
            raise ValueError(f"--set {name}={size}: sizes must be at least 1")
        out[name] = size
    return out


def _axis_params(program, name: str) -> set[str]:
    """Axis parameters a circuit declares (`MLP[hidden = 4 * d]`)."""
    try:
        return {a.name for a in program._checker.circuits[name].node.axis_params}
    except (AttributeError, KeyError):
        return set()


def _root_circuits(program) -> list[str]:
    """Circuits defined in the file itself (those of `use`d files are left out)."""
    try:
        srcs = program._checker.circuits
        names = [n for n in program.circuits if srcs[n].file == program.file]
    except (AttributeError, KeyError):
        names = []
    return names or list(program.circuits)


def run(args) -> int:
    from .backends.cost import analyse, format_table
    from .check import load

    try:
        sizes = _parse_sizes(args.sizes)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.batch < 1:
        print(f"error: --batch must be at least 1, got {args.batch}", file=sys.stderr)
        return 2
    try:
        program = load(args.file)
    except CircuitError as e:
        print(e.format(), file=sys.stderr)
        return 1
    if args.circuit is not None:
        if args.circuit not in program:
            print(f"error: no circuit named {args.circuit!r} in {args.file}; circuits: "
                  + ", ".join(program.circuits), file=sys.stderr)
            return 2
        names = [args.circuit]
    else:
        names = _root_circuits(program)

    used: set[str] = set()
    plans = []
    for name in names:
        d = program[name]
        params = {k: v for k, v in sizes.items() if k in _axis_params(program, name)}
        try:
            if params:
                d = program.instantiate(name, **params)
        except CircuitError as e:
            print(e.format(), file=sys.stderr)
            return 1
        free = d.free_sizes()
        bindings = {k: v for k, v in sizes.items() if k in free}
        used |= set(params) | set(bindings)
        plans.append((d, bindings))
    unused = [k for k in sizes if k not in used]
    if unused:
        details = []
        for d, _ in plans:
            free = sorted(d.free_sizes())
            aps = sorted(_axis_params(program, d.name))
            details.append(f"{d.name}: free sizes {', '.join(free) or 'none'}; "
                           f"axis parameters {', '.join(aps) or 'none'}")
        print(f"error: --set {unused[0]}: not a free size or axis parameter of "
              f"{', '.join(d.name for d, _ in plans)} (sizes declared in the program are fixed)\n  "
              + "\n  ".join(details), file=sys.stderr)
        return 2

    reports = []
    for d, bindings in plans:
        try:
            report = analyse(d, batch=args.batch, bindings=bindings)
        except CircuitError as e:
            print(e.format(), file=sys.stderr)
            return 1
        missing = sorted(set(report.free_sizes) - set(bindings))
        if missing:
            print(f"note: {d.name} has free sizes {', '.join(missing)}; figures are formulas "
                  f"(give sizes with " + " ".join(f"--set {m}=N" for m in missing) + ")", file=sys.stderr)
        reports.append(report)

    if args.json:
        print(json.dumps({"file": args.file, "batch": args.batch,
                          "circuits": [r.to_json() for r in reports]}, indent=2))
    else:
        print("\n\n".join(format_table(r) for r in reports))
    return 0
