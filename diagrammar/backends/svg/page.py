"""Backends, svg: the whole figure: title, body, legend, and the public `layout` entry point."""
from __future__ import annotations

import bisect
import functools
from dataclasses import replace
from typing import NamedTuple

from ...ir import Diagram, Size
from .geometry import (
    BOX_SIZE,
    FILL,
    INK,
    LABEL_SIZE,
    MARGIN,
    PALETTE,
    SMALL,
    BoxGeom,
    LabelGeom,
    Layout,
    Path,
    Text,
    TrackGeom,
    _hline,
    _label_box,
    _poly,
    _rect,
    _shift,
    axis_colors,
    call_title,
    gc_paused,
    text_width,
)
from .lanes import _Builder
from .nodes import _Ctx
from .untangle import untangle
from .wrap import PAGE_WIDTH, bbox, row_breaks, wrap

TITLE_SIZE = 12.0
TITLE_WIDTH = 760.0


def _signature(d: Diagram) -> list[str]:
    """The circuit's signature as the title, wrapped after a comma when it is long."""
    parts = [f"{p.name}: {p.type}" for p in d.inputs]
    pieces = [f"{d.name}("] if parts else [f"{d.name}()"]
    for i, p in enumerate(parts):
        pieces[-1 if i == 0 else len(pieces) - 1] += p + ("," if i < len(parts) - 1 else ")")
        if i < len(parts) - 1:
            pieces.append(" ")
    pieces[-1] += f" → {d.output.type}"
    lines = [""]
    for piece in pieces:
        if lines[-1].strip() and text_width(lines[-1] + piece, TITLE_SIZE, True) > TITLE_WIDTH:
            lines.append("    " + piece.lstrip())
        else:
            lines[-1] += piece
    return lines


def _legend_axes(d: Diagram, depth: int) -> dict[str, Size]:
    """Every axis drawn (nested bodies only where they are expanded), with its size."""
    out: dict[str, Size] = {}

    def visit(diag: Diagram, dep: int):
        for w in diag.wires:
            for a in w.type.axes:
                out.setdefault(a.name, a.size)
        for b in diag.boxes:
            if b.body is None:
                continue
            if b.op == "repeat":
                visit(b.body, dep)
            elif dep > 0:
                visit(b.body, dep - 1)
    visit(d, depth)
    return out


def layout(diagram: Diagram, depth: int | None = 0, annotations: dict[str, str] | None = None,
           axis_formulas: dict[str, str] | None = None, *, inline: bool = False, one_row: bool = False,
           style: str = "screen", max_width: float | None = None, paged: bool = True,
           mesh_axes: dict[str, str] | None = None) -> Layout:
    """Place a diagram: boxes, wires, labels, a title, definitions of its sub-circuits and a legend of axes.

    Args:
        diagram: the typed diagram (``diagrammar.load(path)[name]``).
        depth: how many levels of sub-circuit calls to show (0: every call is a named block; None: all).
            By default each distinct sub-circuit is drawn once, below the figure, as a definition
            ("Name = body"), the way Abbott lays out a whole model; `repeat` bodies are always drawn once.
        annotations: dotted box path (as ``Diagram.walk`` names it) -> text written under the box.
        axis_formulas: axis name -> how its size was declared (``"d // heads"``), for the legend.
        inline: draw the shown calls expanded in place, as tinted panels, instead of as definitions.
        one_row: never break a wide figure into rows (nor a tall one into pages).
        style: "screen" (the default); "paper" for print: colours that stay apart in print and for
            colour-blind readers (Okabe and Ito's), rows wrapped narrower so that labels print larger
            (7.3 pt at 6.5 inches), and each input wire's size written on it (``x = 28``); "mono": the
            same in black.
        max_width: the width (px) a figure is wrapped to; by default 760 (640 for paper and mono),
            which keeps 10 px labels at 6 pt or more when the figure is printed 6.5 inches wide.
        paged: when the figure printed 6.5 inches wide would be over 9 inches tall, continue its
            definitions on more pages (``Layout.pages``); False keeps one tall page.
        mesh_axes: axis name -> the mesh axis it is split over; its wires are labelled ``heads / model``
            (docs/sharding.md; mark the boxes that communicate with ``annotations``).

    Returns:
        A Layout: shapes in paint order and an index of boxes, labels and tracks; the pages that
        continue a figure too tall for one are in its `pages`.

    Example:
        >>> import diagrammar
        >>> d = diagrammar.parse("axis d = 4\\ncircuit F(x: [d]) -> [d]:\\n    return relu(x)\\n")["F"]
        >>> fig = layout(d)
        >>> [t.axis for t in fig.tracks]
        ['d', 'd']
    """
    if style not in STYLES:
        raise ValueError(f"no style {style!r}; styles: {', '.join(STYLES)}")
    with gc_paused():
        return _layout(diagram, _levels(diagram, depth), annotations, axis_formulas, inline, one_row,
                       STYLES[style], max_width, paged, mesh_axes=mesh_axes)


