"""Command line: `diagrammar lsp`, the language server over stdio, for editors.

Needs the `lsp` extra (pygls); without it the command says how to install it.
Never imports jax.
"""
from __future__ import annotations

import argparse

from . import _needs

__all__ = ["add_arguments", "run"]

DESCRIPTION = """Run the diagrammar language server on standard input and output (the Language
Server Protocol), as an editor starts it: diagnostics as you type (with the hint),
hover (a wire's type with sizes; a box's parameters and FLOPs), go to definition,
completion of operations, keyword arguments, axes and circuits, document symbols,
formatting (diagrammar fmt) and semantic tokens.

editors/vscode/ holds a VS Code extension that starts it.

exit codes: 0 the editor shut the server down; 2 pygls is not installed."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stdio", action="store_true", help="talk over standard input and output (the default; "
                        "accepted because editors pass it)")


def run(args) -> int:
    _needs.require("lsp", ("pygls", "lsprotocol"))
    from ..lsp.server import main

    main()
    return 0
