"""Command line: the `diagrammar` command and its dispatch to one module per verb.

Each verb is a module of this package with ``add_arguments(parser)`` and
``run(args) -> int``. Those modules import jax, the renderers or plotting
libraries only inside ``run``, so building the parser is cheap and
``diagrammar check`` never imports jax.

Exit codes, for every verb:
  0   success
  1   the program has errors (printed like a compiler), or the work failed
      (a run that diverged, a circuit that does not fit the task)
  2   a usage or file error: a bad argument, a missing or unusable file, a
      checkpoint of another run, an output folder in use, a missing package
  130 interrupted with Ctrl-C (a training run saves its last completed steps)
  143 terminated with SIGTERM (likewise)

No error prints a Python traceback; ``DIAGRAMMAR_DEBUG=1`` shows the traceback
of an internal error.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from .. import __version__
from ..errors import CircuitError, CommandError

__all__ = ["main", "build_parser", "COMMANDS", "Terminated"]

# verb -> (module, help); the module defines add_arguments(parser) and run(args) -> int
COMMANDS = {
    "check": ("diagrammar.cli.check", "check .circuit files (or every one in a folder) and summarise their circuits"),
    "render": ("diagrammar.cli.render", "draw a circuit as SVG, PNG, TikZ or DOT"),
    "gallery": ("diagrammar.cli.gallery", "render every zoo circuit into gallery/ with an index page"),
    "stats": ("diagrammar.cli.stats", "parameters, FLOPs and memory per box"),
    "train": ("diagrammar.cli.train", "train a circuit on a task (modadd, sort, hull, workspace)"),
    "fmt": ("diagrammar.cli.fmt", "format .circuit files in the one canonical layout (--check for CI)"),
    "lsp": ("diagrammar.cli.lsp", "a language server for editors, over stdio (needs diagrammar[lsp])"),
    "serve": ("diagrammar.cli.serve", "a local page that shows a file's figure and errors, updated on save"),
    "analyse": ("diagrammar.cli.analyse", "compare what named wires of trained checkpoints represent (CKA, RSA, ...)"),
}

EPILOG = """examples:
  diagrammar check circuits/
  diagrammar render circuits/grok_transformer.circuit --circuit GrokTransformer -o grok.svg
  diagrammar stats circuits/transformer.circuit --circuit Decoder --batch 32
  diagrammar train circuits/modadd_mlp.circuit --circuit ModAddMLP --task modadd

exit codes: 0 ok; 1 errors in the program or a failed run; 2 usage or file errors;
130 Ctrl-C; 143 SIGTERM (a training run saves its last completed steps first)
"""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is so that it unwinds (and a run saves) as after Ctrl-C."""

    exit_code = 128 + signal.SIGTERM


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`Terminated` once; a second one is ignored so the
    save it triggers can finish (SIGKILL still ends the process)."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class _Parser(argparse.ArgumentParser):
    """argparse that says which verb a usage error belongs to, and never exits by itself."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        raise _UsageExit(f"{self.prog}: error: {message}")


class _UsageExit(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    """The whole parser: one sub-parser per verb of :data:`COMMANDS`."""
    parser = _Parser(
        prog="diagrammar", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Neural networks as typed neural circuit diagrams: check, draw, count and train .circuit files.",
        epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"diagrammar {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=getattr(mod, "DESCRIPTION", help_text),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `diagrammar` command with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Never raises and never exits the interpreter: usage errors return 2,
    ``--help`` and ``--version`` return 0.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageExit as e:
        print(e, file=sys.stderr)
        return 2
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    prog = f"diagrammar {args.command}"
    try:
        with _sigterm_unwinds():
            return int(args._run(args) or 0)
    except CircuitError as e:
        print(e.format(), file=sys.stderr)
        return getattr(e, "exit_code", 1)  # 2 for a file that is not UTF-8 (errors.NotUTF8)
    except CommandError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return Terminated.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into `head` and the like: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if not top or top == "diagrammar":
            raise
        from ._needs import install_command

        print(f"{prog}: error: this needs the package {top}, which is not installed; install it with: "
              f"{install_command([top])[0]}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{prog}: error: out of memory; try smaller sizes or batches", file=sys.stderr)
        return 1
    except OSError as e:  # a file error that no command translated
        from ._files import unusable

        print(f"{prog}: error: {unusable(e, e.filename or 'a file', 'use')}", file=sys.stderr)
        return 2
    except Exception as e:
        if os.environ.get("DIAGRAMMAR_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {e}\n"
              "This is a bug in diagrammar; run again with DIAGRAMMAR_DEBUG=1 to see where it happened.",
              file=sys.stderr)
        return 1