class Style(NamedTuple):
    """A figure's look: its palette (None: the screen palette), the width rows wrap to, sizes on inputs."""
    palette: tuple | None
    max_width: float
    sizes_on_inputs: bool


# Okabe and Ito's palette (2008), safe for colour-blind readers and in print, without its yellow
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
STYLES = {
    "screen": Style(None, PAGE_WIDTH, False),
    "paper": Style(OKABE_ITO, 640.0, True),
    "mono": Style(("#222222",), 640.0, True),
}


def _levels(diagram: Diagram, depth: int | None) -> int:
    if depth is not None:
        return max(0, int(depth))
    deepest = 0
    stack = [(diagram, 0)]
    seen = set()
    while stack:
        d, k = stack.pop()
        if id(d) in seen:
            continue
        seen.add(id(d))
        deepest = max(deepest, k)
        for b in d.boxes:
            if b.body is not None:
                stack.append((b.body, k if b.op == "repeat" else k + 1))
    return deepest


def definitions(diagram: Diagram, depth: int) -> list[tuple[str, str, Diagram]]:
    """The distinct sub-circuits called within `depth` levels, in order of first call: (title, box path, body)."""
    out: list[tuple[str, str, Diagram]] = []
    seen: set = set()
    level = [(diagram, "")]
    for _ in range(depth):
        nxt = []
        for d, prefix in level:
            for path, box in _calls(d, prefix):
                title = call_title(box)
                if title in seen:
                    continue
                seen.add(title)
                out.append((title, path, box.body))
                nxt.append((box.body, path + "."))
        level = nxt
    return out


def bindings_of(diagram: Diagram, depth: int) -> dict[str, list[str]]:
    """Title -> every distinct binding its drawn definition stands for, in order of first call
    (a generic circuit called with two bindings is drawn once, captioned with both)."""
    out: dict[str, list[str]] = {}
    level = [(diagram, "")]
    for _ in range(depth):
        nxt = []
        for d, prefix in level:
            for path, box in _calls(d, prefix):
                seen = out.setdefault(call_title(box), [])
                binding = call_binding_of(box.body)
                if binding not in seen:  # the same body again calls the same things: not walked twice
                    seen.append(binding)
                    nxt.append((box.body, path + "."))
        level = nxt
    return out


def _binding_caption(bindings: list[str]) -> str:
    """"for h = hh, w = ww" under a generic circuit's heading; a second binding written out, more counted."""
    if len(bindings) <= 2:
        return "for " + "; and ".join(bindings)
    return f"for {bindings[0]}; and {len(bindings) - 1} more bindings"


def call_binding_of(body: Diagram) -> str:
    """The axes a generic circuit's drawn instance binds its name parameters to (``h = h2, w = w2``), or ""."""
    return ", ".join(f"{k} = {v}" for k, v in body.axis_args if isinstance(v, str))


