"""The neural circuit diagram renderer: golden figures, determinism, and properties of the layout."""
from __future__ import annotations

import bisect
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diagrammar
from diagrammar.backends.svg import axis_formulas, render_png, render_svg
from diagrammar.backends.svg.layout import Circle, Path as PathShape, Text, layout, text_width
from diagrammar.backends.svg.page import definitions, stack_pages

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
ZOO = sorted(Path("circuits").glob("*.circuit"))

# (file stem, circuit, depth): figures compared byte for byte
GOLDENS = [
    ("modadd_mlp", "ModAddMLP", 0),
    ("grok_transformer", "GrokTransformer", 0),
    ("grok_transformer", "GrokTransformer", 1),
    ("attention", "SelfAttention", 0),
    ("lstm", "LSTMEncoder", 1),
    ("transformer", "Decoder", 0),
    ("transformer", "Block", 1),
]


def _program(stem: str):
    return diagrammar.load(f"circuits/{stem}.circuit")


def _zoo():
    for path in ZOO:
        program = diagrammar.load(path)
        for name in program:
            yield path.stem, name, program[name]


ZOO_DIAGRAMS = list(_zoo())


# ---------------------------------------------------------------- golden files


@pytest.mark.parametrize("stem,name,depth", GOLDENS, ids=[f"{s}.{n}.d{d}" for s, n, d in GOLDENS])
def test_golden_svg(stem, name, depth, update_golden):
    program = _program(stem)
    svg = render_svg(program[name], depth=depth, axis_formulas=axis_formulas(program))
    golden = GOLDEN / f"{stem}.{name}.depth{depth}.svg"
    failed = GOLDEN / f"_{stem}.{name}.depth{depth}.svg"
    if update_golden:
        golden.write_text(svg, encoding="utf-8", newline="\n")
        failed.unlink(missing_ok=True)
        return
    if not golden.exists():
        failed.write_text(svg, encoding="utf-8", newline="\n")
        pytest.fail(f"no golden file {golden.name}; the figure is in {failed.name} "
                    "(look at it, then run pytest --update-golden)")
    expected = golden.read_text(encoding="utf-8")
    if svg != expected:
        failed.write_text(svg, encoding="utf-8", newline="\n")
        pytest.fail(f"{golden.name} differs; the new figure is in {failed.name} "
                    "(look at both, then run pytest --update-golden if the change is intended)")
    failed.unlink(missing_ok=True)


@pytest.mark.parametrize("stem,name,diagram", ZOO_DIAGRAMS, ids=[f"{s}.{n}" for s, n, _ in ZOO_DIAGRAMS])
def test_rendering_twice_gives_the_same_bytes(stem, name, diagram):
    for depth in (0, 1):
        a = render_svg(diagram, depth=depth)
        b = render_svg(diagram, depth=depth)
        assert a == b
        assert a.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<svg ')


