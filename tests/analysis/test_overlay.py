"""Overlays: named boxes and wires take the colour their value maps to, with a colour bar; geometry unchanged."""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import pytest

import diagrammar
from diagrammar.backends.svg import layout, to_svg
from diagrammar.backends.svg.overlay import (BAND, NEUTRAL_WIRE, VIRIDIS, Overlay, OverlayError, colour_at,
                                             cost_overlay)
from diagrammar.cli import main

NS = "{http://www.w3.org/2000/svg}"
MLP = "circuits/modadd_mlp.circuit"


@pytest.fixture(scope="module")
def fig():
    return layout(diagrammar.load(MLP)["ModAddMLP"])


def _elements(svg: str, **attrs):
    root = ET.fromstring(svg)
    return [e for e in root.iter() if all(e.get(f"data-{k}") == v for k, v in attrs.items())]


def test_colour_scale_is_viridis_with_interpolation():
    assert colour_at(0) == VIRIDIS[0] and colour_at(1) == VIRIDIS[-1] and colour_at(0.5) == VIRIDIS[8]
    # halfway between two anchors: the mean of their channels
    a, b = VIRIDIS[2], VIRIDIS[3]
    mid = "#" + "".join(f"{round((int(a[k:k + 2], 16) + int(b[k:k + 2], 16)) / 2):02x}" for k in (1, 3, 5))
    assert colour_at(2.5 / 16) == mid
    assert colour_at(-3) == VIRIDIS[0] and colour_at(7) == VIRIDIS[-1]  # clamped


def test_named_wires_and_boxes_take_their_values_colour(fig):
    overlay = {"label": "CKA", "range": [0, 1], "wires": {"h": 0.5, "x": 0.25}, "boxes": {"h": 1.0}}
    svg = to_svg(fig, overlay=overlay)
    for wire, value in (("h", 0.5), ("x", 0.25)):
        paths = [e for e in _elements(svg, wire=wire) if e.get("class") == "wire"]
        assert paths and all(e.get("stroke") == VIRIDIS[round(value * 16)] for e in paths), wire
        assert all(e.get("data-overlay") == repr(value) for e in paths)
    others = [e for e in ET.fromstring(svg).iter(f"{NS}path")
              if e.get("class") == "wire" and e.get("data-wire") not in ("h", "x")]
    assert others and all(e.get("stroke") == NEUTRAL_WIRE for e in others)
    outline = [e for e in _elements(svg, box="h") if e.tag == f"{NS}path" and e.get("stroke")]
    assert outline and all(e.get("fill") == VIRIDIS[-1] for e in outline)


def test_colour_bar_and_unchanged_geometry(fig):
    plain = to_svg(fig)
    svg = to_svg(fig, overlay={"label": "linear CKA with seed 1", "wires": {"h": 0.2, "x": 0.9}})
    assert svg == to_svg(fig, overlay={"label": "linear CKA with seed 1", "wires": {"x": 0.9, "h": 0.2}})
    root, base = ET.fromstring(svg), ET.fromstring(plain)
    assert float(root.get("height")) == pytest.approx(float(base.get("height")) + BAND)
    assert root.get("width") == base.get("width")
    # every shape of the figure is where it was
    d_plain = [e.get("d") for e in base.iter(f"{NS}path")]
    d_over = [e.get("d") for e in root.iter(f"{NS}path") if e.get("class") != "overlay-scale"]
    assert d_plain == d_over
    bar = [e for e in root.iter(f"{NS}rect") if e.get("class") == "overlay-scale"]
    assert len(bar) == 1 and bar[0].get("fill") == "url(#overlay-scale)"
    assert float(bar[0].get("data-low")) == 0.2 and float(bar[0].get("data-high")) == 0.9
    stops = list(root.iter(f"{NS}stop"))
    assert [s.get("stop-color") for s in stops] == list(VIRIDIS)
    texts = [e.text for e in root.iter(f"{NS}text") if e.get("class") == "overlay-scale"]
    assert texts == ["linear CKA with seed 1", "0.2", "0.55", "0.9"]


