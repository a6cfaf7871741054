"""The graphviz view: golden DOT text, structure read back from the text, and `render_dot`."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import diagrammar
from diagrammar.backends import dot as dot_backend
from diagrammar.backends.dot import GraphvizNotFound, render_dot, to_dot, to_graphviz
from diagrammar.cli import main

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
ZOO = Path("circuits")
HAS_DOT = shutil.which("dot") is not None

# (file, circuit, depth): one of each kind of block, collapsed and expanded
GOLDEN_CASES = [
    ("modadd_mlp", "ModAddMLP", 0),
    ("grok_transformer", "GrokTransformer", 0),
    ("grok_transformer", "GrokTransformer", 1),
    ("lstm", "LSTMEncoder", 1),
    ("transformer", "Decoder", 0),
    ("transformer", "Decoder", 2),
]

# every operation the summaries know, in one program
ALL_OPS = """\
axis h = 8, w = 8, h2 = 4, w2 = 4, c = 3, k = 5, two = 2, hw = h2 * w2, t = 6, both = 2 * t
axis d = 4, key = t

circuit Step(s: [d], x: [d]) -> ([d], [d]):
    s2 = tanh(s + x)
    return s2, s2

circuit Ops(img: [h, w, c], i: int[key], xs: [t, d], q: [t, d]) -> [both, d]:
    y = conv(img, over = (h, w), kernel = (3, 3), c -> k, padding = same)
    z = conv(y, over = (h, w) -> (h2, w2), kernel = (2, 2), k -> k, stride = 2, padding = valid, bias = false)
    p = pool(y, over = (h, w) -> (h2, w2), window = (2, 2), op = mean)
    m = merge(z + p, (h2, w2) -> hw)
    s = split(m, hw -> (h2, w2))
    r = rmsnorm(mean(s, over = (h2, w2)), over = k)
    g = gather(xs, i, along = t)
    kk = rename(q, t -> key)
    ee = einsum(xs, kk, -> [t, key])
    a = softmax(where(ee > 0, ee, -inf), over = key)
    u = dot(a, g, over = key)
    f, ys = scan(Step, u, along = t, init = take(xs, t, 0))
    cat = concat(ys, u * 2 - 1, along = t -> both)
    o = stack(cat, -cat, along = two)
    n = sum(o, over = two) / sqrt(d) + sum(r)
    l = log_softmax(n, over = d) + onehot(argmax(n, over = d), d) + dropout(n, 0.5)
    return maximum(l, minimum(abs(l), square(exp(l))))