def test_same_bytes_in_a_fresh_interpreter():
    """No dict-order, hash-seed or float-noise dependence: another process, another seed, same SVG."""
    code = ("import diagrammar, sys; from diagrammar.backends.svg import render_svg;"
            "sys.stdout.write(render_svg(diagrammar.load('circuits/grok_transformer.circuit')"
            "['GrokTransformer'], depth=1))")
    here = render_svg(_program("grok_transformer")["GrokTransformer"], depth=1)
    for seed in ("1", "12345"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"})
        assert out.stdout == here


# ---------------------------------------------------------------- properties of the layout


def _overlap(a, b, tol: float = 0.01) -> bool:
    return (a.x < b.x + b.w - tol and b.x < a.x + a.w - tol and
            a.y < b.y + b.h - tol and b.y < a.y + a.h - tol)


def _pairs_overlapping(items):
    """Pairs of rectangles that overlap, by a sweep along x (no all-pairs loop)."""
    items = sorted(items, key=lambda r: r.x)
    xs = [r.x for r in items]
    out = []
    for i, r in enumerate(items):
        j = bisect.bisect_left(xs, r.x + r.w)
        for other in items[i + 1:j]:
            if _overlap(r, other):
                out.append((r, other))
    return out


CONTAINERS = ("panel", "repeat")


def check_layout(diagram, depth: int, inline: bool = False):
    fig = stack_pages(layout(diagram, depth=depth, inline=inline))  # every printed page, one under another
    # every wire of the IR is drawn, each axis as a track that carries its label
    drawn: dict[tuple[str, str], list] = {}
    for t in fig.tracks:
        drawn.setdefault((t.wire, t.axis), []).append(t)
    # what is drawn: inline, the bodies of calls down to `depth`; else each distinct sub-circuit once
    levels = [(diagram, "", depth if inline else 0)]
    if not inline:
        levels += [(body, path + ".", 0) for _, path, body in definitions(diagram, depth)]

    def visit(d, prefix: str, dep: int):
        consts = {b.outputs[0] for b in d.boxes if b.op == "const"}
        read = {w for b in d.boxes for w in b.inputs} | set(d.output.wires)
        unused = {w for b in d.boxes if b.op in ("call", "scan") and not (inline and dep > 0)
                  for w in b.outputs if w not in read}
        for w in d.wires:
            if w.name in consts:
                continue  # a constant operand is written on the operation that uses it
            if w.name in unused:
                continue  # a result of a collapsed block that nothing reads: a port on the block, no wire
            axes = list(w.type.names) or [""]
            for a in axes:
                tracks = drawn.get((prefix + w.name, a))
                assert tracks, f"wire {prefix + w.name} has no track for axis {a!r}"
                for t in tracks:
                    if a:
                        assert t.label >= 0, f"{prefix + w.name}.{a} is not labelled"
                        lb = fig.labels[t.label]
                        assert lb.text == a and abs(lb.line_y - t.y) < 1e-6, (prefix + w.name, a, lb)
        for b in d.boxes:
            if b.body is None:
                continue
            if b.op == "repeat":
                visit(b.body, prefix + b.name + ".", dep)
            elif dep > 0:
                visit(b.body, prefix + b.name + ".", dep - 1)

    for d, prefix, dep in levels:
        visit(d, prefix, dep)
    # every box drawn once, nested ones exactly when expanded
    paths = [b.path for b in fig.boxes]
    assert len(paths) == len(set(paths))
    want = set()

    def expected(d, prefix, dep):
        consts_folded = {b.name for b in d.boxes if b.op == "const"}
        for b in d.boxes:
            if b.name not in consts_folded:
                want.add(prefix + b.name)
            if b.body is not None and (b.op == "repeat" or dep > 0):
                expected(b.body, prefix + b.name + ".", dep if b.op == "repeat" else dep - 1)

    for d, prefix, dep in levels:
        expected(d, prefix, dep)
    assert want <= set(paths) | {p for p in want if p.rsplit(".", 1)[-1] in
                                 {b.name for b in diagram.boxes if b.op == "const"}}
    # boxes do not overlap their siblings, and nested boxes sit inside their panel
    by_parent: dict[str, list] = {}
    for b in fig.boxes:
        by_parent.setdefault(b.parent, []).append(b)
    for parent, boxes in by_parent.items():
        bad = _pairs_overlapping(boxes)
        assert not bad, f"boxes overlap: {bad[:2]}"
    panels = {b.path: b for b in fig.boxes if b.kind in CONTAINERS}
    for b in fig.boxes:
        if b.parent in panels:
            p = panels[b.parent]
            assert p.x <= b.x + 0.01 and b.x + b.w <= p.x + p.w + 0.01, (b, p)
            assert p.y <= b.y + 0.01 and b.y + b.h <= p.y + p.h + 0.01, (b, p)
    # labels overlap neither each other nor any box
    labels = [lb for lb in fig.labels]
    bad = _pairs_overlapping(labels)
    assert not bad, f"labels overlap: {bad[:2]}"
    solid = [b for b in fig.boxes if b.kind not in CONTAINERS]
    mixed = _pairs_overlapping(labels + solid)
    bad = [(a, b) for a, b in mixed if (hasattr(a, "text")) != (hasattr(b, "text"))]
    assert not bad, f"a label overlaps a box: {bad[:2]}"
    # everything inside the canvas
    for s in fig.shapes:
        if isinstance(s, Text):
            assert 0 <= s.x <= fig.width and 0 <= s.y <= fig.height
        elif isinstance(s, Circle):
            assert 0 <= s.cx <= fig.width and 0 <= s.cy <= fig.height
    return fig


@pytest.mark.parametrize("stem,name,diagram", ZOO_DIAGRAMS, ids=[f"{s}.{n}" for s, n, _ in ZOO_DIAGRAMS])
@pytest.mark.parametrize("depth", [0, 1, 3])
def test_zoo_layout_properties(stem, name, diagram, depth):
    check_layout(diagram, depth)


@pytest.mark.parametrize("stem,name,diagram", ZOO_DIAGRAMS, ids=[f"{s}.{n}" for s, n, _ in ZOO_DIAGRAMS])
def test_zoo_layout_properties_inline(stem, name, diagram):
    check_layout(diagram, 1, inline=True)


def test_depth_expands_nested_boxes():
    d = _program("transformer")["Decoder"]
    flat = {b.path for b in layout(d, depth=0, inline=True).boxes}
    one = {b.path for b in layout(d, depth=1, inline=True).boxes}
    two = {b.path for b in layout(d, depth=2, inline=True).boxes}
    assert "repeat.x" in flat and not any(p.startswith("repeat.x.") for p in flat)
    attn = "repeat.x.causal_self_attention"
    assert attn in one and not any(p.startswith(attn + ".") for p in one)
    assert attn + ".q" in two
    assert {b.kind for b in layout(d, depth=1, inline=True).boxes if b.path == "repeat.x"} == {"panel"}


def test_depth_draws_each_sub_circuit_once_as_a_definition():
    """By default a call's body is drawn once, below the figure, after a heading "Name =" (Abbott's U-Net)."""
    d = _program("transformer")["Decoder"]
    one = layout(d, depth=1)
    heads = [b.path for b in one.boxes if b.kind == "definition"]
    assert heads == ["=Block"]
    block = [b for b in one.boxes if b.parent == "repeat.x"]  # the body, drawn with the first call's path
    assert block and all(b.kind != "panel" for b in one.boxes)
    everything = layout(d, depth=None)
    names = [b.path for b in everything.boxes if b.kind == "definition"]
    assert names == ["=Block", "=CausalSelfAttention", "=FeedForward"]
    assert len(names) == len(set(names))  # drawn once, however often it is called


def test_boxes_cover_only_consumed_wires():
    """linear(x, d -> h) on [seq, d]: the box spans the d and h rows; seq runs past it."""
    d = diagrammar.parse("axis seq = 3, d = 4, h = 5\n"
                         "circuit F(x: [seq, d]) -> [seq, h]:\n    return linear(x, d -> h)\n")["F"]
    fig = layout(d)
    box = next(b for b in fig.boxes if b.op == "linear")
    seq = [t for t in fig.tracks if t.axis == "seq"]
    assert seq and all(not (box.y < t.y < box.y + box.h) for t in seq)
    assert any(t.x0 <= box.x and t.x1 >= box.x + box.w for t in seq), "seq should run past the box"
    for axis in ("d", "h"):
        assert any(box.y < t.y < box.y + box.h for t in fig.tracks if t.axis == axis)


def test_one_colour_per_axis_and_a_legend():
    program = _program("grok_transformer")
    fig = layout(program["GrokTransformer"], axis_formulas=axis_formulas(program))
    colours: dict[str, set] = {}
    for s in fig.shapes:
        if isinstance(s, Text) and s.role == "axis":
            colours.setdefault(s.text, set()).add(s.color)
    assert colours and all(len(c) == 1 for c in colours.values())
    assert len({next(iter(c)) for c in colours.values()}) == len(colours)
    legend = {name: text for name, text, _ in fig.legend}
    assert legend["d"] == "d = 128" and legend["p"] == "p = 113"
    program = _program("attention")
    legend = {n: t for n, t, _ in layout(program["SelfAttention"], axis_formulas=axis_formulas(program)).legend}
    assert legend["dk"] == "dk = d // heads = 16"


def test_notation_marks():
    """Copy dots, + junctions, softmax triangles, a xN repeat and a dashed skip path are all drawn."""
    fig = layout(_program("transformer")["Block"])
    roles = {getattr(s, "role", "") for s in fig.shapes}
    assert {"dot", "separator", "box", "axis", "wire"} <= roles
    assert any(isinstance(s, Text) and s.text == "+" for s in fig.shapes)
    dec = layout(_program("transformer")["Decoder"])
    assert any(isinstance(s, Text) and s.text == "×4" for s in dec.shapes)
    att = layout(_program("attention")["SelfAttention"])
    assert any(isinstance(s, Text) and s.text == "÷√dk" for s in att.shapes)  # the scale, on the arrow
    kinds = {b.kind for b in att.boxes}
    assert {"soft", "contract", "bar", "box"} <= kinds
    lstm = layout(_program("lstm")["LSTMEncoder"])
    assert any(s.role == "loop" for s in lstm.shapes if isinstance(s, PathShape))


def test_annotations_are_drawn_beside_their_boxes():
    d = _program("grok_transformer")["GrokTransformer"]
    fig = check_layout(d, 0) and layout(d, annotations={"linear": "12 kFLOP", "attention": "64k params"})
    notes = {lb.text: lb for lb in fig.labels if lb.kind == "annotation"}
    assert set(notes) == {"12 kFLOP", "64k params"}
    box = next(b for b in fig.boxes if b.path == "linear")
    note = notes["12 kFLOP"]
    assert note.y >= box.y + box.h - 0.01 and abs((note.x + note.w / 2) - (box.x + box.w / 2)) < 1
    assert not _pairs_overlapping([lb for lb in fig.labels])


def test_text_widths_are_fixed_metrics():
    assert text_width("mlp", 10) == text_width("mlp", 10)
    assert text_width("W", 10) > text_width("i", 10)
    assert text_width("L", 11, bold=True) > text_width("L", 11)


def test_png_and_repr_svg():
    d = _program("mlp")["ResidualMLP"]
    png = render_png(d)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert d._repr_svg_() == render_svg(d)


def test_importing_the_renderer_does_not_import_jax():
    code = ("import sys, diagrammar; from diagrammar.backends.svg import render_svg;"
            "import diagrammar.backends.tikz, diagrammar.cli.render, diagrammar.cli.gallery;"
            "render_svg(diagrammar.load('circuits/mlp.circuit')['MLP']);"
            "print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- generated circuits

AXES = {"a": 4, "b": 5, "c": 6, "k": 4}


def _program_text(choices: list[int]) -> str:
    """A random but well-typed circuit: choices drive which operation comes next."""
    vars_: list[tuple[str, tuple[str, ...]]] = [("x", ("a", "b"))]
    lines = []
    for i, ch in enumerate(choices):
        name, axes = vars_[ch % len(vars_)]
        op = (ch // 7) % 9
        new = f"v{i}"
        others = [a for a in AXES if a not in axes]
        if op == 0:
            lines.append(f"{new} = relu({name})")
            t = axes
        elif op == 1 and others:
            src, dst = axes[ch % len(axes)], others[ch % len(others)]
            lines.append(f"{new} = linear({name}, {src} -> {dst})")
            t = tuple(dst if a == src else a for a in axes)
        elif op == 2:
            lines.append(f"{new} = softmax({name}, over = {axes[-1]})")
            t = axes
        elif op == 3 and len(axes) > 1:
            lines.append(f"{new} = sum({name}, over = {axes[0]})")
            t = axes[1:]
        elif op == 4:
            same = [n for n, ax in vars_ if set(ax) == set(axes) and n != name]
            if not same:
                continue
            lines.append(f"{new} = {name} + {same[ch % len(same)]}")
            t = axes
        elif op == 5:
            lines.append(f"{new} = layernorm({name}, over = {axes[0]})")
            t = axes
        elif op == 6 and "a" in axes and "k" not in axes:
            lines.append(f"{new} = rename({name}, a -> k)")
            t = tuple("k" if a == "a" else a for a in axes)
        elif op == 7 and others:
            lines.append(f"{new} = linear({name}, {axes[0]} -> ({axes[0]}, {others[0]}))")
            t = axes + (others[0],)
        elif op == 8 and len(axes) > 1:
            same = [n for n, ax in vars_ if set(ax) == set(axes)]
            lines.append(f"{new} = dot({name}, {same[ch % len(same)]}, over = {axes[-1]})")
            t = axes[:-1]
        else:
            continue
        vars_.append((new, t))
    name, axes = vars_[-1]
    head = "axis " + ", ".join(f"{a} = {n}" for a, n in AXES.items())
    body = "\n".join("    " + ln for ln in lines + [f"return {name}"])
    return f"{head}\ncircuit G(x: [a, b]) -> [{', '.join(axes)}]:\n{body}\n"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=14))
def test_generated_circuits_keep_the_layout_properties(choices):
    text = _program_text(choices)
    d = diagrammar.parse(text)["G"]
    check_layout(d, 0)
    assert render_svg(d) == render_svg(d)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=8))