def _calls(d: Diagram, prefix: str):
    for b in d.boxes:
        if b.body is None:
            continue
        if b.op == "repeat":
            yield from _calls(b.body, prefix + b.name + ".")
        else:
            yield prefix + b.name, b


def _placed(fig: Layout, dx: float, dy: float) -> Layout:
    """A body moved by (dx, dy), index included; its topmost shape lands at dy and `height` is what it spans."""
    ys = [v for layer in fig.layers for s in layer for v in bbox(s)[1::2]]
    ys += [v for lb in fig.labels for v in (lb.y, lb.y + lb.h)]
    if ys:
        dy -= min(ys)
        fig = replace(fig, height=max(ys) - min(ys))
    layers = tuple([_shift(s, dx, dy) for s in layer] for layer in fig.layers)
    labels = [replace(lb, x=lb.x + dx, y=lb.y + dy, line_y=lb.line_y + dy) for lb in fig.labels]
    boxes = [replace(b, x=b.x + dx, y=b.y + dy) for b in fig.boxes]
    tracks = [replace(t, x0=t.x0 + dx, x1=t.x1 + dx, y=t.y + dy) for t in fig.tracks]
    return Layout(fig.name, fig.width + dx, fig.height, [], boxes, labels, tracks, [], fig.in_ports,
                  fig.out_ports, layers, fig.out_labels, [])


def _body(diagram: Diagram, depth: int, ctx: _Ctx, prefix: str, one_row: bool, max_width: float) -> Layout:
    """One level of a diagram, wrapped into rows; laid out again when a row break falls where a
    wire's label would otherwise stay behind in the row before (every row labels its wires)."""
    fig = _Builder(diagram, depth, ctx, prefix=prefix).run()
    if one_row:
        return fig
    aliases = dict(diagram.aliases)
    breaks = row_breaks(fig, max_width, prefix[:-1], aliases)
    if breaks:
        fig = _Builder(diagram, depth, ctx, prefix=prefix, row_breaks=breaks).run()
    return wrap(fig, max_width, prefix[:-1], aliases, breaks, mesh_axes=ctx.mesh_axes)


DEF_GAP = 8.0     # above a definition's heading


def _head_width(title: str) -> float:
    """Room a definition's heading takes on the left of its body: the named block, "=" and a gap."""
    return text_width(title, BOX_SIZE, True) + 20.0 + MARGIN + 40.0


def _room_under_heading(fig: Layout, right: float) -> float:
    """How far down from a body's top its first shape or label left of `right` starts (px)."""
    items = [bbox(s) for layer in fig.layers for s in layer]
    items += [(lb.x, lb.y, lb.x + lb.w, lb.y + lb.h) for lb in fig.labels]
    if not items:
        return 0.0
    top = min(b[1] for b in items)
    return min((b[1] for b in items if b[0] < right), default=fig.height + top) - top


def _left_edge(fig: Layout) -> float:
    """Where a body's leftmost shape or label starts."""
    xs = [bbox(s)[0] for layer in fig.layers for s in layer] + [lb.x for lb in fig.labels]
    return min(xs, default=0.0)
DEF_HEAD = 30.0   # a definition's heading: the named block and "="


