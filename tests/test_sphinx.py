"""The Sphinx extension: a tiny project built in-process, with the directive and a highlighted code block."""
import io
import re
import sys
import textwrap
import types
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
from sphinx.testing.util import SphinxTestApp  # noqa: E402

ZOO = Path("circuits").resolve()
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _build(tmp_path: Path, index: str, files: dict[str, str] | None = None, builder: str = "html",
           conf: str = ""):
    """Build a project; returns (index.html text, or the builder's main output, warnings text, status code)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text('project = "t"\nextensions = ["diagrammar.sphinx"]\n' + conf)
    (src / "index.rst").write_text(textwrap.dedent(index))
    for name, text in (files or {}).items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    warnings = io.StringIO()
    # SphinxTestApp undoes Sphinx's process-wide registrations afterwards, so builds do not leak
    app = SphinxTestApp(builder, srcdir=src, builddir=tmp_path / "out", freshenv=True, warning=warnings)
    try:
        app.build()
    finally:
        app.cleanup()
    main = {"html": "index.html", "latex": "t.tex", "text": "index.txt"}[builder]
    html = (tmp_path / "out" / builder / main).read_text(encoding="utf-8")
    return html, ANSI.sub("", warnings.getvalue()), app.statuscode


@pytest.fixture
def stub_renderer(monkeypatch):
    """Stands in for diagrammar.backends.svg; records (circuit, depth) per call."""
    calls = []

    def render_svg(diagram, *, depth=0, annotations=None, **options):
        calls.append((diagram.name, depth))
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
                f'class="stub" data-circuit="{diagram.name}" data-depth="{depth}"><defs><marker id="arrow"/></defs>'
                f'<path marker-end="url(#arrow)"/><use href="#arrow"/><text>{diagram.name}</text></svg>\n')

    fake = types.ModuleType("diagrammar.backends.svg")
    fake.render_svg = render_svg
    monkeypatch.setitem(sys.modules, "diagrammar.backends.svg", fake)
    return calls


GOOD = """\
Circuits
========

.. circuit:: models/transformer.circuit
   :depth: 1
   :caption: A *decoder* from a file.

.. circuit::
   :name: Scale
   :depth: 2

   axis d = 8
   circuit Scale(x: [d]) -> [d]:
       param s: [d] = ones
       return x * s

   circuit Unused(x: [d]) -> [d]:
       return x

.. code-block:: circuit

   axis d = 8
   circuit Scale(x: [d]) -> [d]:
       return relu(linear(x, d -> d, bias = false))
"""


def test_directive_embeds_the_figure_and_code_blocks_highlight(tmp_path, stub_renderer):
    files = {"models/transformer.circuit": (ZOO / "transformer.circuit").read_text()}
    html, warnings, status = _build(tmp_path, GOOD, files)
    assert status == 0 and warnings == ""
    # the default circuit is the file's own last one (not one it `use`s); options reach the renderer
    assert stub_renderer == [("Decoder", 1), ("Scale", 2)]
    assert html.count('<svg style="max-width: 100%; height: auto" xmlns="http://www.w3.org/2000/svg" class="stub"') == 2
    assert "<?xml" not in html
    # two figures in one page: each keeps its own ids
    assert html.count('<marker id="circuit0-arrow"/>') == 1 and html.count('<marker id="circuit1-arrow"/>') == 1
    assert 'marker-end="url(#circuit1-arrow)"' in html and '<use href="#circuit1-arrow"/>' in html
    assert '<figure class="circuit' in html and "<figcaption>" in html and "<em>decoder</em>" in html
    # the code block went through CircuitLexer
    assert 'class="highlight-circuit notranslate"' in html
    for span in ('<span class="kd">circuit</span>', '<span class="nc">Scale</span>',
                 '<span class="nb">linear</span>', '<span class="na">bias</span>', '<span class="kc">false</span>'):
        assert span in html, span
    assert '<span class="err">' not in html


BAD = """\
Broken
======

.. circuit:: bad.circuit

Some text.

.. circuit::

   axis d = 4
   circuit Bad(x: [d]) -> [d]:
       return x + zzz

.. circuit:: missing.circuit

.. circuit:: bad_name.circuit
   :circuit: Nope

.. note::

   Nested in a note:

   .. circuit::

      axis d = 4
      circuit Worse(x: [d]) -> [d]:
          return gelu(x, d)

