"""The SVG says what it draws: every wire, box, mark and panel carries its IR wire, axis, operation,
box path and source line in `class` and `data-` attributes, and the notation's conventions hold."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import diagrammar
from diagrammar.backends.svg import axis_formulas, layout, render_svg, stack_pages, to_svg
from diagrammar.backends.svg.draw import _meaning
from diagrammar.backends.svg.geometry import (
    FOLDABLE,
    PALETTE,
    Circle,
    Text,
    axis_colors,
    drawn_diagrams,
)
from diagrammar.backends.svg.geometry import Path as PathShape

ROOT = Path(__file__).resolve().parent.parent.parent
NS = "{http://www.w3.org/2000/svg}"
# how the shared referee (svg_metrics.py) tells wires and labels
WIRE_WORD = re.compile(r"(?<![A-Za-z0-9])wires?(?![A-Za-z0-9])", re.IGNORECASE)
LABEL_PART = re.compile(r"axis|axes|label", re.IGNORECASE)

FIGURES = [("attention", "SelfAttention"), ("pointer", "Decode"), ("transformer", "Block"),
           ("workspace", "WorkspaceDigits"), ("lstm", "LSTMEncoder")]


def _program(stem: str):
    return diagrammar.load(ROOT / "circuits" / f"{stem}.circuit")


def _svg(stem: str, name: str, **options) -> tuple[object, str]:
    program = _program(stem)
    d = program[name]
    return d, render_svg(d, axis_formulas=axis_formulas(program), **options)


def _elements(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg.encode("utf-8"))
    return [el for el in root.iter() if el.tag in (NS + "path", NS + "circle", NS + "text")]


def _ir_wires(d, prefix: str = "") -> dict[str, tuple[str, ...]]:
    """Every wire's dotted path, nested bodies included, with its axes."""
    out = {prefix + w.name: w.type.names for w in d.wires}
    for b in d.boxes:
        if b.body is not None:
            out.update(_ir_wires(b.body, prefix + b.name + "."))
    return out


def _ir_boxes(d, prefix: str = "") -> dict[str, object]:
    return {prefix + path: box for path, box in d.walk()}


def _drawn_boxes(d, prefix: str = "", inline: int = 0) -> dict[str, tuple[object, bool]]:
    """The boxes a figure draws a shape for: this level's (constants folded into a mark are written
    on it, not drawn), `repeat` bodies always, calls and scans `inline` levels deep; with whether
    the box is drawn expanded."""
    readers: dict[str, list] = {}
    for b in d.boxes:
        for w in b.inputs:
            readers.setdefault(w, []).append(b)
    out = {}
    for b in d.boxes:
        if b.op == "const" and b.outputs[0] not in d.output.wires:
            rs = readers.get(b.outputs[0], [])
            w0 = b.outputs[0]
            if rs and all((r.op in FOLDABLE and len(r.inputs) == 2 and r.inputs.count(w0) == 1) or
                          (r.op == "where" and len(r.inputs) == 3 and r.inputs[0] != w0) for r in rs):
                continue
        expanded = b.body is not None and (b.op == "repeat" or inline > 0)
        out[prefix + b.name] = (b, expanded)
        if expanded:
            out.update(_drawn_boxes(b.body, prefix + b.name + ".", inline if b.op == "repeat" else inline - 1))
    return out


@pytest.mark.parametrize("stem,name", FIGURES, ids=[f"{s}.{n}" for s, n in FIGURES])
@pytest.mark.parametrize("options", [{"depth": 0}, {"depth": None}, {"depth": 1, "inline": True}],
                         ids=["depth0", "definitions", "inline1"])
def test_every_wire_names_an_ir_wire_and_axis(stem, name, options):
    d, svg = _svg(stem, name, **options)
    wires = _ir_wires(d)
    n = 0
    for el in _elements(svg):
        cls = el.get("class", "")
        if el.tag != NS + "path" or not WIRE_WORD.search(cls):
            continue
        if el.get("data-wire") is None and "arrow" in cls:
            continue
        n += 1
        names = (el.get("data-wire") or "").split()
        assert names, f"a wire path without data-wire: {ET.tostring(el)[:160]!r}"
        axis = el.get("data-axis")
        for w in names:
            assert w in wires, f"data-wire {w!r} is not a wire of {name}"
            if wires[w]:
                assert axis in wires[w], f"wire {w} has axes {wires[w]}, the path says {axis!r}"
            else:
                assert axis is None, f"scalar wire {w} drawn with axis {axis!r}"
    assert n > 0


