"""Backends, svg: neural circuit diagrams (Abbott's notation) as SVG or PNG, in pure Python.

`layout.py` places the figure (geometry only) and `draw.py` writes it as SVG;
`diagrammar.backends.tikz` writes the same layout as TikZ. Output is
deterministic: the same diagram gives the same bytes.

Example:
    >>> import diagrammar
    >>> d = diagrammar.parse("axis d = 4\\ncircuit F(x: [d]) -> [d]:\\n    return relu(x)\\n")["F"]
    >>> svg = render_svg(d)
    >>> svg.startswith("<?xml") and svg == render_svg(d)
    True
"""
from __future__ import annotations

from ...ir import Diagram
from .draw import to_svg, to_svg_pages
from .layout import Layout, layout
from .page import stack_pages

__all__ = ["render_svg", "render_pages", "render_png", "layout", "Layout", "to_svg", "to_svg_pages",
           "stack_pages", "repr_svg", "axis_formulas", "PNG_MISSING"]

PNG_MISSING = ("PNG output needs cairosvg, which is not installed; install it with "
               "`pip install cairosvg` (or `pip install diagrammar[png]`), or write .svg instead")


def render_svg(diagram: Diagram, *, depth: int | None = 0, annotations: dict[str, str] | None = None,
               axis_formulas: dict[str, str] | None = None, **options) -> str:
    """The diagram as a neural circuit diagram, in SVG.

    Args:
        diagram: a checked circuit (``diagrammar.load(path)[name]``).
        depth: levels of sub-circuit calls shown (0: all collapsed; None: all levels), each distinct
            sub-circuit drawn once below the figure as a definition ("Name = body").
        annotations: dotted box path -> text written under that box (cost figures, notes).
        axis_formulas: axis -> declared size expression, shown in the legend (``dk = d // heads = 32``).
        **options: passed to ``layout``: ``inline=True`` draws the shown calls in place as tinted
            panels, ``one_row=True`` never wraps, ``style="paper"`` or ``"mono"`` for print.

    Returns:
        An SVG document as a string; the same input always gives the same bytes. A figure too tall
        for a printed page has its pages one under another (`render_pages` gives one per page).
    """
    fig = layout(diagram, depth=depth, annotations=annotations, axis_formulas=axis_formulas, **options)
    return to_svg(fig)


def render_pages(diagram: Diagram, *, depth: int | None = 0, annotations: dict[str, str] | None = None,
                 axis_formulas: dict[str, str] | None = None, **options) -> list[str]:
    """The figure as one SVG document per printed page (usually one): each page printed 6.5 inches
    wide is at most 9 inches tall, its definitions continued on the next pages when they do not fit."""
    fig = layout(diagram, depth=depth, annotations=annotations, axis_formulas=axis_formulas, **options)
    return to_svg_pages(fig)


def render_png(diagram: Diagram, *, depth: int | None = 0, annotations: dict[str, str] | None = None,
               axis_formulas: dict[str, str] | None = None, scale: float = 2.0, **options) -> bytes:
    """The figure as PNG bytes, through cairosvg (raises RuntimeError with a hint when it is missing)."""
    svg = render_svg(diagram, depth=depth, annotations=annotations, axis_formulas=axis_formulas, **options)
    return svg_to_png(svg, scale=scale)


def svg_to_png(svg: str, scale: float = 2.0) -> bytes:
    try:
        import cairosvg
    except ImportError:
        raise RuntimeError(PNG_MISSING) from None
    return cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=scale)


def repr_svg(diagram: Diagram) -> str:
    """What a notebook shows for a diagram (``Diagram._repr_svg_`` calls this)."""
    return render_svg(diagram)


def axis_formulas(program) -> dict[str, str]:
    """Axis -> its declared size expression (``"d // heads"``), from a checked Program.

    The IR keeps only evaluated sizes; the legend shows derived sizes the way
    they were written when this is passed to ``render_svg``.
    """
    return program.axis_formulas