def _heading(title: str, y: float, path: str, caption: str = "") -> tuple[list, list, list]:
    """A definition's heading, Abbott's way: the collapsed block (a small prism with its name), then "=";
    `caption` (for a generic circuit: the binding it is drawn for) goes under the block."""
    meta = (("box", path), ("op", "definition"))
    w = text_width(title, BOX_SIZE, True) + 20.0
    h, d = 24.0, 4.0
    x0 = MARGIN
    shapes = [replace(_poly([(x0, y + d), (x0 + d, y), (x0 + w, y), (x0 + w, y + h - d), (x0 + w - d, y + h),
                             (x0 + w - d, y + d)], FILL["call_top"], INK, 1.0, "box heading"), meta=meta),
              replace(_rect(x0, y + d, w - d, h - d, 2.0, FILL["call"], INK, 1.1, "box heading"), meta=meta),
              Text(x0 + (w - d) / 2, y + d + (h - d) / 2 + BOX_SIZE * 0.36, title, BOX_SIZE, INK, True, False,
                   "middle", "box", meta),
              Text(x0 + w + 10, y + h / 2 + 7, "=", 20.0, INK, False, False, "start", "title")]
    for i, line in enumerate(_caption_lines(caption, _head_width(title) - MARGIN - 20.0)):
        shapes.append(Text(x0, y + h + SMALL + 3 + i * CAPTION_LINE, line, SMALL, "#555555", False, True, "start",
                           "caption"))
    labels: list = []  # the name is written in the block, as in a collapsed call
    boxes = [BoxGeom("=" + title, "definition", "definition", x0, y, w, h)]
    return shapes, labels, boxes


CAPTION_LINE = SMALL + 2.0


def _caption_lines(caption: str, width: float) -> list[str]:
    """A heading's caption broken at its commas into lines no wider than `width` (px) where it can be;
    each binding of a generic circuit ("; "-separated) starts a line of its own."""
    out: list[str] = []
    groups = caption.split("; ") if caption else []
    for g, group in enumerate(groups):
        lines: list[str] = []
        for part in group.split(", "):
            if lines and text_width(lines[-1] + ", " + part, SMALL) <= width:
                lines[-1] += ", " + part
            else:
                lines.append(part)
        end = ";" if g < len(groups) - 1 else ""
        out += [line + ("," if i < len(lines) - 1 else end) for i, line in enumerate(lines)]
    return out


def _caption_height(title: str, caption: str) -> float:
    """Room a heading's caption takes under its block (0 without one)."""
    n = len(_caption_lines(caption, _head_width(title) - MARGIN - 20.0))
    return n * CAPTION_LINE + 4.0 if n else 0.0


def _shelves(main: Layout, defs, max_width, y, parts, heads, free, captions=None) -> float:
    """The figure and its definitions in shelves: side by side while they fit the page's width.

    The figure comes first, without a heading; each definition has its heading on its left ("Name = body")
    when both fit the page's width, else above it.
    Returns the y below the last shelf; appends the placed bodies to `parts` and headings to `heads`,
    and sets `free` to [(x, y, None, height)]: the room right of each shelf, to the page's edge (the last
    shelf's with no height: the page may grow below it).
    """
    items = [] if main is None else [(None, "", main, main.width, 0.0)]
    for title, path, fig, narrow in defs:
        head_w = _head_width(title)
        if head_w + fig.width - _left_edge(fig) > max_width - MARGIN and narrow is not None:
            narrower = narrow(max_width - head_w)  # wrapped to leave room for the heading on its left
            if narrower.height < fig.height + DEF_HEAD - 1.0:
                fig = narrower
        left = _left_edge(fig)
        if head_w + fig.width - left <= max_width - MARGIN:  # "Name = body" on one line, as Abbott writes it
            items.append((title, path, fig, head_w + fig.width - left, head_w - left))
        else:  # the heading above a body as wide as the page
            items.append((title, path, fig, max(fig.width, head_w), None))
    shelf: list = []
    x = 0.0
    free.clear()

    def flush(y: float) -> float:
        if not shelf:
            return y
        top = y
        headed = any(item[0] is not None for _, item in shelf)
        if headed and y > 0:
            y += DEF_GAP
        tallest = 0.0
        for dx, (title, path, fig, _w, beside) in shelf:
            if title is None:  # the figure itself, under its title
                parts.append(_placed(fig, dx, y))
                tallest = max(tallest, fig.height)
                continue
            head = DEF_HEAD + _caption_height(title, (captions or {}).get(title, ""))
            if beside is None:  # under the heading, or beside it where the body's left end leaves room
                clear = _room_under_heading(fig, MARGIN + text_width(title, BOX_SIZE, True) + 20.0 + 40.0)
                lift = min(head, max(0.0, clear - 6.0))
                hy, by, h = y, y + head - lift, max(head, head - lift + fig.height)
            else:  # the heading level with the body's first wires
                hy, by, h = y + max(0.0, min(fig.height, 60.0) / 2 - 12.0), y, max(fig.height, head)
            shapes, labels, boxes = _heading(title, hy, path, (captions or {}).get(title, ""))
            heads.append(([_shift(sh, dx, 0.0) for sh in shapes],
                          [replace(lb, x=lb.x + dx) for lb in labels],
                          [replace(b, x=b.x + dx) for b in boxes]))
            parts.append(_placed(fig, dx + (beside or 0.0), by))
            tallest = max(tallest, h)
        free.append((x, top, None, y + tallest - top))  # room right of this shelf
        shelf.clear()
        return y + tallest

    for item in items:
        w = item[3]
        if shelf and x + w > max_width - MARGIN:
            y = flush(y)
            x = 0.0
        shelf.append((x, item))
        x += w + DEF_SIDE_GAP
    y = flush(y)
    if free:
        free[-1] = free[-1][:3] + (None,)
    return y