def test_generated_sub_circuits_expand(choices):
    inner = _program_text(choices).replace("circuit G(", "circuit Inner(")
    head, _, rest = inner.partition("\n")
    out_axes = rest.split("-> [", 1)[1].split("]", 1)[0]
    text = (inner + f"\ncircuit Outer(x: [a, b]) -> [{out_axes}]:\n    y = Inner(x)\n    return y\n")
    d = diagrammar.parse(text)["Outer"]
    one = check_layout(d, 1)
    assert any(b.path.startswith("y.") for b in one.boxes) or not diagrammar.parse(text)["Inner"].boxes


# ---------------------------------------------------------------- every kind of operation

KITCHEN_SINK = """\
axis h = 8, w = 8, h2 = 4, w2 = 4, c = 3, cout = 16, hw = h2 * w2, k = 5, e = 2, f = 8, fe = f * e, g = 10, two = 2, s = 4, s2 = 8

circuit Vision(img: [h, w, c]) -> [g]:
    y = relu(conv(img, over = (h, w), kernel = (3, 3), c -> cout))
    z = pool(y, over = (h, w) -> (h2, w2), window = (2, 2), op = max)
    q = conv(y, over = (h, w) -> (h2, w2), kernel = (3, 3), cout -> cout, stride = 2)
    m = merge(z + q, (h2, w2) -> hw)
    v = mean(m, over = hw)
    return linear(v, cout -> g)

circuit Shapes(x: [f, e], t: int[k], y: [s], z: [s]) -> [k, g]:
    a = split(merge(x, (f, e) -> fe), fe -> (f, e))
    b = einsum(a, x, -> [f])
    cat = concat(y, z, along = s -> s2)
    p = gather(b, argmax(onehot(t, f), over = f), along = f)
    u = stack(p, p, along = two)
    r = sum(cat, over = s2) + sum(u, over = two)
    return linear(onehot(t, g) * r, g -> g) + exp(-r)
"""