After the errors.
"""


def test_bad_programs_warn_with_their_location_and_the_build_goes_on(tmp_path, stub_renderer):
    files = {"bad.circuit": "axis d = 4\ncircuit Bad(x: [d]) -> [d]:\n    return relu(y)\n",
             "bad_name.circuit": "axis d = 4\ncircuit Id(x: [d]) -> [d]:\n    return x\n"}
    html, warnings, status = _build(tmp_path, BAD, files)
    src = tmp_path / "src"
    assert status == 0
    assert "Traceback" not in warnings and "Traceback" not in html
    # file:line:col of the circuit file, and of the inline source inside index.rst (line 12, column 19)
    assert f"{src / 'bad.circuit'}:3:17: WARNING: unknown name 'y'" in warnings
    assert f"{src / 'index.rst'}:12:19: WARNING: unknown name 'zzz'" in warnings
    assert "cannot read circuit file missing.circuit" in warnings
    assert "no circuit named 'Nope' in bad_name.circuit; circuits: Id" in warnings
    assert f"{src / 'index.rst'}:27:26: WARNING: gelu takes 1 positional argument" in warnings  # indented twice
    # the page shows each problem, with the diagnostic and its caret
    assert html.count('class="admonition error"') == 5
    assert "bad.circuit:3:17: error: unknown name" in html
    assert "index.rst:12:19: error: unknown name" in html and "^^^" in html
    assert "After the errors." in html
    assert stub_renderer == []


def test_a_renderer_failure_is_a_warning_not_a_crash(tmp_path, monkeypatch):
    fake = types.ModuleType("diagrammar.backends.svg")

    def render_svg(diagram, *, depth=0, annotations=None, **options):
        raise ZeroDivisionError("boom")

    fake.render_svg = render_svg
    monkeypatch.setitem(sys.modules, "diagrammar.backends.svg", fake)
    index = ".. circuit::\n\n   axis d = 4\n   circuit Id(x: [d]) -> [d]:\n       return x\n"
    html, warnings, status = _build(tmp_path, index)
    assert status == 0
    assert "index.rst:1: WARNING: drawing Id failed: ZeroDivisionError: boom" in warnings
    assert 'class="admonition error"' in html


def _have_renderer() -> bool:
    try:
        from diagrammar.backends.svg import render_svg  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _have_renderer(), reason="diagrammar.backends.svg (issue 3, SVG renderer) is not built yet")
def test_real_renderer_figure_in_html(tmp_path):
    files = {"mlp.circuit": (ZOO / "mlp.circuit").read_text()}
    html, warnings, status = _build(tmp_path, ".. circuit:: mlp.circuit\n   :depth: 1\n", files)
    assert status == 0 and "WARNING" not in warnings, warnings
    figure = html[html.index('<figure class="circuit'):]
    assert "<svg" in figure[:figure.index("</figure>")]
    assert "<?xml" not in html


def test_setup_declares_parallel_safety():
    from diagrammar import sphinx as ext

    class App:
        def __init__(self):
            self.calls = []

        def add_directive(self, *a):
            self.calls.append(("directive", a[0]))

        def add_lexer(self, *a):
            self.calls.append(("lexer", a[0]))

        def add_node(self, node, **visitors):
            self.calls.append(("node", node.__name__, tuple(sorted(visitors))))

    app = App()
    meta = ext.setup(app)
    assert app.calls == [("node", "circuit_image", ("html", "latex", "man", "texinfo", "text")),
                         ("directive", "circuit"), ("lexer", "circuit")]
    assert meta["parallel_read_safe"] and meta["parallel_write_safe"]


# ---------------------------------------------------------------- width, cross-references, LaTeX

LABELLED = """\
Models
======

See :numref:`fig-mlp` and :ref:`fig-mlp`.

.. circuit:: mlp.circuit
   :circuit: MLP
   :name: fig-mlp
   :caption: The MLP of the zoo.