def _columns(main: Layout, defs, half: float, y, parts, heads, free, captions=None) -> float:
    """The figure, then its definitions in two columns (each goes under the shorter one); `free` is set to
    [(x, y, width, None)]: the room under the shorter column."""
    if main is not None:
        parts.append(_placed(main, 0.0, y))
        y += main.height + DEF_GAP
    bottoms = [y, y]
    for title, path, fig in defs:
        col = 0 if bottoms[0] <= bottoms[1] else 1
        dx = col * (half + DEF_SIDE_GAP)
        yy = bottoms[col]
        shapes, labels, boxes = _heading(title, yy, path, (captions or {}).get(title, ""))
        heads.append(([_shift(sh, dx, 0.0) for sh in shapes], [replace(lb, x=lb.x + dx) for lb in labels],
                      [replace(b, x=b.x + dx) for b in boxes]))
        head = DEF_HEAD + _caption_height(title, (captions or {}).get(title, ""))
        parts.append(_placed(fig, dx, yy + head))
        bottoms[col] = yy + head + fig.height + DEF_GAP
    short = 0 if bottoms[0] <= bottoms[1] else 1
    free[:] = [(short * (half + DEF_SIDE_GAP), bottoms[short] - DEF_GAP, half, None)]
    return max(bottoms) - DEF_GAP


DEF_SIDE_GAP = 18.0  # between two definitions side by side


def _styled_colors(diagram: Diagram, style: Style, depth: int) -> dict[str, str]:
    """A colour per axis the figure draws, axes drawn together in different colours (see axis_colors)."""
    return axis_colors(diagram, depth, style.palette or PALETTE)


def _layout(diagram, depth, annotations, axis_formulas, inline, one_row, style, max_width, paged=True,
            mesh_axes=None) -> Layout:
    max_width = max_width or style.max_width
    sizes = {}
    if style.sizes_on_inputs:
        sizes = {name: str(size) for name, size in _legend_axes(diagram, depth).items()
                 if size.is_const and str(size) != name}
    ctx = _Ctx(_styled_colors(diagram, style, depth), dict(annotations or {}), sizes)
    ctx.mesh_axes = dict(mesh_axes or {})
    main = _body(diagram, depth if inline else 0, ctx, "", one_row, max_width)
    subs = [] if inline else definitions(diagram, depth)

    def drawn(body, path, width):
        return _body(body, 0, ctx, path + ".", one_row, width)

    defs = [(title, path, drawn(body, path, max_width), None if one_row else functools.partial(drawn, body, path),
             body) for title, path, body in subs]
    captions = {title: _binding_caption(b) for title, b in bindings_of(diagram, depth).items() if any(b)}
    page = functools.partial(_page, diagram.name, ctx=ctx, drawn=drawn, captions=captions,
                             formulas=dict(axis_formulas or {}), max_width=max_width, one_row=one_row)
    whole = page(_signature(diagram), main, defs, _legend_axes(diagram, depth))
    if one_row or not paged or _fits(whole) or not defs:
        return whole
    return _paginate(diagram, depth if inline else 0, page, main, defs)


