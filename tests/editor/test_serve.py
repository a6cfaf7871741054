"""`diagrammar serve` without a browser: the state it serves, the long poll, the figure, file changes."""
import json
import threading
import time
import urllib.request

import pytest

from diagrammar.serve import Preview, make_server

GOOD = "axis d = 8, h = 16\n\ncircuit Mlp(x: [d]) -> [d]:\n    return linear(relu(linear(x, d -> h)), h -> d)\n"
BAD = GOOD.replace("h -> d)\n", "h -> h)\n")


@pytest.fixture
def server(tmp_path):
    f = tmp_path / "m.circuit"
    f.write_text(GOOD)
    preview = Preview(str(f))
    httpd = make_server(preview, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    yield f, preview, f"http://127.0.0.1:{httpd.server_address[1]}"
    preview.stop()
    httpd.shutdown()
    httpd.server_close()


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type"), r.read()


def test_state_figure_and_page(server):
    f, preview, url = server
    status, ctype, body = get(url + "/")
    assert status == 200 and ctype.startswith("text/html") and b"diagrammar serve" in body
    state = json.loads(get(url + "/state?since=0")[2])
    assert state["version"] == 1 and state["diagnostics"] == []
    (c,) = state["circuits"]
    assert c["name"] == "Mlp" and c["ok"] and c["parameters"] == "280" and int(c["flops"].replace(",", "")) > 0
    status, ctype, svg = get(url + "/figure?circuit=Mlp&depth=all")
    assert ctype == "image/svg+xml" and b'data-line="4"' in svg
    with pytest.raises(urllib.error.HTTPError):
        get(url + "/figure?circuit=Nope")


def test_a_save_wakes_the_long_poll_with_the_errors(server):
    f, preview, url = server
    preview.watch()
    result = {}

    def wait():
        t = time.perf_counter()
        result["state"] = json.loads(get(url + "/state?since=1", timeout=30)[2])
        result["seconds"] = time.perf_counter() - t

    th = threading.Thread(target=wait)
    th.start()
    time.sleep(0.3)
    saved = time.perf_counter()
    f.write_text(BAD)
    th.join(10)
    state = result["state"]
    assert state["version"] == 2 and time.perf_counter() - saved < 1.5
    (d,) = state["diagnostics"]
    assert d["line"] == 4 and d["code"] == "ShapeMismatch" and d["hint"]
    assert not state["circuits"][0]["ok"]


def test_an_unreadable_file_is_an_error_on_the_page_not_a_crash(server):
    f, preview, url = server
    f.write_bytes(b"\xff\xfe not utf-8")
    preview.poll_once()
    state = json.loads(get(url + "/state?since=1")[2])
    assert state["diagnostics"][0]["code"] == "UnusableFile"


def test_lsp_without_pygls_names_the_extra(monkeypatch, capsys):
    import importlib.util

    from diagrammar import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pygls" else real(name, *a))
    assert cli.main(["lsp"]) == 2
    assert "pip install 'diagrammar[lsp]'" in capsys.readouterr().err


def test_serve_refuses_a_missing_file_and_a_taken_port(tmp_path, capsys):
    import socket

    from diagrammar import cli

    assert cli.main(["serve", str(tmp_path / "nope.circuit")]) == 2
    assert "no such file" in capsys.readouterr().err
    f = tmp_path / "m.circuit"
    f.write_text(GOOD)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert cli.main(["serve", str(f), "--port", str(s.getsockname()[1])]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