@pytest.mark.parametrize("name", ["Vision", "Shapes"])
@pytest.mark.parametrize("depth", [0, 1])
def test_every_operation_lays_out(name, depth):
    program = diagrammar.parse(KITCHEN_SINK)
    fig = check_layout(program[name], depth)
    ops = {b.op for b in fig.boxes}
    if name == "Vision":
        assert {"conv", "pool", "merge", "mean", "linear", "relu", "add"} <= ops
        strided = [s for s in fig.shapes if isinstance(s, PathShape) and s.role == "box"
                   and len(s.cmds) == 5 and s.cmds[1][2] != s.cmds[0][2]]
        assert strided, "a strided convolution is drawn as a trapezoid"
    else:
        assert {"merge", "split", "einsum", "concat", "gather", "argmax", "onehot", "stack", "sum", "neg",
                "exp", "mul", "add"} <= ops


SCALAR_CALL = """axis d = 4
circuit Norm2(x: [d]) -> []:
    return dot(x, x, over = d)
circuit Outer(x: [d]) -> [d]:
    return x * Norm2(x)
"""


@pytest.mark.parametrize("inline", [False, True])
@pytest.mark.parametrize("depth", [0, 1])
def test_an_expanded_call_that_returns_a_scalar_is_drawn(depth, inline):
    """`render --depth 1` raised `min() arg is an empty sequence` when a body contracted to a scalar."""
    d = diagrammar.parse(SCALAR_CALL)["Outer"]
    fig = check_layout(d, depth, inline=inline)
    assert [t.axis for t in fig.tracks if t.wire == "out:norm2"] == [""]  # the call's scalar result
    if depth:
        assert [t.axis for t in fig.tracks if t.wire == "out.out"] == [""]  # the body's own, the contraction's