@pytest.mark.parametrize("stem,name", FIGURES, ids=[f"{s}.{n}" for s, n in FIGURES])
@pytest.mark.parametrize("inline", [0, 1])
def test_every_drawn_box_has_a_shape_with_its_path(stem, name, inline):
    d, svg = _svg(stem, name, depth=inline, inline=True)
    by_box: dict[str, list[ET.Element]] = {}
    for el in _elements(svg):
        if el.get("data-box"):
            by_box.setdefault(el.get("data-box"), []).append(el)
    ir = _ir_boxes(d)
    for path in by_box:
        assert path in ir, f"data-box {path!r} is not a box of {name}"
    for path, (box, expanded) in _drawn_boxes(d, inline=inline).items():
        els = by_box.get(path)
        assert els, f"no shape says data-box={path!r} ({box.op})"
        assert all(el.get("data-op") == box.op for el in els if el.get("class") != "annotation")
        if box.span is not None:
            assert all(el.get("data-line") == str(box.span.line) for el in els)
        kinds = {el.get("class", "").split()[0] for el in els}
        assert kinds & {"box", "panel", "paren", "wire", "dot"}, (path, kinds)
        if expanded:
            assert any(el.get("class", "").split()[0] in ("panel", "paren") for el in els), path


def test_boxes_say_their_kind_in_class():
    _, svg = _svg("attention", "SelfAttention", depth=0)
    classes = {el.get("class") for el in _elements(svg) if el.tag == NS + "path"}
    assert "box op-linear" in classes and "box op-softmax" in classes and "box op-rename" in classes
    _, svg = _svg("transformer", "Decoder", depth=1, inline=True)
    panels = [el for el in _elements(svg) if el.get("class", "").split()[0] in ("panel", "paren")]
    assert {el.get("data-op") for el in panels} >= {"repeat", "call"}
    assert all(el.get("data-box") for el in panels)


@pytest.mark.parametrize("stem,name", FIGURES, ids=[f"{s}.{n}" for s, n in FIGURES])
def test_axis_labels_name_their_wire_and_axis(stem, name):
    d, svg = _svg(stem, name, depth=0, one_row=True)
    wires = _ir_wires(d)
    labels = [el for el in _elements(svg) if el.tag == NS + "text" and el.get("class") == "axis"]
    assert labels
    for el in labels:
        assert el.get("data-axis") == el.text
        assert el.get("data-axis") in wires[el.get("data-wire")]


@pytest.mark.parametrize("stem,name", FIGURES, ids=[f"{s}.{n}" for s, n in FIGURES])
def test_the_referee_reads_the_same_wires_and_labels(stem, name):
    """Meaning added to the SVG changes nothing the shared referee counts: the paths whose class
    has the word "wire" are the layout's wires, and no outline, loop, arrow or separator is one."""
    program = _program(stem)
    fig = stack_pages(layout(program[name], depth=None))
    svg = to_svg(fig)
    wire_els = [el for el in _elements(svg) if el.tag == NS + "path" and WIRE_WORD.search(el.get("class", ""))]
    assert len(wire_els) == sum(1 for s in fig.shapes if isinstance(s, PathShape) and s.role == "wire")
    for el in _elements(svg):
        role = el.get("class", "").split()[0]
        if role in ("box", "loop", "arrow", "separator", "panel", "paren", "dot"):
            assert not WIRE_WORD.search(el.get("class", "")), el.get("class")
        if el.tag == NS + "text" and role not in ("axis", "label", "legend"):
            assert not LABEL_PART.search(el.get("class", "")), el.get("class")
    n_labels = sum(1 for s in fig.shapes if isinstance(s, Text) and LABEL_PART.search(s.role)
                   and "legend" not in s.role)
    assert n_labels == sum(1 for el in _elements(svg) if el.tag == NS + "text"
                           and LABEL_PART.search(el.get("class", "")) and "legend" not in el.get("class", ""))


@pytest.mark.parametrize("stem,name", FIGURES, ids=[f"{s}.{n}" for s, n in FIGURES])
def test_rendering_twice_gives_identical_bytes(stem, name):
    a = _svg(stem, name, depth=None)[1]
    b = _svg(stem, name, depth=None)[1]
    assert a.encode("utf-8") == b.encode("utf-8")
    assert 'data-wire="' in a


def test_attributes_in_a_fixed_order_and_escaped():
    meta = (("line", 7), ("box", 'a"b&c'), ("class", "op-x"), ("axis", "d"), ("wire", "x<y"), ("op", "dot"),
            ("class", "op-x extra"))
    assert _meaning("wire", meta) == ('class="wire op-x extra" data-wire="x&lt;y" data-axis="d" data-op="dot" '
                                      'data-box="a&quot;b&amp;c" data-line="7"')
    assert _meaning("dot", ()) == 'class="dot"'
    _, svg = _svg("attention", "SelfAttention", depth=0)
    first = next(line for line in svg.splitlines() if 'data-wire' in line and line.startswith("<path"))
    assert re.match(r'<path class="[^"]*" data-wire="[^"]*" data-axis="[^"]*"( data-op="[^"]*" data-box="[^"]*")?'
                    r'( data-line="\d+")? d="', first), first


