"""Playground, in the browser: check and draw the editor's text under Pyodide.

The page calls ``check(text)`` after each edit, shows the diagnostics, then
calls ``draw(circuit, depth)`` for the figure; both answer JSON. Only the checker, the cost counter and the SVG renderer run here; the
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


def check(text):
    """JSON: diagnostics and circuits (with their parameters). Keeps the result for ``draw``."""
    t0 = time.perf_counter()
    a = Analysis(text, None, name=NAME)
    diagnostics = [{"line": d.line, "column": d.column, "end_line": d.end_line, "end_column": d.end_column,
                    "message": d.message, "code": d.code, "hint": d.hint, "detail": d.detail}
                   for d in a.diagnostics]
    circuits = []
    if a.module is not None:
        for c in a.module.circuits:
            d = a.diagrams.get(c.name)
            entry = {"name": c.name, "ok": d is not None, "line": c.name_span.line}
            if d is not None:
                entry["summary"] = d.summary()  # FLOPs are counted in draw(), for the circuit shown
            circuits.append(entry)
    _last["analysis"] = a
    return json.dumps({"diagnostics": diagnostics, "circuits": circuits, "syntax_ok": a.module is not None,
                       "timings": {"check": round(time.perf_counter() - t0, 4)}})


def draw(circuit, depth):
    """JSON: the SVG and forward FLOPs of ``circuit`` (or the last one that checks) from the last ``check``."""
    t0 = time.perf_counter()
    a = _last.get("analysis")
    defined = [c.name for c in a.module.circuits] if a is not None and a.module is not None else []
    names = [n for n in defined if n in a.diagrams]
    if circuit in defined and circuit not in names:
        # the circuit shown has errors now: keep it chosen; the page keeps its last figure, dimmed
        return json.dumps({"circuit": circuit, "svg": None, "render_error": None, "flops": None,
                           "timings": {"render": round(time.perf_counter() - t0, 4)}})
    if circuit not in names:
        circuit = names[-1] if names else None
    svg, error, flops = None, None, None
    if circuit is not None:
        rep = a._cost_report(circuit)
        flops = str(rep.forward_flops) if rep is not None else None
        try:
            from diagrammar.backends.svg import render_svg

            svg = render_svg(a.diagrams[circuit], depth=None if depth in (None, "all") else int(depth),
                             axis_formulas=_formulas(a))
        except ImportError as e:
            error = str(e)
        except Exception as e:  # noqa: BLE001 - shown on the page, never lost
            error = f"the renderer failed: {type(e).__name__}: {e}"
    return json.dumps({"circuit": circuit, "svg": svg, "render_error": error, "flops": flops,
                       "timings": {"render": round(time.perf_counter() - t0, 4)}})