MULTI_HEAD = """axis seq = 16, key = seq
axis d = 64, heads = 4, dk = d // heads
circuit Head(q: [seq, dk], k: [key, dk], v: [key, dk]) -> [seq, dk]:
    a = softmax(dot(q, k, over = dk) / sqrt(dk), over = key)
    return dot(a, v, over = key)
circuit MultiHead(x: [seq, d]) -> [seq, d]:
    q = linear(x, d -> (heads, dk))
    k = rename(linear(x, d -> (heads, dk)), seq -> key)
    v = rename(linear(x, d -> (heads, dk)), seq -> key)
    return linear(Head(q, k, v), (heads, dk) -> d)
"""


def test_a_call_broadcast_over_heads_keeps_the_head_wires_outside_its_panel():
    """One head broadcast over `heads`: every input's heads wire joins the one that runs past the panel
    (Abbott's shared head index), none ends inside it, and the panel stays clear of them."""
    d = diagrammar.parse(MULTI_HEAD)["MultiHead"]
    fig = check_layout(d, 1, inline=True)
    panel = next(b for b in fig.boxes if b.kind == "panel")
    heads = [t for t in fig.tracks if t.axis == "heads" and not t.parent]
    past = [t for t in heads if t.x1 > panel.x + panel.w]  # the result's, running past the panel
    assert [t.wire for t in past] == ["out:head"] and past[0].y < panel.y
    for t in heads:
        assert not (panel.x < t.x1 < panel.x + panel.w and panel.y < t.y < panel.y + panel.h), t
    ends = [t for t in heads if t.wire in ("k", "v")]
    assert ends and all(t.x1 <= panel.x + 0.01 for t in ends)
    assert not [t for t in fig.tracks if t.parent == "out:head" and t.axis == "heads"]  # the body never sees it


