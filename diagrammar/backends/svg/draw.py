"""Backends, svg stage 2: SVG text from a layout (one element per shape, in paint order).

The output is deterministic: coordinates are printed with at most two
decimals, attributes in a fixed order, and nothing depends on the clock,
the platform or dict order. It is plain SVG 1.1 with no scripts, so it
renders the same in browsers, cairosvg and Inkscape.

The SVG is semantic: every element's `class` is its role (wire, box, dot,
axis, port, panel, title, separator, loop, arrow, ...) then a kind class
where one helps (`op-linear`), and `data-` attributes say what it draws:
`data-wire` (the IR wire's dotted path; a contraction's cap joins two, space
separated), `data-axis`, `data-op`, `data-box` (the box's dotted path, as
``Diagram.walk`` names it) and `data-line` (the source line of the box, or of
the box that made the wire).
"""
from __future__ import annotations

from dataclasses import replace
from xml.sax.saxutils import escape

from .layout import Circle, Layout, Path, Text, gc_paused

__all__ = ["to_svg", "to_svg_pages", "fmt"]

FONT = "DejaVu Sans, Verdana, Helvetica, Arial, sans-serif"


def fmt(v: float) -> str:
    """A number with at most two decimals and no trailing zeros (`-0` printed as `0`).

    >>> fmt(1.0), fmt(2.345), fmt(-0.001)
    ('1', '2.35', '0')
    """
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _d(cmds) -> str:
    out = []
    for c in cmds:
        if c[0] == "Z":
            out.append("Z")
        else:
            out.append(c[0] + " ".join(fmt(v) for v in c[1:]))
    return "".join(out)


def _paint(fill, stroke, width: float, dash) -> str:
    parts = [f'fill="{fill}"' if fill else 'fill="none"']
    if stroke:
        parts.append(f'stroke="{stroke}" stroke-width="{fmt(width)}"')
        if dash:
            parts.append(f'stroke-dasharray="{dash}"')
    return " ".join(parts)


# what a shape means, written in this order after its class (see geometry.Path.meta)
META_ORDER = ("wire", "axis", "op", "box", "line")


def _attr(value) -> str:
    return escape(str(value), {'"': "&quot;"})


def _meaning(role: str, meta: tuple) -> str:
    """`class` (the role, then any kind classes) and the `data-` attributes of a shape, in a fixed order.

    >>> _meaning("box", (("class", "op-linear"), ("box", "q"), ("op", "linear"), ("line", 3)))
    'class="box op-linear" data-op="linear" data-box="q" data-line="3"'
    """
    classes = [role] if role else []
    data: dict[str, str] = {}
    for key, value in meta:
        if key == "class":
            classes.extend(c for c in str(value).split() if c not in classes)
        elif value is not None and value != "":
            data.setdefault(key, str(value))
    out = [f'class="{_attr(" ".join(classes))}"']
    out.extend(f'data-{k}="{_attr(data[k])}"' for k in META_ORDER if k in data)
    out.extend(f'data-{k}="{_attr(data[k])}"' for k in sorted(data) if k not in META_ORDER)
    return " ".join(out)


def _text(t: Text) -> str:
    attrs = [f'x="{fmt(t.x)}"', f'y="{fmt(t.y)}"', f'font-size="{fmt(t.size)}"']
    if t.bold:
        attrs.append('font-weight="bold"')
    if t.italic:
        attrs.append('font-style="italic"')
    if t.anchor != "start":
        attrs.append(f'text-anchor="{t.anchor}"')
    if t.color != "#222222":
        attrs.append(f'fill="{t.color}"')
    return f'<text {_meaning(t.role, t.meta)} {" ".join(attrs)}>{escape(t.text)}</text>'


def to_svg(fig: Layout, *, title: str | None = None, overlay=None) -> str:
    """The layout as an SVG document (a string ending in a newline); a figure of several pages has
    them one under another (`to_svg_pages` writes one document per page).

    ``overlay`` (an ``overlay.Overlay``, a dict in its JSON form, or the path of a JSON file) colours
    boxes and wires by measured values and adds a colour bar under the figure (see ``overlay.py``)."""
    from .page import stack_pages
    with gc_paused():
        return _svg(stack_pages(fig), title, overlay)


def to_svg_pages(fig: Layout, *, overlay=None) -> list[str]:
    """One SVG document per page of the figure: what a paper prints (a page is at most 9 in tall
    at 6.5 in wide); the pages after the first are titled "Name (continued)". An ``overlay`` (see
    `to_svg`) colours every page and gives each its colour bar."""
    pages = [replace(fig, pages=[])] + list(fig.pages)
    if overlay is not None:
        from .overlay import check_drawn, load_overlay

        overlay = load_overlay(overlay)
        check_drawn(fig.name, [s for page in pages for s in page.shapes], overlay)  # a name on any page will do
    with gc_paused():
        return [_svg(page, None, overlay, strict=False) for page in pages]


def _overlay(fig: Layout, overlay, strict: bool):
    """(the overlay, the new paints of the shapes it colours, the height its colour bar adds)."""
    if overlay is None:
        return None, {}, 0.0
    from .overlay import BAND, load_overlay, paints

    ov = load_overlay(overlay)
    return ov, paints(fig, ov, strict), BAND


def _repaint(s, new) -> tuple:
    """(fill, stroke, extra attributes) of a shape, with an overlay's colours where it gives them."""
    fill, stroke = getattr(s, "fill", None), getattr(s, "stroke", None)
    if new is None:
        return fill, stroke, ""
    return (new[0] or fill, new[1] or stroke,
            f' data-overlay="{new[2]!r}"' if new[2] is not None else ' data-overlay="none"')


def _svg(fig: Layout, title: str | None, overlay=None, strict: bool = True) -> str:
    ov, painted, band = _overlay(fig, overlay, strict)
    w, h = fmt(fig.width), fmt(fig.height + band)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'font-family="{FONT}" stroke-linecap="round" stroke-linejoin="round">',
        f"<title>{escape(title if title is not None else fig.name)}</title>",
        f'<rect width="{w}" height="{h}" fill="#ffffff"/>',
    ]
    for i, s in enumerate(fig.shapes):
        fill, stroke, note = _repaint(s, painted.get(i))
        if isinstance(s, Path):
            lines.append(f'<path {_meaning(s.role, s.meta)}{note} d="{_d(s.cmds)}" '
                         f'{_paint(fill, stroke, s.width, s.dash)}/>')
        elif isinstance(s, Circle):
            lines.append(f'<circle {_meaning(s.role, s.meta)}{note} cx="{fmt(s.cx)}" cy="{fmt(s.cy)}" '
                         f'r="{fmt(s.r)}" {_paint(fill, stroke, s.width, None)}/>')
        else:
            lines.append(_text(replace(s, color=fill) if fill else s))
    if ov is not None:
        from .overlay import colour_bar

        lines.extend(colour_bar(fig, ov, fig.height, fmt))
    lines.append("</svg>")
    return "\n".join(lines) + "\n"
