"""Backends, tikz: the neural circuit diagram as a standalone LaTeX/TikZ document.

It draws the very shapes the SVG renderer draws (``backends.svg.layout``), one
TikZ command per shape, in points (1 px of the SVG = 1 pt) with y pointing
down. The document compiles on its own (``pdflatex figure.tex``) and the
``tikzpicture`` inside it can be pasted into a paper.

Example:
    >>> import diagrammar
    >>> d = diagrammar.parse("axis d = 4\\ncircuit F(x: [d]) -> [d]:\\n    return relu(x)\\n")["F"]
    >>> tex = render_tikz(d)
    >>> tex.startswith("\\\\documentclass") and "\\\\begin{tikzpicture}" in tex
    True
"""
from __future__ import annotations

from .svg.draw import fmt
from .svg.layout import Circle, Layout, Path, Text, gc_paused, layout

__all__ = ["render_tikz", "to_tikz"]

# characters LaTeX would choke on in text mode, as text-mode-safe math
_SYMBOLS = {
    "×": r"$\times$", "÷": r"$\div$", "√": r"$\surd$", "σ": r"$\sigma$", "Σ": r"$\Sigma$", "−": r"$-$",
    "≤": r"$\leq$", "≥": r"$\geq$", "²": r"$^{2}$", "³": r"$^{3}$", "∗": r"$\ast$", "→": r"$\rightarrow$",
    "μ": r"$\mu$", "θ": r"$\theta$", "·": r"$\cdot$", "⁻": r"$^{-}$", "½": r"$\frac{1}{2}$", "…": r"\dots{}",
    "∞": r"$\infty$", "⁰": r"$^{0}$", "¹": r"$^{1}$", "⁴": r"$^{4}$", "⁵": r"$^{5}$", "⁶": r"$^{6}$", "⁷": r"$^{7}$",
    "⁸": r"$^{8}$", "⁹": r"$^{9}$",
}
_ESCAPES = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
            "^": r"\^{}", "_": r"\_", "%": r"\%", "~": r"\~{}", "<": r"\textless{}", ">": r"\textgreater{}",
            "|": r"\textbar{}"}


def tex_escape(text: str) -> str:
    """Text as LaTeX source (ASCII only).

    >>> tex_escape("L_2 × d")
    'L\\\\_2 $\\\\times$ d'
    """
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch in _SYMBOLS:
            out.append(_SYMBOLS[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


def _pt(x: float, y: float) -> str:
    return f"({fmt(x)},{fmt(y)})"


def _path(cmds) -> str:
    parts = []
    for c in cmds:
        op = c[0]
        if op == "M":
            parts.append(_pt(c[1], c[2]))
        elif op == "L":
            parts.append("-- " + _pt(c[1], c[2]))
        elif op == "C":
            parts.append(f".. controls {_pt(c[1], c[2])} and {_pt(c[3], c[4])} .. {_pt(c[5], c[6])}")
        elif op == "Z":
            parts.append("-- cycle")
    return " ".join(parts)


def to_tikz(fig: Layout) -> str:
    """A layout as a standalone LaTeX document: one tikzpicture, a page, per page of the figure."""
    with gc_paused():
        return _tikz(fig)


def _tikz(fig: Layout) -> str:
    pages = [fig] + list(fig.pages)
    colors: dict[str, str] = {}
    for s in (s for page in pages for s in page.shapes):
        for c in (getattr(s, "stroke", None), getattr(s, "fill", None), getattr(s, "color", None)):
            if c:
                colors.setdefault(c.lower(), "")
    for i, c in enumerate(sorted(colors)):
        colors[c] = f"dg{i}"

    def col(c: str) -> str:
        return colors[c.lower()]

    lines = [
        r"\documentclass[tikz,border=4pt]{standalone}",
        r"\usepackage[T1]{fontenc}",
        r"\usepackage{lmodern}",
        r"% " + tex_escape(fig.name) + r": a neural circuit diagram drawn by diagrammar",
    ]
    for c, name in sorted(colors.items(), key=lambda kv: int(kv[1][2:])):
        lines.append(rf"\definecolor{{{name}}}{{HTML}}{{{c.lstrip('#').upper()}}}")
    lines.append(r"\begin{document}")
    for page in pages:
        lines += _picture(page, col)
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"


def _picture(fig: Layout, col) -> list[str]:
    """One page of a figure as a tikzpicture (the standalone class puts each on a page of its own)."""
    lines = [
        r"\begin{tikzpicture}[x=1pt, y=-1pt, line cap=round, line join=round, font=\sffamily]",
        rf"\useasboundingbox (0,0) rectangle {_pt(fig.width, fig.height)};",
    ]
    for s in fig.shapes:
        if isinstance(s, Path):
            opts = []
            if s.fill and s.stroke:
                cmd = r"\filldraw"
                opts += [f"fill={col(s.fill)}", f"draw={col(s.stroke)}", f"line width={fmt(s.width)}pt"]
            elif s.fill:
                cmd = r"\fill"
                opts.append(col(s.fill))
            else:
                cmd = r"\draw"
                opts += [col(s.stroke or "#000000"), f"line width={fmt(s.width)}pt"]
            if s.dash and s.stroke:
                on_off = s.dash.split()
                pat = " ".join(f"{'on' if i % 2 == 0 else 'off'} {v}pt" for i, v in enumerate(on_off))
                opts.append(f"dash pattern={pat}")
            lines.append(f"{cmd}[{', '.join(opts)}] {_path(s.cmds)};")
        elif isinstance(s, Circle):
            if s.fill and s.stroke:
                lines.append(rf"\filldraw[fill={col(s.fill)}, draw={col(s.stroke)}, line width={fmt(s.width)}pt] "
                             f"{_pt(s.cx, s.cy)} circle[radius={fmt(s.r)}];")
            elif s.fill:
                lines.append(rf"\fill[{col(s.fill)}] {_pt(s.cx, s.cy)} circle[radius={fmt(s.r)}];")
            else:
                lines.append(rf"\draw[{col(s.stroke or '#000000')}, line width={fmt(s.width)}pt] "
                             f"{_pt(s.cx, s.cy)} circle[radius={fmt(s.r)}];")
        elif isinstance(s, Text):
            anchor = {"start": "base west", "middle": "base", "end": "base east"}[s.anchor]
            font = rf"\fontsize{{{fmt(s.size)}}}{{{fmt(s.size * 1.2)}}}\selectfont"
            if s.bold:
                font += r"\bfseries"
            if s.italic:
                font += r"\itshape"
            lines.append(rf"\node[anchor={anchor}, inner sep=0pt, text={col(s.color)}, font={{\sffamily{font}}}] "
                         f"at {_pt(s.x, s.y)} {{{tex_escape(s.text)}}};")
    lines.append(r"\end{tikzpicture}")
    return lines


def render_tikz(diagram, *, depth: int | None = 0, annotations: dict[str, str] | None = None,
                axis_formulas: dict[str, str] | None = None, **options) -> str:
    """The diagram as a standalone LaTeX document (TikZ), the same figure as ``render_svg``.

    Args:
        diagram: a checked circuit (``diagrammar.load(path)[name]``).
        depth: levels of sub-circuit calls shown (see ``layout``); **options as for ``layout``.
        annotations: dotted box path -> text written under that box.
        axis_formulas: axis -> declared size expression, for the legend.
    """
    fig = layout(diagram, depth=depth, annotations=annotations, axis_formulas=axis_formulas, **options)
    return to_tikz(fig)