"""


def _svg_tag(html: str) -> str:
    return re.search(r"<svg\b[^>]*>", html).group(0)


@pytest.mark.skipif(not _have_renderer(), reason="diagrammar.backends.svg is not built yet")
def test_wide_figures_scale_to_the_text_width_keeping_their_aspect_ratio(tmp_path):
    files = {"transformer.circuit": (ZOO / "transformer.circuit").read_text(),
             "attention.circuit": (ZOO / "attention.circuit").read_text()}
    html, warnings, status = _build(tmp_path, ".. circuit:: transformer.circuit\n   :depth: 1\n", files)
    assert status == 0 and "WARNING" not in warnings, warnings
    tag = _svg_tag(html[html.index('<figure class="circuit'):])
    width = float(re.search(r'\bwidth="([\d.]+)"', tag).group(1))
    assert width > 700  # wider than a docs theme's text column
    assert 'style="max-width: 100%; height: auto"' in tag and "viewBox=" in tag  # shrinks, never clipped
    assert "overflow" not in html[html.index('<figure class="circuit'):html.index("</figure>")]


def test_fit_width_adds_a_viewbox_where_one_is_missing_and_keeps_a_style():
    from diagrammar.sphinx import FIT_WIDTH, _fit_width

    assert _svg_tag(_fit_width('<svg width="800" height="200"><g/></svg>')) == (
        f'<svg style="{FIT_WIDTH}" viewBox="0 0 800 200" width="800" height="200">')
    assert _svg_tag(_fit_width('<svg viewBox="0 0 8 2" style="color: red">')) == (
        f'<svg viewBox="0 0 8 2" style="{FIT_WIDTH}; color: red">')


def test_name_is_a_label_for_ref_and_numref(tmp_path, stub_renderer):
    files = {"mlp.circuit": (ZOO / "mlp.circuit").read_text()}
    html, warnings, status = _build(tmp_path, LABELLED, files, conf="numfig = True\n")
    assert status == 0 and warnings == "", warnings
    assert stub_renderer == [("MLP", 0)]
    assert re.search(r'<figure class="circuit[^"]*" id="fig-mlp">', html), html
    assert '<a class="reference internal" href="#fig-mlp"><span class="std std-numref">Fig. 1</span></a>' in html
    assert ('<a class="reference internal" href="#fig-mlp"><span class="std std-ref">The MLP of the zoo.</span></a>'
            in html)


def test_old_spelling_name_as_the_circuit_still_draws_it(tmp_path, stub_renderer):
    index = ".. circuit:: mlp.circuit\n   :name: MLP\n\nSee :ref:`the figure <MLP>`.\n"
    html, warnings, status = _build(tmp_path, index, {"mlp.circuit": (ZOO / "mlp.circuit").read_text()})
    assert status == 0 and warnings == "", warnings
    assert stub_renderer == [("MLP", 0)] and 'href="#mlp"' in html


@pytest.mark.skipif(not _have_renderer(), reason="diagrammar.backends.svg is not built yet")
def test_latex_output_includes_the_figure_as_pdf(tmp_path):
    pytest.importorskip("cairosvg")
    files = {"mlp.circuit": (ZOO / "mlp.circuit").read_text()}
    tex, warnings, status = _build(tmp_path, LABELLED, files, builder="latex", conf="numfig = True\n")
    assert status == 0 and "WARNING" not in warnings, warnings
    figure = tex[tex.index("\\begin{figure}"):tex.index("\\end{figure}")]
    include = re.search(r"\\sphinxincludegraphics\{\{(circuit-[0-9a-f]+)\}\.pdf\}", figure)
    assert include, figure
    assert "The MLP of the zoo." in figure and "\\label{\\detokenize{index:fig-mlp}}" in figure
    assert (tmp_path / "out" / "latex" / f"{include.group(1)}.pdf").read_bytes().startswith(b"%PDF")
    assert "\\ref{\\detokenize{index:fig-mlp}}" in tex  # the numref


def test_latex_without_cairosvg_warns_and_keeps_the_caption(tmp_path, stub_renderer, monkeypatch):
    monkeypatch.setitem(sys.modules, "cairosvg", None)  # import cairosvg fails, as when not installed
    files = {"mlp.circuit": (ZOO / "mlp.circuit").read_text()}
    tex, warnings, status = _build(tmp_path, LABELLED, files, builder="latex", conf="numfig = True\n")
    assert status == 0
    assert "index.rst:6: WARNING: latex output of circuit figure MLP needs cairosvg" in warnings, warnings
    assert "pip install cairosvg" in warnings
    assert "sphinxincludegraphics" not in tex and "The MLP of the zoo." in tex


def test_text_output_names_the_circuit(tmp_path, stub_renderer):
    text, warnings, status = _build(tmp_path, LABELLED, {"mlp.circuit": (ZOO / "mlp.circuit").read_text()},
                                    builder="text", conf="numfig = True\n")
    assert status == 0 and warnings == "", warnings
    assert "[circuit: MLP]" in text and "The MLP of the zoo." in text