def test_a_box_over_a_bundle_whose_tracks_are_not_in_axis_order():
    """`linear(v, c -> (c, a))` on a bundle laid out (b below c) in another order than its axes (b, c):
    the new axis `a` was drawn on top of the passing `b` (found by the generated-circuit property test)."""
    d = diagrammar.parse("axis a = 4, b = 5, c = 6\n"
                         "circuit G(x: [a, b]) -> [c, b, a]:\n"
                         "    v = relu(linear(x, a -> c))\n"
                         "    return linear(v, c -> (c, a))\n")["G"]
    fig = check_layout(d, 0)
    out = {t.axis: t.y for t in fig.tracks if t.wire == "out" and t.x1 - t.x0 > 1}
    assert len(set(out.values())) == len(out) == 3, out


# ---------------------------------------------------------------- a figure taller than a page

def test_a_figure_taller_than_a_page_continues_on_the_next():
    program = _program("workspace")
    d = program["WorkspaceDigits"]
    fig = layout(d, depth=1, axis_formulas=axis_formulas(program))
    assert len(fig.pages) == 1
    second = fig.pages[0]
    titles = [[t.text for t in page.shapes if isinstance(t, Text) and t.role == "title" and t.text != "="]
              for page in (fig, second)]
    assert titles[1] == ["WorkspaceDigits (continued)"] and titles[0][0].startswith("WorkspaceDigits(")
    # each page fits: at most 9 in tall printed 6.5 in wide
    for page in (fig, second):
        assert page.height * 6.5 / page.width <= 9.0
    # every definition is on exactly one page, and each page's legend lists the axes it draws
    heads = [[b.path for b in page.boxes if b.kind == "definition"] for page in (fig, second)]
    assert sorted(heads[0] + heads[1]) == sorted("=" + t for t, _, _ in definitions(d, 1))
    assert not set(heads[0]) & set(heads[1])
    for page in (fig, second):
        drawn = {t.axis for t in page.tracks if t.axis}
        assert drawn <= {name for name, _, _ in page.legend}
    # one page on request, the same content
    one = layout(d, depth=1, axis_formulas=axis_formulas(program), paged=False)
    assert not one.pages and one.height * 6.5 / one.width > 9.0
    assert sorted(b.path for b in one.boxes) == sorted(b.path for b in stack_pages(fig).boxes)


