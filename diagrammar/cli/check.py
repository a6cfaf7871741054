"""Command line: `diagrammar check FILE|FOLDER...`, every wire typed, errors printed like a compiler's.

A folder stands for every ``.circuit`` file below it (sorted, hidden folders
skipped), as linters treat folders. Never imports jax.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import CircuitError, UnusableFile
from . import _args, _files

__all__ = ["add_arguments", "expand", "run"]

DESCRIPTION = """Check .circuit files: names, sizes and the type of every wire. Every error of a
file is printed, with its line, a caret and the fix; then the next file is checked.

A FOLDER checks every .circuit file below it (subfolders included, hidden ones
skipped, in sorted order); a folder with none is a usage error.

exit codes: 0 every file is correct; 1 some file has errors; 2 a file or folder
cannot be read (the others are still checked)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE|FOLDER",
                        help=".circuit files, or folders: every .circuit file below a folder")
    parser.add_argument("--json", action="store_true", help="print diagnostics (or summaries) as JSON, for editors")
    parser.add_argument("--max-weight-elements", type=_args.positive(2 ** 62), default=None, metavar="N",
                        help="refuse any weight with more than N elements (default 2**31)")
    _args.add_size_overrides(parser)


def expand(path: str) -> list[str]:
    """The files ``path`` stands for: itself, or every ``.circuit`` file below a folder.

    Raises:
      UnusableFile: ``path`` is missing, unreadable, not a file or folder, or a folder holding no ``.circuit`` file.
    """
    if os.path.isdir(path):
        found = []
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [os.path.join(root, n) for n in sorted(names) if n.endswith(".circuit")]
        if not found:
            raise UnusableFile(f"{path} is a folder with no .circuit file in it")
        return found
    if not os.path.lexists(path):
        raise UnusableFile(f"no such file or folder: {path}")
    _files.input_file(path)
    return [path]


def run(args) -> int:
    from .. import DEFAULT_MAX_WEIGHT_ELEMENTS, load

    budget = args.max_weight_elements or DEFAULT_MAX_WEIGHT_ELEMENTS
    status = 0
    report = []
    for given in args.files:
        try:
            paths = expand(given)
        except UnusableFile as e:
            status = 2
            if args.json:
                report.append({"file": given, "ok": False, "diagnostics": [
                    {"code": type(e).__name__, "severity": "error", "message": str(e), "hint": None, "detail": []}]})
            else:
                print(f"diagrammar check: error: {e}", file=sys.stderr)
            continue
        for path in paths:
            try:
                program = load(path, max_weight_elements=budget, sizes=dict(args.size_overrides) or None)
            except CircuitError as e:
                status = max(status, getattr(e, "exit_code", 1))  # 2: a file that is not UTF-8
                if args.json:
                    report.append({"file": path, "ok": False, "diagnostics": e.to_json()})
                else:
                    print(e.format(), file=sys.stderr)
                continue
            circuits = []
            generics = program.generics
            for name in program.circuits:
                if name in generics:  # typed per binding, at its calls: no parameter count of its own
                    circuits.append({"name": name, "generic": generics[name]})
                    if not args.json:
                        print(f"{path}: {generics[name]} (generic)")
                    continue
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