def test_wires_carry_the_line_of_the_box_that_made_them():
    d, svg = _svg("attention", "SelfAttention", depth=0)
    made = {w: b.span.line for b in d.boxes for w in b.outputs if b.span is not None}
    seen = 0
    for el in _elements(svg):
        if el.get("class") == "wire" and el.get("data-wire") in made and el.get("data-box") is None:
            assert el.get("data-line") == str(made[el.get("data-wire")])
            seen += 1
    assert seen


# ---------------------------------------------------------------- notation


def test_softmax_points_against_the_flow():
    """Abbott's softmax triangle has its apex on the wire coming in and its flat side to the output."""
    _, svg = _svg("attention", "SelfAttention", depth=0)
    tri = next(el for el in _elements(svg) if el.get("data-op") == "softmax" and el.tag == NS + "path")
    pts = [tuple(map(float, p.split())) for p in re.findall(r"[ML]([-\d.]+ [-\d.]+)", tri.get("d"))]
    apex = min(pts)
    assert sum(1 for p in pts if abs(p[0] - apex[0]) < 0.01) == 1  # one leftmost point: the apex
    ys = sorted(p[1] for p in pts)
    assert abs(apex[1] - (ys[0] + ys[-1]) / 2) < 0.01


def test_contraction_caps_have_an_arrow():
    _, svg = _svg("attention", "SelfAttention", depth=0)
    arrows = [el for el in _elements(svg) if el.get("class", "").startswith("arrow") and el.get("data-op") == "dot"]
    assert {el.get("data-box") for el in arrows} == {"s:dot", "o"}


def test_normalisation_is_a_circle_with_its_letters():
    program = diagrammar.parse("axis seq = 4, d = 8\n"
                               "circuit N(x: [seq, d]) -> [seq, d]:\n"
                               "    return rmsnorm(layernorm(x, over = d), over = d)\n")
    fig = layout(program["N"], depth=0)
    circles = [s for s in fig.shapes if isinstance(s, Circle) and s.role == "box"]
    assert len(circles) == 2
    texts = {s.text for s in fig.shapes if isinstance(s, Text) and s.role == "box"}
    assert {"μσ", "rms"} <= texts
    for b in fig.boxes:
        if b.kind == "norm":
            assert abs(b.w - b.h) < 0.01  # as wide as it is tall: a circle, not a pill
    svg = to_svg(fig)
    assert 'class="box op-layernorm"' in svg and 'class="box op-rmsnorm"' in svg


def test_folded_constants_read_plainly():
    _, svg = _svg("pointer", "Decode", depth=0, one_row=True)
    texts = [el.text for el in _elements(svg) if el.tag == NS + "text"]
    assert "else 0" in texts and not any(t and "? ·" in t for t in texts)
    _, svg = _svg("pointer", "Pointer", depth=0)
    assert "else −∞" in [el.text for el in _elements(svg) if el.tag == NS + "text"]
    _, svg = _svg("workspace", "Workspace", depth=0)
    texts = [el.text for el in _elements(svg) if el.tag == NS + "text"]
    assert "+10⁻⁶" in texts and "×0" in texts


def test_separators_only_between_parts_of_a_tuple():
    """No dashed line between unrelated lanes: attention has no tuple; a residual's skip path is one
    (the copy and its block); pointer.Decode's state tuple and results are."""
    for stem, name, least, most in (("attention", "SelfAttention", 0, 0), ("transformer", "Block", 1, 4),
                                    ("pointer", "Decode", 1, 12)):
        d, svg = _svg(stem, name, depth=0, one_row=True)
        wires = _ir_wires(d)
        seps = [el for el in _elements(svg) if el.get("class") == "separator"]
        assert least <= len(seps) <= most, (name, len(seps))
        for el in seps:
            assert all(w in wires for w in el.get("data-wire").split())


def test_axes_drawn_together_get_different_colours():
    program = _program("workspace")
    d = program["WorkspaceDigits"]
    colors = axis_colors(d, 0)
    assert colors["row"] != colors["col"] and colors["ctl"] != colors["src"]
    assert len(set(colors.values())) == len(colors)  # 8 axes drawn, 12 colours
    assert set(colors.values()) <= set(PALETTE)
    assert axis_colors(d, 0) == colors
    for depth in (1, None):  # more axes than colours: none shares a colour with an axis of its bundle
        colors = axis_colors(d, depth)
        for dd in drawn_diagrams(d, depth):
            for w in dd.wires:
                names = w.type.names
                assert len({colors[a] for a in names}) == len(names), (w.name, names)
    few = axis_colors(d, 0, ("#000000", "#ffffff"))
    assert set(few.values()) == {"#000000", "#ffffff"}
