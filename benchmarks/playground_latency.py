"""Keystroke to updated figure in the playground, measured in a headless Chromium, for the zoo's largest circuit.

Builds the playground (docs/playground/build.py) into a temporary folder unless --site names a built one,
opens it from disk in Debian's Chromium (through playwright), loads the zoo file whose circuit has the most
boxes, selects that circuit (all levels drawn, then depth 0) and presses keys that change an axis size (a digit typed,
then deleted), waiting for each update. The page times each one from the input event to the first frame
painted after the new figure is in the page; the Python part (check, cost, render) is timed inside Pyodide.
The same check and render in CPython are printed for comparison.

    python benchmarks/playground_latency.py [--keys 20] [--site docs/playground/site]
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def largest_circuit() -> tuple[Path, str, int]:
    import diagrammar

    best = None
    for path in sorted((ROOT / "circuits").glob("*.circuit")):
        program = diagrammar.load(path)
        for name in program.circuits:
            try:
                n = sum(1 for _ in program[name].walk())
            except Exception:  # noqa: BLE001 - a generic circuit has no diagram of its own
                continue
            if program[name].span is not None and Path(program[name].span.file).name != path.name:
                continue
            if best is None or n > best[2]:
                best = (path, name, n)
    return best


def cpython_times(path: Path, name: str, depth: int | None, repeat: int = 5) -> tuple[float, float]:
    import diagrammar
    from diagrammar.backends.svg import render_svg

    checks, renders = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        program = diagrammar.parse(path.read_text(), name="x.circuit", root=path.parent)
        t1 = time.perf_counter()
        render_svg(program[name], depth=depth, axis_formulas=program.axis_formulas)
        checks.append(t1 - t)
        renders.append(time.perf_counter() - t1)
    return statistics.median(checks), statistics.median(renders)


def idle(page) -> None:
    """Wait until the page has shown the results of the editor's text and has nothing more to do."""
    page.wait_for_function("!window.playground.busy && window.playground.text === document.getElementById('editor').value"
                           " && window.playground.timings.length >= window.playground.runs", timeout=60000)


def settle(page, action) -> None:
    """Do ``action`` and wait until the update it starts is painted."""
    runs = page.evaluate("window.playground.runs")
    action()
    page.wait_for_function(f"window.playground.runs > {runs} && "
                           "window.playground.timings.length >= window.playground.runs", timeout=60000)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=20, help="keystrokes to time (default 20)")
    ap.add_argument("--site", type=Path, default=None, help="a built playground (default: build one now)")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    path, name, boxes = largest_circuit()
    with tempfile.TemporaryDirectory() as tmp:
        site = args.site.resolve() if args.site else None
        if site is None:
            site = Path(tmp) / "site"
            subprocess.run([sys.executable, str(ROOT / "docs" / "playground" / "build.py"), "--out", str(site)],
                           check=True, capture_output=True)
        text = path.read_text()
        m = re.search(r"^axis\s+\w+\s*=\s*(\d+)", text, re.M)
        if m is None:
            sys.exit("no `axis NAME = NUMBER` line to edit in " + path.name)
        offset = m.end(1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            t = time.perf_counter()
            page.goto((site / "index.html").as_uri())
            page.wait_for_function("window.playground && window.playground.ready", timeout=120000)
            page.wait_for_function("window.playground.timings.length > 0")
            load = time.perf_counter() - t
            startup = page.evaluate("window.playground.startup") / 1000
            page.select_option("#zoo", path.name)
            page.wait_for_function(f"window.playground.last && window.playground.last.circuit !== null && "
                                   f"document.getElementById('editor').value.length === {len(text)}")
            settle(page, lambda: page.select_option("#circuit", name))
            page.wait_for_function(f"window.playground.last.circuit === {name!r}")
            results = {}
            for depth in ("all", "0"):
                settle(page, lambda: page.select_option("#depth", depth))
                page.evaluate(f"(() => {{ const e = document.getElementById('editor'); e.focus(); "
                              f"e.setSelectionRange({offset}, {offset}); }})()")
                timings = []
                for k in range(args.keys):
                    idle(page)
                    n = page.evaluate("window.playground.timings.length")
                    page.keyboard.press("0" if k % 2 == 0 else "Backspace")
                    idle(page)
                    # the first update after the key started from its input event
                    timings.append(page.evaluate(f"window.playground.timings[{n}]"))
                results[depth] = (timings,
                                  page.evaluate("window.playground.last.diagnostics.length"),
                                  len(page.evaluate("window.playground.last.svg || ''")))
            browser.close()
    print(f"playground latency: {path.name} {name} ({boxes} boxes), {args.keys} keystrokes per depth, "
          f"each typing or deleting a digit of an axis size")
    print(f"  page load to first figure: {load:.2f} s (Pyodide start {startup:.2f} s)")
    for depth, (timings, errors, svg_bytes) in results.items():
        total = [x["total"] for x in timings]
        check = [x["check"] for x in timings]
        render = [x["render"] for x in timings]
        c_check, c_render = cpython_times(path, name, None if depth == "all" else int(depth))
        q = statistics.quantiles(total, n=10)
        print(f"  depth {depth} ({svg_bytes:,} bytes of SVG): keystroke -> figure painted: median "
              f"{statistics.median(total):.0f} ms, p90 {q[-1]:.0f} ms, max {max(total):.0f} ms")
        print(f"    in Pyodide: check {statistics.median(check):.0f} ms, cost+render {statistics.median(render):.0f} ms "
              f"(medians; the rest is the page: JSON, DOM, paint); CPython: check {c_check * 1000:.0f} ms, "
              f"render {c_render * 1000:.0f} ms; errors on the last update: {errors}")
        med = {k: statistics.median(x[k] for x in timings) for k in ("to_checked", "draw_call", "dom", "paint")}
        print(f"    in the page (medians): keystroke to checked {med['to_checked']:.0f} ms, draw call "
              f"{med['draw_call']:.0f} ms, figure into the page {med['dom']:.0f} ms, layout and paint "
              f"{med['paint']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
