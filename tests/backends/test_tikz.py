"""TikZ output: a standalone LaTeX document with the same figure as the SVG."""
from __future__ import annotations

import shutil
import subprocess

import pytest

import diagrammar
from diagrammar.backends.svg.layout import Circle, Path, Text, layout
from diagrammar.backends.tikz import render_tikz, tex_escape


def _diagram(stem: str, name: str):
    return diagrammar.load(f"circuits/{stem}.circuit")[name]


def test_a_standalone_document():
    tex = render_tikz(_diagram("grok_transformer", "GrokTransformer"))
    assert tex.startswith(r"\documentclass[tikz,border=4pt]{standalone}")
    assert r"\begin{document}" in tex and tex.rstrip().endswith(r"\end{document}")
    assert tex.count(r"\begin{tikzpicture}") == 1
    assert tex.isascii()


def test_one_command_per_shape_and_deterministic():
    d = _diagram("lstm", "LSTMEncoder")
    fig = layout(d, depth=1)
    tex = render_tikz(d, depth=1)
    assert tex == render_tikz(d, depth=1)
    body = tex.split(r"\useasboundingbox", 1)[1]
    commands = sum(body.count(c) for c in ("\\draw[", "\\fill[", "\\filldraw[", "\\node["))
    assert commands == len([s for s in fig.shapes if isinstance(s, (Path, Circle, Text))])


def test_text_is_escaped():
    assert tex_escape("a_b & c%") == r"a\_b \& c\%"
    assert tex_escape("÷√dk") == r"$\div$$\surd$dk"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
@pytest.mark.parametrize("stem,name,depth", [("attention", "SelfAttention", 0), ("lstm", "LSTMEncoder", 1)])
def test_compiles_with_pdflatex(tmp_path, stem, name, depth):
    (tmp_path / "fig.tex").write_text(render_tikz(_diagram(stem, name), depth=depth), encoding="utf-8")
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "fig.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout[-2000:]
    assert (tmp_path / "fig.pdf").stat().st_size > 1000