def test_cost_overlay_colours_boxes_by_flops_on_a_log_scale(fig):
    from diagrammar.backends.cost import analyse

    d = diagrammar.load(MLP)["ModAddMLP"]
    flops = {r.path: r.forward_flops.number for r in analyse(d, batch=4).boxes if r.forward_flops.number}
    lo, hi = min(flops.values()), max(flops.values())
    svg = to_svg(fig, overlay=cost_overlay(d, "flops", batch=4))
    t = (math.log(flops["out"]) - math.log(lo)) / (math.log(hi) - math.log(lo))
    outline = [e for e in _elements(svg, box="out") if e.tag == f"{NS}path" and e.get("stroke")]
    assert outline and outline[0].get("fill") == colour_at(t)
    assert "log scale" in svg


@pytest.mark.parametrize("overlay, message", [
    ({"wires": {"hh": 1.0}}, "wire 'hh', which the figure of ModAddMLP does not draw; did you mean 'h'?"),
    ({"boxes": {"nope": 1.0}}, "box 'nope'"),
    ({"wires": {"h": "high"}}, "must be a finite number"),
    ({"wires": {"h": 1.0}, "colour": "red"}, "unknown key 'colour'"),
    ({}, "gives no values"),
    ({"wires": {"h": 0.0}, "scale": "log"}, "positive values"),
    ({"wires": {"h": 1.0}, "range": [1, 0]}, "low < high"),
])
def test_bad_overlays_are_refused_by_name(fig, overlay, message):
    with pytest.raises(OverlayError, match=message.replace("?", r"\?").replace("(", r"\(")):
        to_svg(fig, overlay=overlay)


def test_render_overlay_on_the_command_line(tmp_path, capsys):
    good = tmp_path / "cka.json"
    good.write_text(json.dumps({"label": "CKA", "range": [0, 1], "wires": {"h": 0.75}}))
    out = tmp_path / "fig.svg"
    assert main(["render", MLP, "--circuit", "ModAddMLP", "--overlay", str(good), "-o", str(out)]) == 0
    assert [e.get("stroke") for e in _elements(out.read_text(), wire="h") if e.get("class") == "wire"] == \
        [VIRIDIS[12]]
    assert main(["render", MLP, "--circuit", "ModAddMLP", "--overlay", "flops", "-o", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"wires": {"nope": 1}}))
    capsys.readouterr()
    for args, message in (([str(bad), "-o", str(tmp_path / "b.svg")], "does not draw"),
                          ([str(tmp_path / "none.json")], "no such file"),
                          (["flops", "-o", str(tmp_path / "t.tex")], "SVG and PNG"),
                          (["flops", "-o", str(tmp_path / "t.dot")], "SVG and PNG")):
        assert main(["render", MLP, "--circuit", "ModAddMLP", "--overlay", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "b.svg").exists()
    not_json = tmp_path / "x.json"
    not_json.write_text("{wires")
    assert main(["render", MLP, "--circuit", "ModAddMLP", "--overlay", str(not_json)]) == 2
    assert "not JSON" in capsys.readouterr().err


def test_overlay_object_from_python(fig):
    ov = Overlay(wires=(("h", 3.0),), label="norm")
    assert ov.bounds() == (1.5, 4.5)  # one value sits in the middle of the scale
    assert ov.colour(3.0) == VIRIDIS[8]


def test_overlay_needs_no_numpy_and_gives_the_same_bytes(fig):
    import subprocess
    import sys

    script = """
import sys
sys.modules["numpy"] = None
import diagrammar
from diagrammar.backends.svg import layout, to_svg
fig = layout(diagrammar.load("circuits/modadd_mlp.circuit")["ModAddMLP"])
sys.stdout.write(to_svg(fig, overlay={"wires": {"h": 0.3, "x": 0.7}, "boxes": {"h": 2.0}}))
"""
    got = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert got == to_svg(fig, overlay={"wires": {"h": 0.3, "x": 0.7}, "boxes": {"h": 2.0}})
