"""The preview page (`diagrammar serve`) and the playground, in a real headless Chromium driven by playwright.

Skipped, saying why, when playwright or a Chromium is missing (.ci/run installs Debian's chromium), or when
the playground cannot be built (it needs npm and the registries).
"""
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright: pip install playwright")

GOOD = """\
axis d = 8, h = 16

circuit Mlp(x: [d]) -> [d]:
    y = relu(linear(x, d -> h))
    return linear(y, h -> d)
"""
BAD = GOOD.replace("return linear(y, h -> d)", "return y")  # returns [h] where [d] is declared
FIXED = GOOD.replace("d -> h))", "d -> h)) * 2")


def chromium_path() -> str | None:
    for cand in (os.environ.get("DIAGRAMMAR_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                 "/usr/bin/chromium"):
        if cand and os.path.exists(cand):
            return cand
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium installed: apt-get install -y chromium (.ci/run does), or set DIAGRAMMAR_CHROMIUM")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, f"errors in the page: {errors}"


# ------------------------------------------------------------------ diagrammar serve


@pytest.fixture
def served(tmp_path):
    from diagrammar.serve import Preview, make_server

    f = tmp_path / "model.circuit"
    f.write_text(GOOD)
    preview = Preview(str(f))
    httpd = make_server(preview, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    preview.watch()
    yield f, f"http://127.0.0.1:{httpd.server_address[1]}/"
    preview.stop()
    httpd.shutdown()
    httpd.server_close()


def test_serve_shows_the_figure_follows_saves_and_links_boxes_to_lines(page, served):
    f, url = served
    page.goto(url)
    page.wait_for_selector("#figure svg")
    assert page.inner_text("#title") == "model.circuit"
    assert "parameters" in page.inner_text("#summary")
    # a click on a box highlights its source line
    box = page.locator("#figure [data-op='linear'][data-line]").first
    line = box.get_attribute("data-line")
    box.click(force=True)  # the label on the box takes the click: it carries the same data-line
    assert page.get_attribute("#source .ln.selected", "data-n") == line
    assert "linear" in page.inner_text("#source .ln.selected")

    # a mistake, saved: the error appears with its source line, within a second or so
    t = time.perf_counter()
    f.write_text(BAD)
    page.wait_for_selector("#diagnostics .diag", timeout=5000)
    seen = time.perf_counter() - t
    text = page.inner_text("#diagnostics")
    assert "model.circuit:5:5: error: returns [h]" in text and "    return y" in text and "hint:" in text
    assert seen < 2.0, f"the page took {seen:.2f} s to show the error"
    assert page.get_attribute("#source .ln.error", "data-n") == "5"

    # fixed: the figure is back, the errors are gone
    f.write_text(FIXED)
    page.wait_for_function("document.querySelectorAll('#diagnostics .diag').length === 0")
    page.wait_for_selector("#figure svg [data-op='mul']")


# ------------------------------------------------------------------ the playground


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if shutil.which("npm") is None:
        pytest.skip("the playground build needs npm (to fetch the pyodide package)")
    out = tmp_path_factory.mktemp("playground") / "site"
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "playground" / "build.py"), "--out", str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"the playground could not be built here: {proc.stderr.strip()[-500:]}")
    return out


def _ready(page):
    page.wait_for_function("window.playground && (window.playground.ready || window.playground.error)",
                           timeout=90000)
    assert page.evaluate("window.playground.error") is None
    page.wait_for_function("window.playground.runs > 0")


def _settled(page):
    """Wait until the page shows the results of the editor's text (and has painted them)."""
    page.wait_for_function("window.playground.text === document.getElementById('editor').value && "
                           "window.playground.timings.length >= window.playground.runs", timeout=30000)


def _set_text(page, text):
    page.fill("#editor", text)
    _settled(page)


def test_playground_from_disk_checks_as_you_type_and_draws(page, site):
    page.goto((site / "index.html").as_uri())
    _ready(page)
    page.wait_for_selector("#figure svg")  # the default example (transformer.circuit) is drawn
    assert page.input_value("#zoo") == "transformer.circuit"

    _set_text(page, GOOD)
    page.wait_for_selector("#figure svg [data-op='linear']")
    # a mistake, typed
    page.click("#editor")
    page.keyboard.press("Control+End")
    page.keyboard.type("    return oops\n")
    _settled(page)
    text = page.inner_text("#diagnostics")
    assert "playground.circuit:6:5:" in text or "playground.circuit:6" in text
    assert "oops" in text
    # a type error, then fixed
    _set_text(page, BAD)
    assert "returns [h]" in page.inner_text("#diagnostics") and "hint:" in page.inner_text("#diagnostics")
    _set_text(page, FIXED)
    assert page.inner_text("#diagnostics").strip() == ""
    page.wait_for_selector("#figure svg [data-op='mul']")
    assert "Mlp(x: [d]) -> [d]" in page.inner_text("#summary")

    # clicking a box selects its line in the editor
    page.locator("#figure [data-op='linear'][data-line]").first.click(force=True)
    selected = page.evaluate("(() => { const e = document.getElementById('editor');"
                             " return e.value.slice(e.selectionStart, e.selectionEnd); })()")
    assert "linear" in selected

    # the zoo menu
    page.select_option("#zoo", "mlp.circuit")
    page.wait_for_function("document.getElementById('editor').value.includes('circuit MLP')")
    page.wait_for_selector("#figure svg")


def test_playground_shared_link_over_a_static_server(browser, site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/index.html")
        _ready(page)
        _set_text(page, FIXED)
        page.wait_for_function("window.playground.linked === document.getElementById('editor').value")
        link = page.evaluate("location.href")
        other = ctx.new_page()
        other.goto(link)
        _ready(other)
        assert other.input_value("#editor") == FIXED
        other.wait_for_selector("#figure svg [data-op='mul']")
        ctx.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
