"""Docs: the Sphinx extension `diagrammar.sphinx`: a `circuit` directive and the `.circuit` lexer.

Add it to a project's conf.py (``extensions = ["diagrammar.sphinx"]``), then::

    .. circuit:: ../circuits/transformer.circuit
       :circuit: Decoder
       :name: fig-decoder
       :depth: 1
       :caption: A decoder-only transformer.

    :numref:`fig-decoder` draws the decoder (with ``numfig = True``); :ref:`fig-decoder` links to it by caption.

    .. circuit::
       :caption: Inline source works too.

       axis d = 8
       circuit Scale(x: [d]) -> [d]:
           param s: [d] = ones
           return x * s

A path is relative to the document (or, starting with ``/``, to the source
directory); ``:circuit:`` defaults to the last circuit of the file. ``:name:``
is the figure's label for ``:ref:`` and ``:numref:``, as for any figure (when
there is no ``:circuit:`` and ``:name:`` names a circuit of the program, that
circuit is drawn, as before ``:circuit:`` existed).

HTML output embeds the checked circuit's SVG (`diagrammar.backends.svg.render_svg`)
inline, scaled down to the text width with its aspect ratio kept. LaTeX output
includes it as a PDF and Texinfo as a PNG, both converted with cairosvg; without
cairosvg those builders warn, once per figure, and show only the caption.

A program that does not check gives one Sphinx warning per error, located at
``file:line:col`` (for inline source: the line in the .rst file), and a
visible error block in the page; the build goes on, and no traceback is
printed. Code blocks with the language ``circuit`` are highlighted by
`diagrammar.lexer.CircuitLexer`.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from . import __version__
from .check import Program, parse
from .errors import CircuitError
from .lexer import CircuitLexer

__all__ = ["CircuitDirective", "circuit_image", "setup"]

logger = logging.getLogger(__name__)

# An XML prolog or doctype is not allowed inside an HTML document.
_PROLOG = re.compile(r"\A\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?", re.I)
_SVG_TAG = re.compile(r"<svg\b[^>]*>")
# Inline, the figure shrinks to the text width and keeps its aspect ratio (which needs a viewBox); it never
# grows past its own size, so a small circuit keeps its label sizes.
FIT_WIDTH = "max-width: 100%; height: auto"
CAIROSVG_MISSING = ("{builder} output of circuit figure {name} needs cairosvg to convert the SVG "
                    "(python3 -m pip install cairosvg); only its caption is shown")


class circuit_image(nodes.General, nodes.Element):
    """The drawn figure of a `circuit` directive: ``svg`` (the SVG text) and ``circuit`` (its name).

    Each builder format has its own visitor (registered in :func:`setup`): HTML embeds the SVG, LaTeX
    includes a PDF, Texinfo a PNG, text and man pages name the circuit.
    """


def _render_svg(diagram, depth: int, inline: bool = False, style: str = "screen") -> str:
    # imported here so that the extension loads (and highlighting works)
    # even where the renderer is broken or not installed
    from .backends.svg import render_svg

    return render_svg(diagram, depth=depth, inline=inline, style=style)


class CircuitDirective(SphinxDirective):
    """``.. circuit:: [path]`` with options ``:circuit:``, ``:name:`` (the label), ``:depth:``, ``:inline:``,
    ``:style:``, ``:caption:``, ``:class:``."""

    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True
    option_spec = {
        "circuit": directives.unchanged_required,
        "name": directives.unchanged_required,
        "depth": directives.nonnegative_int,
        "inline": directives.flag,
        "style": lambda v: directives.choice(v, ("screen", "paper", "mono")),
        "caption": directives.unchanged,
        "class": directives.class_option,
    }

    def run(self) -> list[nodes.Node]:
        if self.arguments and self.content:
            return self._problem("the circuit directive takes a file or inline source, not both")
        if not self.arguments and not self.content:
            return self._problem("the circuit directive needs a .circuit file or inline source")
        if self.arguments:
            rel, abs_path = self.env.relfn2path(self.arguments[0])
            self.env.note_dependency(rel)
            try:
                text = Path(abs_path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                reason = e.strerror if isinstance(e, OSError) else "it is not UTF-8 text"
                return self._problem(f"cannot read circuit file {rel}: {reason}")
            where = _FileLocations(rel, abs_path)
            root = os.path.dirname(abs_path)
        else:
            text = "\n".join(self.content) + "\n"
            where = self._inline_locations()
            root = os.path.dirname(self.env.doc2path(self.env.docname))
        try:
            program = parse(text, where.name, root=root)
        except CircuitError as e:
            return self._circuit_errors(e, where)
        name = self.options.get("circuit")
        if name is None and self.options.get("name") in program:
            name = self.options["name"]  # the older spelling: :name: chose the circuit (it is also the label)
        name = name or _last_circuit(program)
        if name is None:
            return self._problem(f"{where.name} defines no circuit to draw")
        if name not in program:
            return self._problem(f"no circuit named {name!r} in {where.name}; circuits: {', '.join(program)}")
        try:
            svg = _render_svg(program[name], self.options.get("depth", 0), "inline" in self.options,
                              self.options.get("style", "screen"))
        except ImportError as e:
            return self._problem(f"drawing {name} needs the SVG renderer diagrammar.backends.svg ({e})")
        except CircuitError as e:
            return self._circuit_errors(e, where)
        except Exception as e:  # a renderer bug must not stop the whole docs build
            return self._problem(f"drawing {name} failed: {type(e).__name__}: {e}")
        svg = _fit_width(_PROLOG.sub("", svg, count=1))
        return [self._figure(name, _scope_ids(svg, f"circuit{self.env.new_serialno('circuit')}-"))]

    # -- output
    def _figure(self, name: str, svg: str) -> nodes.Node:
        figure = nodes.figure(classes=["circuit"] + self.options.get("class", []))
        figure += circuit_image(svg=svg.strip(), circuit=name)
        caption = self.options.get("caption")
        if caption:
            inline, messages = self.state.inline_text(caption, self.lineno)
            figure += nodes.caption(caption, "", *inline)
            figure += messages
        self.set_source_info(figure)
        for child in figure.children:
            self.set_source_info(child)
        self.add_name(figure)  # :name: is the label that :ref: and :numref: point at
        return figure

    def _problem(self, message: str) -> list[nodes.Node]:
        """A problem with the directive itself: a warning at the directive and a block in the page."""
        logger.warning(message, location=self.get_location(), type="circuit", subtype="directive")
        return [self._error_block(message)]

    def _circuit_errors(self, error: CircuitError, where: "_Locations") -> list[nodes.Node]:
        """One warning per error of the program, and every diagnostic in the page."""
        shown = []
        for e in error.errors:
            loc_warn, loc_page = where.locate(e.span)
            message = e.message + (f" (hint: {e.hint})" if e.hint else "")
            logger.warning(message, location=loc_warn, type="circuit", subtype="check")
            lines = e.format_one().split("\n")
            if e.span is not None:
                lines[0] = f"{loc_page}: error: {e.message}"
            shown.append("\n".join(lines))
        count = len(error.errors)
        return [self._error_block(f"{where.name} does not check ({count} error{'s' if count != 1 else ''}):",
                                  "\n".join(shown))]

    def _error_block(self, message: str, detail: str | None = None) -> nodes.Node:
        block = nodes.error()
        block += nodes.paragraph(message, message)
        if detail:
            text = nodes.literal_block(detail, detail)
            text["language"] = "text"  # diagnostics, not code: no highlighting
            block += text
        self.set_source_info(block)
        return block

    # -- where inline source lives in the .rst file
    def _inline_locations(self) -> "_Locations":
        source, offset = self.content.info(0)
        source = source or self.env.doc2path(self.env.docname)
        page = os.path.relpath(source, self.env.srcdir) if os.path.isabs(source) else source
        return _InlineLocations(page, os.path.abspath(source), offset, self._content_indent(source))

    def _content_indent(self, source: str) -> int:
        """How far the inline source is indented in the .rst file (content lines come dedented)."""
        first = next((i for i, line in enumerate(self.content) if line.strip()), None)
        if first is None:
            return 0
        line = self.content[first]
        _, offset = self.content.info(first)
        raw_lines = []
        try:  # the file as written, which also knows the indentation of enclosing blocks
            raw_lines = Path(source).read_text(encoding="utf-8").splitlines()[offset:offset + 1]
        except (OSError, UnicodeDecodeError, TypeError):
            pass
        raw_lines += self.block_text.splitlines()[1:]
        for raw in raw_lines:
            if raw.endswith(line) and raw.strip() == line.strip():
                return len(raw) - len(line)
        return 0


class _Locations:
    """Maps a span of the checked text to (warning location, location shown in the page)."""

    name: str

    def locate(self, span) -> tuple[str | None, str | None]:
        raise NotImplementedError


class _FileLocations(_Locations):
    def __init__(self, rel: str, abs_path: str):
        self.name = rel
        self.abs_path = abs_path

    def locate(self, span):
        if span is None:
            return self.abs_path, self.name
        where = f"{span.line}:{span.column}"
        if span.file == self.name:
            return f"{self.abs_path}:{where}", f"{self.name}:{where}"
        return str(span), str(span)  # an error in a file it uses


class _InlineLocations(_Locations):
    def __init__(self, page: str, abs_path: str, offset: int, indent: int):
        self.name = page
        self.abs_path = abs_path
        self.offset = offset  # 0-based line of the first content line in the .rst file
        self.indent = indent

    def locate(self, span):
        if span is None:
            return f"{self.abs_path}:{self.offset + 1}", self.name
        if span.file != self.name:
            return str(span), str(span)
        where = f"{self.offset + span.line}:{span.column + self.indent}"
        return f"{self.abs_path}:{where}", f"{self.name}:{where}"


def _fit_width(svg: str) -> str:
    """Let the root <svg> shrink to the text width with its aspect ratio, instead of being clipped."""
    match = _SVG_TAG.search(svg)
    if match is None:
        return svg
    tag = match.group(0)
    if "viewBox" not in tag:  # without one, a browser cannot scale the drawing, only clip it
        w, h = re.search(r'\bwidth="([\d.]+)', tag), re.search(r'\bheight="([\d.]+)', tag)
        if w and h:
            tag = tag[:4] + f' viewBox="0 0 {w.group(1)} {h.group(1)}"' + tag[4:]
    style = re.search(r'\bstyle="([^"]*)"', tag)
    if style:
        tag = tag[:style.start(1)] + f"{FIT_WIDTH}; " + tag[style.start(1):]
    else:
        tag = tag[:4] + f' style="{FIT_WIDTH}"' + tag[4:]
    return svg[:match.start()] + tag + svg[match.end():]


# -- one visitor per builder format


def _visit_html(self, node: circuit_image) -> None:
    self.body.append(f'<div class="circuit-svg" title="{node["circuit"]}">\n{node["svg"]}\n</div>\n')
    raise nodes.SkipNode


def _converted(self, node: circuit_image, fmt: str) -> str | None:
    """The figure converted by cairosvg into the builder's image folder: its path for the output, or None
    (with a warning) when cairosvg is missing or fails."""
    try:
        import cairosvg
    except ImportError:
        logger.warning(CAIROSVG_MISSING.format(builder=self.builder.name, name=node["circuit"]), location=node,
                       type="circuit", subtype="image")
        return None
    fname = f"circuit-{hashlib.sha1(node['svg'].encode('utf-8')).hexdigest()[:16]}.{fmt}"
    out = os.path.join(self.builder.outdir, self.builder.imagedir, fname)
    if not os.path.isfile(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        convert = cairosvg.svg2pdf if fmt == "pdf" else cairosvg.svg2png
        try:
            data = convert(bytestring=node["svg"].encode("utf-8"), **({"scale": 2.0} if fmt == "png" else {}))
        except Exception as e:  # a conversion failure must not stop the build
            logger.warning(f"converting circuit figure {node['circuit']} to {fmt.upper()} failed: "
                           f"{type(e).__name__}: {e}", location=node, type="circuit", subtype="image")
            return None
        tmp = f"{out}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, out)  # parallel writers of one figure write the same bytes
    return posixpath.join(self.builder.imgpath, fname)


def _visit_latex(self, node: circuit_image) -> None:
    path = _converted(self, node, "pdf")
    if path is not None:
        base, ext = posixpath.splitext(path)
        # \sphinxincludegraphics scales an image wider than the line down to the line
        self.body.append(f"\n\\sphinxincludegraphics{{{{{base}}}{ext}}}\n")
    raise nodes.SkipNode


def _visit_texinfo(self, node: circuit_image) -> None:
    path = _converted(self, node, "png")
    if path is not None:
        self.body.append(f"@image{{{path[:-4]},,,[{node['circuit']}],png}}\n")
    raise nodes.SkipNode


def _visit_text(self, node: circuit_image) -> None:
    self.add_text(f"[circuit: {node['circuit']}]")
    raise nodes.SkipNode


def _visit_man(self, node: circuit_image) -> None:
    self.body.append(f"[circuit: {node['circuit']}]")
    raise nodes.SkipNode


def _scope_ids(svg: str, prefix: str) -> str:
    """Prefix the SVG's element ids and the references to them.

    Several figures inline in one page share one id space; without this, a
    second figure's `url(#arrow)` would point at the first figure's marker.
    """
    ids = sorted(set(re.findall(r'\bid="([^"]+)"', svg)), key=len, reverse=True)
    if not ids:
        return svg
    names = "|".join(re.escape(i) for i in ids)
    svg = re.sub(rf'\bid="({names})"', lambda m: f'id="{prefix}{m[1]}"', svg)
    svg = re.sub(rf'url\(#({names})\)', lambda m: f"url(#{prefix}{m[1]})", svg)
    return re.sub(rf'href="#({names})"', lambda m: f'href="#{prefix}{m[1]}"', svg)


def _last_circuit(program: Program) -> str | None:
    """The last circuit defined in the program's own text (not in a file it uses)."""
    own = [n for n in program if program[n].span is not None and program[n].span.file == program.file]
    names = own or list(program)
    return names[-1] if names else None


def setup(app) -> dict:
    """Register the `circuit` directive and the `circuit` Pygments lexer."""
    app.add_node(circuit_image, html=(_visit_html, None), latex=(_visit_latex, None),
                 texinfo=(_visit_texinfo, None), text=(_visit_text, None), man=(_visit_man, None))
    app.add_directive("circuit", CircuitDirective)
    app.add_lexer("circuit", CircuitLexer)
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}
