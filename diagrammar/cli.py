"""The `diagrammar` command: check | render | gallery | stats | train.

Each subcommand's options live next to its code (`add_arguments`, `run`);
those modules import jax or plotting libraries only inside `run`, so
`diagrammar check` stays fast and never imports jax.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from . import __version__
from .errors import CircuitError

# subcommand -> (module, help); the module defines add_arguments(parser) and run(args) -> int
COMMANDS = {
    "check": (__name__, "check .circuit files and summarise their circuits"),
    "render": ("diagrammar.render_cli", "draw a circuit as SVG, PNG, TikZ or DOT"),
    "gallery": ("diagrammar.gallery_cli", "render every zoo circuit into gallery/ with an index page"),
    "stats": ("diagrammar.stats_cli", "parameters, FLOPs and memory per box"),
    "train": ("diagrammar.train.cli_train", "train a circuit on a task (modadd, sort, hull, workspace)"),
}

EPILOG = """examples:
  diagrammar check circuits/grok_transformer.circuit
  diagrammar render circuits/grok_transformer.circuit --circuit GrokTransformer -o grok.svg
  diagrammar stats circuits/transformer.circuit --circuit Decoder --batch 32
  diagrammar train circuits/modadd_mlp.circuit --circuit ModAddMLP --task modadd
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help=".circuit files to check")
    parser.add_argument("--json", action="store_true", help="print diagnostics (or summaries) as JSON, for editors")
    parser.add_argument("--max-weight-elements", type=int, default=None, metavar="N",
                        help="refuse any weight with more than N elements (default 2**31)")


def run(args) -> int:
    from .check import DEFAULT_MAX_WEIGHT_ELEMENTS, load

    budget = args.max_weight_elements or DEFAULT_MAX_WEIGHT_ELEMENTS
    status = 0
    report = []
    for path in args.files:
        try:
            program = load(path, max_weight_elements=budget)
        except CircuitError as e:
            status = 1
            if args.json:
                report.append({"file": path, "ok": False, "diagnostics": e.to_json()})
            else:
                print(e.format(), file=sys.stderr)
            continue
        circuits = []
        for name in program:
            d = program[name]
            params = d.parameter_count()
            circuits.append({"name": name, "inputs": {p.name: str(p.type) for p in d.inputs},
                             "output": str(d.output.type), "weights": sum(1 for _ in d.weights()),
                             "parameters": params.value if params.is_const else str(params)})
            if not args.json:
                print(f"{path}: {d.summary()}")
        if args.json:
            report.append({"file": path, "ok": True, "circuits": circuits, "diagnostics": []})
    if args.json:
        print(json.dumps(report, indent=2))
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diagrammar", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Neural networks as typed neural circuit diagrams: check, draw, count and train .circuit files.",
        epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"diagrammar {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("diagrammar"):
                continue  # a subcommand whose module is not part of this build
            raise
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CircuitError as e:
        print(e.format(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into `head` and the like: stop quietly, as Unix tools do
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