def _fits(fig: Layout) -> bool:
    """Whether a figure printed 6.5 in wide is at most 9 in tall (DESIGN.md's page)."""
    return fig.height * 6.5 / max(fig.width, 1.0) <= 9.0 + 1e-9


def _paginate(diagram: Diagram, depth: int, page, main: Layout, defs) -> Layout:
    """A figure too tall for one page, continued on more: the body with as many definitions as fit,
    then the rest, each page titled "Name (continued)" with a legend of the axes it draws.

    A definition that does not fit a page even alone gets a page of its own. The pages after
    the first are in `Layout.pages` of the first.
    """
    pages: list[Layout] = []
    rest = list(defs)
    head: Layout | None = main
    title = _signature(diagram)
    while rest or head is not None:
        fig = None
        for k in range(len(rest), 0, -1):
            axes = _page_axes(diagram, depth, head, rest[:k])
            cand = page(title, head, rest[:k], axes)
            if _fits(cand) or (k == 1 and head is None):
                fig, rest = cand, rest[k:]
                break
        if fig is None:  # the body alone, its definitions on the next pages
            fig = page(title, head, [], _page_axes(diagram, depth, head, []))
        pages.append(fig)
        head, title = None, [f"{diagram.name} (continued)"]
    return replace(pages[0], pages=pages[1:])


def _page_axes(diagram: Diagram, depth: int, head: Layout | None, defs) -> dict[str, Size]:
    """The axes a page draws: the body's (when it is on the page) and its definitions' bodies'."""
    out: dict[str, Size] = {}
    if head is not None:
        out.update(_legend_axes(diagram, depth))
    for *_, body in defs:
        for name, size in _legend_axes(body, 0).items():
            out.setdefault(name, size)
    return out


