"""Command line: `diagrammar stats FILE`, parameters, FLOPs and memory per box, then totals.

Pure Python over the IR (backends/cost.py); never imports jax.

    diagrammar stats circuits/transformer.circuit --circuit Decoder --batch 32
    diagrammar stats model.circuit --set seq=1024 --json
"""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import BadArgument
from . import _args, _files
from .render import own_circuits

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="a .circuit file")
    parser.add_argument("--circuit", metavar="NAME",
                        help="the circuit to count (default: every circuit defined in FILE)")
    parser.add_argument("--batch", type=_args.positive(), default=1, metavar="B",
                        help="batch size: multiplies activations and FLOPs (default 1)")
    parser.add_argument("--set", action="append", default=[], metavar="AXIS=SIZE", dest="sizes",
                        type=_args.axis_size,
                        help="size of a free axis, or an axis parameter of the circuit (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    parser.add_argument("--no-pass", action="append", default=[], metavar="PASS",
                        help="leave out this optimisation pass from the list of rewrites compile makes "
                             "(repeatable; 'all' for none)")
    parser.add_argument("--pass", dest="with_pass", action="append", default=[], metavar="PASS",
                        help="list the rewrites of this pass too, also one that is off by default (repeatable)")
    from .train import add_mesh_arguments  # the same --mesh, --shard and --batch-over as train (no jax)

    add_mesh_arguments(parser, axis_types=False)
    _args.add_size_overrides(parser)


def _axis_params(program, name: str) -> set[str]:
    """Axis parameters a circuit declares (`MLP[hidden = 4 * d]`)."""
    try:
        return {a.name for a in program._checker.circuits[name].node.axis_params}
    except (AttributeError, KeyError):
        return set()


def _rewrites(d, bindings: dict, off: list[str], on: list[str] = ()) -> tuple:
    """What the optimisation passes would rewrite when this circuit is compiled (passes/; IR only)."""
    from ..errors import InvalidArgument
    from ..passes import optimise, switches

    try:
        return optimise(d, bindings, switches(list(on), off))[1]
    except InvalidArgument as e:
        raise BadArgument(f"--{'no-pass' if off else 'pass'}: {e.message}") from None


def _format_rewrites(rewrites) -> str:
    if not rewrites:
        return "\noptimisation passes: none fires"
    return "\noptimisation passes that fire when compiled:\n" + "\n".join(f"  {w}" for w in rewrites)


def run(args) -> int:
    from .. import load
    from ..backends.cost import analyse, format_table

    sizes = dict(args.sizes)
    _files.input_file(args.file)
    program = load(args.file, sizes=dict(args.size_overrides) or None)
    if args.circuit is not None:
        names = [_args.circuit_in(program, args.circuit, args.file, program.circuits)]
    else:
        names = own_circuits(program)

    used: set[str] = set()
    plans = []
    for name in names:
        d = program[name]
        params = {k: v for k, v in sizes.items() if k in _axis_params(program, name)}
        if params:
            d = program.instantiate(name, **params)
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
        raise BadArgument(f"--set {unused[0]}: not a free size or axis parameter of "
                          f"{', '.join(d.name for d, _ in plans)} (a size declared in the program is changed "
                          f"with --size {unused[0]}=N)\n  "
                          + "\n  ".join(details))

    from ..bounds import failures

    for d, bindings in plans:  # requirements and reshapes that wait for free sizes, as compile checks them
        found = failures(d, bindings) if bindings else []
        if found:
            found[0].errors = found
            raise found[0]
    reports = []
    for d, bindings in plans:
        report = analyse(d, batch=args.batch, bindings=bindings)
        missing = sorted(set(report.free_sizes) - set(bindings))
        if missing:
            print(f"diagrammar stats: note: {d.name} has free sizes {', '.join(missing)}; figures are formulas "
                  f"(give sizes with " + " ".join(f"--set {m}=N" for m in missing) + ")", file=sys.stderr)
        reports.append(report)

    rewrites = [_rewrites(d, bindings, args.no_pass, args.with_pass) for d, bindings in plans]
    sharded = _sharded_costs(args, plans)
    if args.json:
        circuits = [{**r.to_json(), "passes": [{"pass": w.pass_name, "where": w.where, "what": w.what} for w in ws]}
                    for r, ws in zip(reports, rewrites)]
        for entry, cost in zip(circuits, sharded):
            entry["sharding"] = cost.to_json()
        print(json.dumps({"file": args.file, "batch": args.batch, "circuits": circuits}, indent=2))
    else:
        print("\n\n".join(format_table(r) + _format_rewrites(ws)
                          + (f"\non the mesh {_mesh_text(args.mesh)}, {cost.format()}" if cost else "")
                          for r, ws, cost in zip(reports, rewrites, sharded or [None] * len(reports))))
    return 0


def _mesh_text(mesh: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in mesh.items())


def _sharded_costs(args, plans) -> list:
    """`--mesh`/`--shard`: each circuit's per-device bytes and collectives (docs/sharding.md); [] without."""
    if not getattr(args, "mesh", None):
        if getattr(args, "shard", None):
            raise BadArgument("--shard needs --mesh (e.g. --mesh data=4,model=2 --shard heads=model)")
        return []
    from ..backends.cost.comms import analyse_sharding
    from ..check.sharding import validate
    from .train import batch_mesh_axis

    out = []
    for d, bindings in plans:
        mapping = validate(d, args.mesh, args.shard or {}, batch_mesh_axis(args), bindings)  # span errors: exit 1
        out.append(analyse_sharding(d, mapping, batch=args.batch, bindings=bindings))
    return out
