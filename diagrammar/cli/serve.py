"""Command line: `diagrammar serve FILE [--port N]`, a local page that follows a file as it is saved.

Never imports jax: the page shows what `check`, `render` and `stats` show.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import UnusableFile
from . import _args, _files

__all__ = ["add_arguments", "run"]

DESCRIPTION = """Serve a local page for one .circuit file: its figure, its errors (with the source
lines) and the parameters and FLOPs of each box. The page updates within a second
of the file (or a file it uses) being saved. Click a box in the figure to
highlight its source line.

Listens on 127.0.0.1 only unless --host says otherwise. Stop it with Ctrl-C.

exit codes: 0 stopped with Ctrl-C; 2 the file cannot be read or the port is taken."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the .circuit file to follow")
    parser.add_argument("--port", type=_args.whole(0, 65535), default=8000, metavar="N",
                        help="the port to listen on (default 8000; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    parser.add_argument("--depth", type=_args.whole(0), default=None, metavar="N",
                        help="levels of sub-circuits the figure shows first (default: all)")


def run(args) -> int:
    from ..serve import Preview, make_server

    _files.input_file(args.file)
    preview = Preview(args.file, depth=args.depth)
    try:
        httpd = make_server(preview, args.host, args.port)
    except OSError as e:
        raise UnusableFile(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    host, port = httpd.server_address[:2]
    print(f"diagrammar serve: {args.file} on http://{host}:{port}/ (Ctrl-C to stop)", file=sys.stderr, flush=True)
    preview.watch()
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("diagrammar serve: stopped", file=sys.stderr)
        return 0
    finally:
        preview.stop()
        httpd.server_close()
    return 0