def test_pages_are_written_one_document_each_and_stacked_for_the_screen():
    from diagrammar.backends.svg import render_pages, to_svg_pages
    program = _program("workspace")
    d = program["WorkspaceDigits"]
    pages = render_pages(d, depth=1, axis_formulas=axis_formulas(program))
    assert len(pages) == 2 and all(p.startswith("<?xml") and p.count("<svg ") == 1 for p in pages)
    assert "WorkspaceDigits (continued)" in pages[1] and "WorkspaceDigits (continued)" not in pages[0]
    whole = render_svg(d, depth=1, axis_formulas=axis_formulas(program))
    assert whole.count("<svg ") == 1 and "WorkspaceDigits (continued)" in whole
    fig = layout(d, depth=1, axis_formulas=axis_formulas(program))
    assert to_svg_pages(fig) == pages
    # a figure that fits is one page, as before
    small = layout(program["Increment"], depth=0)
    assert small.pages == [] and len(to_svg_pages(small)) == 1


def test_a_generic_circuit_drawn_once_names_the_bindings_it_stands_for():
    def caption(stem, name, title):
        fig = layout(_program(stem)[name], depth=1)
        return " ".join(t.text for t in fig.shapes if isinstance(t, Text) and t.role == "caption")

    mlp = caption("mixer", "MixerBlock", "Mlp")  # called twice: both bindings written out
    assert "hidden = tokens_mlp;" in mlp and "hidden = channels_mlp" in mlp
    unet = caption("unet", "UNet", "Down")  # four bindings: the first, and how many more
    assert "and 3 more bindings" in unet


def test_a_slice_with_a_long_start_writes_it_once():
    d = diagrammar.parse("axis p = 10, a = 2, b = 3\n"
                         "circuit F(x: [p]) -> [b]:\n    return slice(x, p -> b, a + 1)\n")["F"]
    texts = [t.text for t in layout(d).shapes if isinstance(t, Text)]
    assert "[a+1:+b]" in texts
