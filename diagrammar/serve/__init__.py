"""Tools, live preview: `diagrammar serve FILE`, a local page with the figure, the errors and the costs.

A watcher thread looks at the file (and every file it `use`s) five times a
second; when one changes it is checked again and every client waiting on
``/state`` gets the new state at once (long polling: no websocket, no
dependency). The page (page.html) asks ``/figure`` for the selected circuit's
SVG and, on a click on a box, highlights the source line in the figure's
``data-line`` attribute.

Only the standard library's http.server, bound to 127.0.0.1 by default. The
file is read, checked and drawn; nothing in it is ever run.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlparse

__all__ = ["Preview", "make_server", "page_html"]

POLL = 0.2  # seconds between two looks at the files
WAIT = 20.0  # longest a /state request waits for a change


def page_html() -> str:
    return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha1(f.read()).hexdigest()
    except OSError:
        return None


class Preview:
    """The checked state of one file, rebuilt when it (or a file it uses) changes."""

    def __init__(self, path: str, depth: int | None = None):
        self.path = os.path.abspath(path)
        self.depth = depth
        self.version = 0
        self.state: dict = {}
        self.analysis = None
        self.watched: dict[str, str | None] = {}
        self.figures: dict[tuple, str] = {}
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self.rebuild()

    # ------------------------------------------------------------- state

    def rebuild(self) -> None:
        from ..lsp.analysis import Analysis

        try:
            with open(self.path, "rb") as f:
                raw = f.read()
            text = raw.decode("utf-8")
            error = None
        except (OSError, UnicodeDecodeError) as e:
            text, error = "", f"cannot read {self.path}: {getattr(e, 'strerror', None) or e}"
        started = time.perf_counter()
        a = Analysis(text, self.path) if error is None else None
        watched = {self.path: _digest(self.path)}
        if a is not None and a.checker is not None:
            for display in a.checker.sources:
                p = os.path.abspath(display) if display != a.name else self.path
                watched[p] = _digest(p)
        circuits = []
        if a is not None and a.module is not None:
            for c in a.module.circuits:
                d = a.diagrams.get(c.name)
                entry = {"name": c.name, "line": c.name_span.line, "ok": d is not None}
                if d is not None:
                    entry["summary"] = d.summary()
                    rep = a._cost_report(c.name)
                    if rep is not None:
                        entry["parameters"] = str(rep.parameters)
                        entry["flops"] = str(rep.forward_flops)
                        entry["boxes"] = [{"path": r.path, "op": r.op, "params": str(r.params),
                                           "flops": str(r.forward_flops), "output": r.output_type}
                                          for r in rep.boxes if r.depth == 0]
                circuits.append(entry)
        diagnostics = []
        if error is not None:
            diagnostics.append({"line": 1, "column": 1, "end_line": 1, "end_column": 2, "message": error,
                                "code": "UnusableFile", "hint": None, "detail": []})
        elif a is not None:
            diagnostics = [{"line": d.line, "column": d.column, "end_line": d.end_line, "end_column": d.end_column,
                            "message": d.message, "code": d.code, "hint": d.hint, "detail": d.detail}
                           for d in a.diagnostics]
        with self.changed:
            self.analysis = a
            self.figures = {}
            self.watched = watched
            self.version += 1
            self.state = {"version": self.version, "file": self.path, "name": os.path.basename(self.path),
                          "source": text, "diagnostics": diagnostics, "circuits": circuits,
                          "check_seconds": round(time.perf_counter() - started, 4)}
            self.changed.notify_all()

    def figure(self, name: str, depth: int | None) -> str | None:
        """The SVG of circuit ``name`` in the current state (None when it does not check)."""
        with self.changed:
            a = self.analysis
            key = (self.version, name, depth)
            if key in self.figures:
                return self.figures[key]
        if a is None or name not in a.diagrams:
            return None
        from ..backends.svg import render_svg

        try:
            formulas = _formulas(a)
        except Exception:  # noqa: BLE001 - a legend without formulas is still a figure
            formulas = {}
        svg = render_svg(a.diagrams[name], depth=depth, axis_formulas=formulas)
        with self.changed:
            if key[0] == self.version:
                self.figures[key] = svg
        return svg

    def wait(self, since: int, timeout: float = WAIT) -> dict:
        with self.changed:
            self.changed.wait_for(lambda: self.version > since or self._stop.is_set(), timeout=timeout)
            return self.state

    # ------------------------------------------------------------- watching

    def poll_once(self) -> bool:
        """Rebuild when a watched file changed; True if it did."""
        for p, digest in list(self.watched.items()):
            if _digest(p) != digest:
                self.rebuild()
                return True
        return False

    def watch(self) -> threading.Thread:
        def loop():
            while not self._stop.wait(POLL):
                try:
                    self.poll_once()
                except Exception:  # noqa: BLE001 - the watcher outlives any one bad state
                    pass
        t = threading.Thread(target=loop, name="diagrammar-serve-watch", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self._stop.set()
        with self.changed:
            self.changed.notify_all()


def _formulas(a) -> dict[str, str]:
    from .. import syntax as S

    return {name: S.size_text(item.size) for name, (item, _f) in a.axes().items() if item.size is not None}


def make_server(preview: Preview, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    page = page_html().encode("utf-8")

    class Handler(BaseHTTPRequestHandler):
        server_version = "diagrammar-serve"

        def log_message(self, fmt, *args):  # quiet: the terminal shows what the page shows
            pass

        def _send(self, status, body: bytes, ctype: str):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def do_GET(self):  # noqa: N802 - http.server's name
            url = urlparse(self.path)
            q = parse_qs(url.query)
            try:
                if url.path in ("/", "/index.html"):
                    self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
                elif url.path == "/state":
                    since = int(q.get("since", ["0"])[0])
                    state = preview.wait(since, timeout=float(q.get("wait", [WAIT])[0]))
                    self._send(HTTPStatus.OK, json.dumps(state).encode("utf-8"), "application/json")
                elif url.path == "/figure":
                    name = q.get("circuit", [""])[0]
                    depth_text = q.get("depth", ["all"])[0]
                    depth = None if depth_text in ("all", "") else max(int(depth_text), 0)
                    svg = preview.figure(name, depth)
                    if svg is None:
                        self._send(HTTPStatus.NOT_FOUND, b"no figure: the circuit does not check", "text/plain")
                    else:
                        self._send(HTTPStatus.OK, svg.encode("utf-8"), "image/svg+xml")
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
            except ValueError:
                self._send(HTTPStatus.BAD_REQUEST, b"bad request", "text/plain")

    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    return httpd
