"""Playground, in the browser: check and draw the editor's text under Pyodide.

The page calls ``update(text, circuit, depth)`` after each edit and gets JSON
back. Only the checker, the cost counter and the SVG renderer run here; the
text is read, never executed.
"""
import json
import time

from diagrammar import syntax
from diagrammar.lsp.analysis import Analysis

NAME = "playground.circuit"
_last = {}


def _formulas(a):
    return {n: syntax.size_text(item.size) for n, (item, _f) in a.axes().items() if item.size is not None}


def update(text, circuit, depth):
    """JSON: diagnostics, circuits (with parameters and FLOPs), the chosen circuit's SVG, timings."""
    t0 = time.perf_counter()
    a = Analysis(text, None, name=NAME)
    t1 = time.perf_counter()
    diagnostics = [{"line": d.line, "column": d.column, "end_line": d.end_line, "end_column": d.end_column,
                    "message": d.message, "code": d.code, "hint": d.hint,
                    "detail": d.detail} for d in a.diagnostics]
    circuits = []
    if a.module is not None:
        for c in a.module.circuits:
            d = a.diagrams.get(c.name)
            entry = {"name": c.name, "ok": d is not None, "line": c.name_span.line}
            if d is not None:
                entry["summary"] = d.summary()
                rep = a._cost_report(c.name)
                if rep is not None:
                    entry["parameters"] = str(rep.parameters)
                    entry["flops"] = str(rep.forward_flops)
            circuits.append(entry)
    names = [c["name"] for c in circuits if c["ok"]]
    if circuit not in names:
        circuit = names[-1] if names else None
    svg, render_error = None, None
    if circuit is not None:
        try:
            from diagrammar.backends.svg import render_svg

            svg = render_svg(a.diagrams[circuit], depth=None if depth in (None, "all") else int(depth),
                             axis_formulas=_formulas(a))
        except ImportError as e:
            render_error = str(e)
        except Exception as e:  # noqa: BLE001 - shown on the page, never lost
            render_error = f"the renderer failed: {type(e).__name__}: {e}"
    t2 = time.perf_counter()
    return json.dumps({"diagnostics": diagnostics, "circuits": circuits, "circuit": circuit, "svg": svg,
                       "render_error": render_error, "syntax_ok": a.module is not None,
                       "timings": {"check": round(t1 - t0, 4), "render": round(t2 - t1, 4)}})