def _page(name: str, title_lines: list[str], main: Layout | None, defs, legend_axes: dict[str, Size], *, ctx,
          drawn, captions, formulas, max_width: float, one_row: bool) -> Layout:
    """One page: its title, the body (or None on a continued page), definitions and a legend."""
    title_y = MARGIN + 12
    top = title_y + 14 + (len(title_lines) - 1) * 16
    parts: list[Layout] = []
    heads: list[tuple[list, list, list]] = []
    free: list = []
    y = _shelves(main, [d[:4] for d in defs], max_width, top, parts, heads, free, captions)
    width_now = max([p.width for p in parts] + ([main.width] if main is not None else []))
    if len(defs) > 1 and not one_row and (y - top) * 6.5 / max(width_now, 1.0) > 6.0:
        # tall: try the definitions in two columns, each wrapped to half the page, and keep the shorter
        half = (max_width - DEF_SIDE_GAP) / 2
        narrow = [(title, path, drawn(body, path, half + MARGIN)) for title, path, *_, body in defs]
        parts2: list[Layout] = []
        heads2: list[tuple[list, list, list]] = []
        free2: list = []
        y2 = _columns(main, narrow, half, top, parts2, heads2, free2, captions)
        if y2 < y - 1.0:
            y, parts, heads, free = y2, parts2, heads2, free2
    shapes_title, title_labels = [], []
    bw = 0.0
    for i, line in enumerate(title_lines):
        ty = title_y + 16 * i
        shapes_title.append(Text(MARGIN, ty, line, TITLE_SIZE, INK, True, False, "start", "title"))
        lx, ly_, lw, lh = _label_box(MARGIN, ty, line, TITLE_SIZE, True)
        title_labels.append(LabelGeom(line, "title", lx, ly_, lw, lh))
        bw = max(bw, lw)
    # legend
    entries = []
    for axis, size in sorted(legend_axes.items()):
        f = formulas.get(axis)
        if str(size) == axis:
            text = f"{axis}: set when compiled"
        elif f and f.replace(" ", "") != str(size).replace(" ", ""):
            text = f"{axis} = {f} = {size}" if size.is_const else f"{axis} = {f}"
        else:
            text = f"{axis} = {size}"
        entries.append((axis, text, ctx.color(axis)))
    right = max(max((p.width for p in parts), default=0.0),
                max((h[2][0].x + h[2][0].w + 40 for h in heads), default=0.0))
    width = max(right + MARGIN, bw + 2 * MARGIN, 220.0)
    # the legend goes where the page ends soonest: under everything, or in the room beside a shelf
    # (or under the shorter column) when it fits there
    leg_y, leg_x, leg_w = y + 18, MARGIN, width
    _, _, below_h = _legend(entries, leg_y, width)
    end = leg_y + below_h
    for fx, fy, fw, fh in free:
        avail = width - fx - MARGIN if fw is None else min(fw, width - fx - MARGIN)
        if avail < 120 or not entries:
            continue
        _, _, h_here = _legend(entries, fy + 18, avail, fx + MARGIN)
        if fh is not None and 18 + h_here > fh:
            continue  # beside a shelf that is not the last, the legend must end with it
        if fy + 18 + h_here <= end - 1 and _legend_width(entries, avail) <= avail:
            leg_y, leg_x, leg_w, end = fy + 18, fx + MARGIN, avail, max(y, fy + 18 + h_here)
    leg_shapes, leg_labels, leg_h = _legend(entries, leg_y, leg_w, leg_x)
    height = max(y, leg_y + leg_h) + MARGIN
    layers: tuple = ([], [], [], [], [])
    labels, boxes, tracks = [], [], []
    for p in parts:
        base = len(labels)
        for li, layer in enumerate(p.layers):
            layers[li].extend(layer)
        labels.extend(p.labels)
        boxes.extend(p.boxes)
        tracks.extend(replace(t, label=t.label + base) if t.label >= 0 else t for t in p.tracks)
    for hs, hl, hb in heads:
        layers[2].extend(s for s in hs if not isinstance(s, Text))
        layers[4].extend(s for s in hs if isinstance(s, Text))
        labels.extend(hl)
        boxes.extend(hb)
    back, wires, glyphs, dots, texts = layers
    shapes = back + wires + glyphs + dots + texts + shapes_title + leg_shapes
    labels = labels + title_labels + leg_labels
    shapes, labels, tracks = _drop_repeated_labels(shapes, labels, tracks, boxes)
    shapes = untangle(shapes)
    return Layout(name, round(width, 2), round(height, 2), shapes, boxes, labels, tracks, entries)


def _drop_repeated_labels(shapes, labels, tracks, boxes, gap: float = 72.0):
    """Drop an axis label that repeats the one just before it on the same wire.

    That happens where a wire enters a panel (the body labels its inputs) or
    a `repeat`: the same name twice within a few characters says nothing new.
    A label stays when any box stands between the two.
    """
    lines: dict[tuple, list[int]] = {}
    for i, lb in enumerate(labels):
        if lb.kind == "axis":
            lines.setdefault((lb.text, round(lb.line_y, 2)), []).append(i)
    solid = sorted((b for b in boxes if b.kind not in ("panel", "repeat")), key=lambda b: b.x)
    xs = [b.x for b in solid]
    drop: dict[int, int] = {}
    for (text, y), idx in lines.items():
        idx.sort(key=lambda i: labels[i].x)
        for a, b in zip(idx, idx[1:]):
            la, lb = labels[a], labels[b]
            x0, x1 = la.x + la.w, lb.x
            if x1 - x0 > gap or x1 < x0:
                continue
            hi = bisect.bisect_left(xs, x1)
            if any(solid[j].x + solid[j].w > x0 and solid[j].y < y < solid[j].y + solid[j].h
                   for j in range(max(0, hi - 64), hi)):
                continue
            drop[b] = drop.get(a, a)
    if not drop:
        return shapes, labels, tracks
    gone = {(round(labels[i].x, 3), labels[i].text, round(labels[i].line_y, 3)) for i in drop}
    keep = [i for i in range(len(labels)) if i not in drop]
    new_index = {old: new for new, old in enumerate(keep)}
    for old, target in drop.items():
        new_index[old] = new_index[target]
    out_shapes = []
    for sh in shapes:
        if isinstance(sh, Text) and sh.role == "axis" and \
                (round(sh.x, 3), sh.text, round(sh.y + 3.0, 3)) in gone:
            continue
        out_shapes.append(sh)
    out_tracks = [TrackGeom(t.wire, t.axis, new_index[t.label] if t.label >= 0 else -1, t.y, t.x0, t.x1, t.parent)
                  for t in tracks]
    return out_shapes, [labels[i] for i in keep], out_tracks