"""


def _zoo(stem: str, name: str):
    return diagrammar.load(ZOO / f"{stem}.circuit")[name]


def _golden_path(stem: str, name: str, depth: int) -> Path:
    return GOLDEN / f"{stem}.{name}.depth{depth}.dot"


@pytest.mark.parametrize("stem,name,depth", GOLDEN_CASES, ids=[f"{n}-d{d}" for _, n, d in GOLDEN_CASES])
def test_golden_dot(stem, name, depth, update_golden):
    actual = to_dot(_zoo(stem, name), depth=depth).encode("utf-8")
    path = _golden_path(stem, name, depth)
    if update_golden or not path.exists():
        if not update_golden:
            pytest.fail(f"no golden file {path}; create it with DIAGRAMMAR_UPDATE_GOLDEN=1 (or --update-golden)")
        path.write_bytes(actual)
    assert actual == path.read_bytes(), (
        f"{path.name} differs from to_dot's output; if the change is intended, rerun with "
        "DIAGRAMMAR_UPDATE_GOLDEN=1 and review the diff")


def test_same_input_same_bytes():
    one = [to_dot(_zoo(s, n), depth=d) for s, n, d in GOLDEN_CASES]
    two = [to_dot(_zoo(s, n), depth=d) for s, n, d in GOLDEN_CASES]
    assert one == two


# ---------------------------------------------------------------- structure, read back from the text

NODE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" \[')
EDGE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" -> "((?:[^"\\]|\\.)*)" \[label="((?:[^"\\]|\\.)*)"(.*)\];$')


def _parse(text: str):
    nodes, edges = [], []
    for line in text.splitlines():
        m = EDGE.match(line)
        if m:
            edges.append((m[1], m[2], m[3], "constraint=false" in m[4]))
            continue
        m = NODE.match(line)
        if m:
            nodes.append(m[1])
    return nodes, edges


def _all_zoo():
    out = []
    for path in sorted(ZOO.glob("*.circuit")):
        program = diagrammar.load(path)
        out.extend((path.stem, name) for name in program if program[name].span.file == program.file)
    return out


@pytest.mark.parametrize("stem,name", _all_zoo())
@pytest.mark.parametrize("depth", [0, 1, 5])
def test_every_box_and_wire_use_is_drawn(stem, name, depth):
    d = _zoo(stem, name)
    nodes, edges = _parse(to_dot(d, depth=depth))
    assert len(nodes) == len(set(nodes)), "node ids are unique"
    assert {a for a, *_ in edges} | {b for _, b, *_ in edges} <= set(nodes), "every edge joins declared nodes"
    if depth == 0:
        # one node per box and per input and result wire; one edge per use of a wire
        assert [n for n in nodes if n[0] not in "<>"] == [b.name for b in d.boxes]
        uses = sum(len(b.inputs) for b in d.boxes) + len(d.output.wires)
        assert len(edges) == uses
        assert not any(carry for *_, carry in edges)
        types = {w.name: str(w.type) for w in d.wires}
        assert sorted(label for _, _, label, _ in edges) == sorted(
            [types[w] for b in d.boxes for w in b.inputs] + [types[w] for w in d.output.wires])


@pytest.mark.parametrize("stem,name", _all_zoo())
def test_fully_expanded_view_names_every_weight(stem, name):
    d = _zoo(stem, name)
    text = to_dot(d, depth=10)
    for dotted, weight, _copies in d.weights():
        assert f"{dotted} {weight.type}" in text


def test_repeat_collapsed_is_marked_and_expanded_is_a_cluster():
    d = _zoo("transformer", "Decoder")
    collapsed = to_dot(d)
    assert "<B>Block \u00d74</B>" in collapsed and "shape=box3d" in collapsed
    assert "subgraph" not in collapsed
    expanded = to_dot(d, depth=1)
    assert 'subgraph "cluster_repeat.x" {' in expanded
    assert 'subgraph "cluster_repeat.x.causal_self_attention"' not in expanded  # depth 1 stops there
    _, edges = _parse(expanded)
    assert [(a, b) for a, b, _, carry in edges if carry] == [("repeat.x.<return", "repeat.x.>x")]
    assert 'subgraph "cluster_repeat.x.causal_self_attention" {' in to_dot(d, depth=2)


def test_scan_expanded_feeds_its_state_back():
    d = _zoo("lstm", "LSTMEncoder")
    assert "<B>scan LSTMCell along t</B>" in to_dot(d)
    _, edges = _parse(to_dot(d, depth=1))
    carries = [(a, b, label) for a, b, label, carry in edges if carry]
    assert carries == [("lstm_cell.<return.0", "lstm_cell.>state.0", "[h]"),
                       ("lstm_cell.<return.1", "lstm_cell.>state.1", "[h]")]
    # outside the step the sequence keeps its axis; inside, the step sees one element
    assert (">xs", "lstm_cell.>x", "[t, d]", False) in edges
    assert ("lstm_cell.>x", "lstm_cell.linear", "[d]", False) in edges


def test_learned_boxes_show_weight_names_and_shapes():
    text = to_dot(_zoo("modadd_mlp", "ModAddMLP"))
    assert "<B>linear</B> (arg, p) -&gt; hidden" in text
    assert "h.W [arg, p, hidden]" in text and "h.b [hidden]" in text
    assert '">a" -> "x:onehot" [label="int[]"]' in text


def test_calls_name_their_axis_arguments():
    d = _zoo("mlp", "ResidualMLP")
    assert "<B>MLP[hidden = 256]</B><BR/>" in to_dot(d)
    assert 'subgraph "cluster_out" {' in to_dot(d, depth=1) and "out.out.W [hidden, d]" in to_dot(d, depth=1)


def test_every_operation_has_a_valid_label():
    d = diagrammar.parse(ALL_OPS)["Ops"]
    text = to_dot(d, depth=1)
    for fragment in ("conv</B> 3x3 over (h, w), c -&gt; k", "2x2 over (h, w) -&gt; (h2, w2) stride 2x2, k -&gt; k",
                     "pool mean 2x2 over (h, w) -&gt; (h2, w2)", "merge (h2, w2) -&gt; hw",
                     "split hw -&gt; (h2, w2)", "gather along t", "rename t -&gt; key", "einsum -&gt; [t, key]",
                     "softmax over key", "dot over key", "concat along t -&gt; both", 'label="-x"', "stack along two",
                     "take t[0]", "argmax over d", "onehot d", "dropout 0.5", 'label="-inf"', 'label="sqrt(d)"',
                     "sum over k", "3x3 over (h, w), c", 'label=">"', "scan Step along t"):
        assert fragment in text, fragment
    if HAS_DOT:
        subprocess.run(["dot", "-Tcanon"], input=text.encode(), check=True, capture_output=True)


def test_names_that_need_quoting_are_quoted():
    assert dot_backend._q('a"b\\c') == '"a\\"b\\\\c"'
    assert dot_backend._esc("<x & y>") == "&lt;x &amp; y&gt;"
    with pytest.raises(ValueError, match="depth"):
        to_dot(_zoo("mlp", "MLP"), depth=-1)


def test_does_not_import_jax():
    code = ("import sys, diagrammar; from diagrammar.backends.dot import to_dot; "
            "to_dot(diagrammar.load('circuits/transformer.circuit')['Decoder'], depth=3); "
            "bad = [m for m in ('jax', 'flax', 'graphviz') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- render_dot


@pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot is not installed")
def test_render_dot_makes_svg_and_png():
    d = _zoo("grok_transformer", "GrokTransformer")
    svg = render_dot(d, "svg", depth=1)
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    assert b"Attention" in svg and b"attention.q.W" in svg
    png = render_dot(d, fmt="png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_render_dot_without_the_dot_program_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # graphviz runs `dot` from PATH: here there is none
    with pytest.raises(GraphvizNotFound) as info:
        render_dot(_zoo("mlp", "MLP"), "png")
    message = str(info.value)
    assert "apt-get install graphviz" in message and "brew install graphviz" in message
    assert "to_dot()" in message
    assert isinstance(info.value, RuntimeError)


def test_without_the_graphviz_package_the_text_still_works_and_images_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # import graphviz now fails, as when not installed
    d = _zoo("mlp", "MLP")
    assert to_dot(d).startswith("digraph")
    for make in (lambda: to_graphviz(d), lambda: render_dot(d, "svg")):
        with pytest.raises(GraphvizNotFound, match=r"pip install graphviz"):
            make()


def test_to_graphviz_is_a_source_of_the_same_text():
    graphviz = pytest.importorskip("graphviz")
    d = _zoo("grok_transformer", "GrokTransformer")
    source = to_graphviz(d, depth=1)
    assert isinstance(source, graphviz.Source)
    assert source.source == to_dot(d, depth=1) and source.engine == "dot"
    assert hasattr(source, "_repr_mimebundle_")  # a notebook draws it (through dot)


def test_render_dot_rejects_unknown_formats():
    with pytest.raises(ValueError, match="svg, png, pdf"):
        render_dot(_zoo("mlp", "MLP"), "gif")


@pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot is not installed")
def test_render_dot_reports_a_failing_dot(monkeypatch):
    monkeypatch.setattr(dot_backend, "to_dot", lambda d, depth=0: "digraph { this is not dot")
    with pytest.raises(RuntimeError, match="dot failed"):
        render_dot(_zoo("mlp", "MLP"))


# ---------------------------------------------------------------- render --dot


@pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot is not installed")
@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".png", b"\x89PNG"), (".pdf", b"%PDF")])
def test_render_dot_option_writes_the_image_graphviz_lays_out(tmp_path, suffix, magic):
    out = tmp_path / f"grok{suffix}"
    assert main(["render", "circuits/grok_transformer.circuit", "--dot", "--depth", "1", "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(magic)
    if suffix == ".svg":  # the dataflow view (weights by name), not the circuit diagram
        assert b"attention.q.W" in data and b'class="graph"' in data


def test_render_dot_option_with_a_dot_file_writes_the_text(tmp_path, capsys):
    out = tmp_path / "mlp.dot"
    assert main(["render", "circuits/mlp.circuit", "--circuit", "MLP", "--dot", "--depth", "1", "-o", str(out)]) == 0
    assert out.read_text() == to_dot(_zoo("mlp", "MLP"), depth=1)
    assert main(["render", "circuits/mlp.circuit", "--circuit", "MLP", "--dot", "--depth", "1", "-o", "-"]) == 0
    assert capsys.readouterr().out == out.read_text()


def test_render_dot_option_refuses_what_graphviz_does_not_write(tmp_path, capsys):
    assert main(["render", "circuits/mlp.circuit", "--dot", "-o", str(tmp_path / "f.tex")]) == 2
    assert "--dot writes .dot, .svg, .png, .pdf" in capsys.readouterr().err
    assert main(["render", "circuits/mlp.circuit", "-o", str(tmp_path / "f.pdf")]) == 2
    assert "(.pdf with --dot)" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_render_dot_option_without_the_dot_program_exits_2_saying_how_to_install(tmp_path):
    code = "import sys; from diagrammar.cli import main; sys.exit(main(sys.argv[1:]))"
    out = tmp_path / "f.svg"
    proc = subprocess.run([sys.executable, "-c", code, "render", "circuits/mlp.circuit", "--dot", "-o", str(out)],
                          env={**os.environ, "PATH": str(tmp_path)}, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "diagrammar render: error: --dot .svg:" in proc.stderr and "apt-get install graphviz" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
