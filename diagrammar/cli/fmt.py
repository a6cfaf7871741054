"""Command line: `diagrammar fmt FILE|FOLDER...|-`, the canonical layout written back in place.

The layout is diagrammar/fmt.py's. A file that does not parse is reported like
`check` reports it and left as it was; the others are still formatted.
Never imports jax.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import CircuitError, UnusableFile
from . import _files

__all__ = ["add_arguments", "run"]

DESCRIPTION = """Format .circuit files in place: one canonical layout (indentation, spaces around
operators, `=` and `->`, long lines broken at their brackets), comments kept where
they were. The formatted program always means the same: it parses to the same
program, and formatting it again changes nothing.

A FOLDER formats every .circuit file below it. `-` reads standard input and
writes the formatted text to standard output.

--check writes nothing: it names each file that would change (exit 1), for CI.

exit codes: 0 done (or, with --check, every file is formatted); 1 a file does not
parse, or with --check some file would change; 2 a file cannot be read or written."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE|FOLDER|-",
                        help=".circuit files, folders (every .circuit file below), or - for standard input")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; list the files that are not formatted and exit 1 if there are any")
    parser.add_argument("--line-length", type=int, default=None, metavar="N",
                        help="break lines longer than N characters (default 100)")


def run(args) -> int:
    from ..fmt import LINE_LENGTH, FormatterBug, format_text
    from .check import expand

    width = args.line_length or LINE_LENGTH
    if width < 20 or width > 10000:
        from ..errors import BadArgument

        raise BadArgument(f"--line-length must be between 20 and 10000, got {width}")
    status = 0
    changed = 0
    for given in args.files:
        if given == "-":
            text = sys.stdin.read()
            try:
                out = format_text(text, line_length=width, file="<stdin>")
            except (CircuitError, FormatterBug) as e:
                print(e.format() if isinstance(e, CircuitError) else f"diagrammar fmt: internal error: {e}",
                      file=sys.stderr)
                status = max(status, 1)
                if not args.check:
                    sys.stdout.write(text)  # a filter never swallows its input
                continue
            if args.check:
                if out != text:
                    print("<stdin> would be reformatted", file=sys.stderr)
                    status = max(status, 1)
            else:
                sys.stdout.write(out)
            continue
        try:
            paths = expand(given)
        except UnusableFile as e:
            print(f"diagrammar fmt: error: {e}", file=sys.stderr)
            status = 2
            continue
        for path in paths:
            try:
                with _files.open_regular(path) as f:
                    raw = f.read()
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                from ..syntax import decode_source

                try:  # raises NotUTF8 at the line and column of the first bad byte
                    decode_source(raw, str(path))
                except CircuitError as e:
                    print(e.format(), file=sys.stderr)
                status = 2
                continue
            except UnusableFile as e:
                print(f"diagrammar fmt: error: {e}", file=sys.stderr)
                status = 2
                continue
            try:
                out = format_text(text, line_length=width, file=path)
            except CircuitError as e:
                print(e.format(), file=sys.stderr)
                status = max(status, 1)
                continue
            except FormatterBug as e:
                print(f"diagrammar fmt: internal error: {e}. This is a bug in diagrammar.", file=sys.stderr)
                status = max(status, 1)
                continue
            if out == text:
                continue
            changed += 1
            if args.check:
                print(f"{path} would be reformatted", file=sys.stderr)
                status = max(status, 1)
            else:
                try:
                    _files.write_atomic(path, out)
                except UnusableFile as e:
                    print(f"diagrammar fmt: error: {e}", file=sys.stderr)
                    status = 2
                    continue
                print(f"reformatted {path}", file=sys.stderr)
    return status