def _legend_width(entries, width: float) -> float:
    cell = max(text_width(t, LABEL_SIZE) for _, t, _ in entries) + 34.0
    ncol = max(1, min(len(entries), int((width - 2 * MARGIN - 12) // cell)))
    return ncol * cell + 12


def _legend(entries, y0: float, width: float, x0: float = MARGIN):
    """A box listing every axis with its size, in as many columns as fit in `width`."""
    shapes: list = []
    labels: list = []
    if not entries:
        return shapes, labels, 0.0
    cell = max(text_width(t, LABEL_SIZE) for _, t, _ in entries) + 34.0
    ncol = max(1, min(len(entries), int((width - 2 * MARGIN - 12) // cell)))
    nrow = (len(entries) + ncol - 1) // ncol
    row_h = 15.0
    w = ncol * cell + 12
    h = 20 + nrow * row_h + 4
    shapes.append(_rect(x0, y0, w, h, 4.0, "#fbfbfb", "#c4cad3", 0.8, "legend"))
    shapes.append(Text(x0 + 8, y0 + 13, "axes", SMALL + 1, "#555555", True, False, "start", "legend"))
    for i, (name, text, color) in enumerate(entries):
        r, c = divmod(i, ncol)
        x = x0 + 8 + c * cell
        y = y0 + 20 + r * row_h + 8
        shapes.append(Path(_hline(x, x + 18, y - 3.5), color, 2.0, None, None, "legend"))
        shapes.append(Text(x + 24, y, text, LABEL_SIZE, INK, False, False, "start", "legend"))
        bx, by, bw, bh = _label_box(x + 24, y, text, LABEL_SIZE)
        labels.append(LabelGeom(text, "legend", bx, by, bw, bh, "", "", name))
    return shapes, labels, h


def stack_pages(fig: Layout, gap: float = 0.0) -> Layout:
    """A figure's pages one under another as one Layout (for the screen, and for checks that look
    at everything a figure draws); a figure of one page is returned as it is."""
    if not fig.pages:
        return fig
    shapes, boxes, labels, tracks, legend = [], [], [], [], []
    y = 0.0
    for page in [replace(fig, pages=[])] + list(fig.pages):
        base = len(labels)
        shapes.extend(_shift(s, 0.0, y) for s in page.shapes)
        boxes.extend(replace(b, y=b.y + y) for b in page.boxes)
        labels.extend(replace(lb, y=lb.y + y, line_y=lb.line_y + y) for lb in page.labels)
        tracks.extend(replace(t, y=t.y + y, label=t.label + base if t.label >= 0 else -1) for t in page.tracks)
        legend.extend(e for e in page.legend if e not in legend)
        y += page.height + gap
    width = max([fig.width] + [p.width for p in fig.pages])
    return Layout(fig.name, width, round(y - gap, 2), shapes, boxes, labels, tracks, legend)
