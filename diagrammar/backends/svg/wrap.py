"""Backends, svg: a figure too wide for a page, broken into rows (as Abbott lays out his U-Net).

The lane sweep draws one long strip. Printed 6.5 inches wide, a strip of
3,000 px has 1.4 pt labels, so a figure wider than a page is cut into rows.
A row may end only at a *cut*: the gap after a column's axis labels, where
every wire runs straight (``Layout.cuts``). Rows are filled greedily.

Wires that run on into the next row end in an arrowhead at the right of their
row and start again, with an arrowhead and their axis label, at the left of
the next one, in the same top-to-bottom order. A wire that merely passes
through a whole row (a long skip) is not drawn there: its row of origin
*stores* it (``→ name``) and the row that reads it *loads* it (``name →``),
which is how Abbott writes the U-Net's skips (``→ C_λ`` ... ``C_λ →``).
"""
from __future__ import annotations

import bisect
import re
from dataclasses import replace

from .geometry import (
    INK,
    LABEL_SIZE,
    MARGIN,
    Circle,
    LabelGeom,
    Layout,
    Path,
    Text,
    TrackGeom,
    _label_box,
    _poly,
    _shift,
    text_width,
)

PAGE_WIDTH = 760.0  # px; 10 px axis labels printed 6.5 in (468 pt) wide stay above 6 pt (468 / 76)
ROW_GAP = 10.0      # between the bottom of one row and the top of the next
ARROW = 6.0         # an arrowhead's length
STORE_RUN = 12.0    # wire drawn past a row's last cut, before the arrowhead
NAME_SIZE = LABEL_SIZE


# ---------------------------------------------------------------- shapes, moved and measured


def bbox(s) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of a shape (a path's control points included)."""
    if isinstance(s, Path):
        xs = [v for c in s.cmds if c[0] != "Z" for v in c[1::2]]
        ys = [v for c in s.cmds if c[0] != "Z" for v in c[2::2]]
        return min(xs), min(ys), max(xs), max(ys)
    if isinstance(s, Circle):
        return s.cx - s.r, s.cy - s.r, s.cx + s.r, s.cy + s.r
    x, y, w, h = _label_box(s.x, s.y, s.text, s.size, s.bold, s.anchor)
    return x, y, x + w, y + h


def subpaths(cmds) -> list[tuple]:
    out: list[list] = []
    for c in cmds:
        if c[0] == "M" or not out:
            out.append([])
        out[-1].append(c)
    return [tuple(p) for p in out]


def _straight(sub) -> tuple[float, float, float] | None:
    """(x0, x1, y) when a subpath is one horizontal line, x0 < x1; else None."""
    if len(sub) == 2 and sub[0][0] == "M" and sub[1][0] == "L" and abs(sub[0][2] - sub[1][2]) < 1e-6:
        x0, x1 = sorted((sub[0][1], sub[1][1]))
        if x1 - x0 > 1e-6:
            return x0, x1, sub[0][2]
    return None


# ---------------------------------------------------------------- choosing the rows


class _Row:
    __slots__ = ("s", "e", "dx", "dy", "shapes", "wires", "labels", "boxes", "tracks", "extra", "top", "bot",
                 "tracks_f")

    def __init__(self, s: float, e: float):
        self.s, self.e = s, e
        self.dx = self.dy = 0.0
        self.shapes: list[list] = [[], [], [], [], []]  # per layer, in body coordinates
        self.labels: list = []
        self.boxes: list = []
        self.tracks: list = []
        self.extra: list = []  # (layer, shape) already in page coordinates of the row (before dy)
        self.top = self.bot = 0.0
        self.tracks_f = None  # the row's squeeze of empty bands, for the track index


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


class _Zones:
    """What each cut asks of the rows beside it: room for loads on the left of the next row, for the
    arrowheads and stored names on the right of this one."""

    def __init__(self, body: Layout, parent: str = "", aliases: dict[str, str] | None = None):
        self.tracks = [t for t in body.tracks if t.parent == parent and t.x1 - t.x0 > 1e-6]
        self.cache: dict[float, tuple[float, float, float]] = {}
        self.prefix = parent + "." if parent else ""
        self.cuts = sorted(body.cuts)
        self._by_cut: dict[float, list] | None = None
        self.names: dict[str, str] = {}
        self.aliases = aliases or {}

    def name(self, wire: str) -> str:
        """What a stored wire is called: its name in the program, or a letter for a wire the program
        never named (``x:relu`` and the like), as Abbott writes ``C``."""
        v = self.names.get(wire)
        if v is None:
            local = wire[len(self.prefix):] if wire.startswith(self.prefix) else wire
            local = self.aliases.get(local, local)
            if _PLAIN.fullmatch(local):
                v = local
            else:
                taken = sum(1 for n in self.names.values() if len(n) == 1 and n.isupper())
                v = chr(ord("A") + taken % 26) + ("" if taken < 26 else str(taken // 26))
            self.names[wire] = v
        return v

    def crossing(self, x: float) -> list:
        """The tracks that run on across cut x (one that ends on it goes on bent in the next row)."""
        if self._by_cut is None:
            self._index()
        return self._by_cut.get(x, [])

    def _index(self):
        """Tracks by the cuts they cross, in one pass over the tracks (not one per cut)."""
        self._by_cut = {}
        cuts = self.cuts
        for t in self.tracks:
            i = bisect.bisect_right(cuts, t.x0 + 0.5)
            while i < len(cuts) and cuts[i] < t.x1 + 0.5:
                self._by_cut.setdefault(cuts[i], []).append(t)
                i += 1

    def _get(self, x: float) -> tuple[float, float, float]:
        v = self.cache.get(x)
        if v is None:
            ts = self.crossing(x)
            if not ts:
                v = (0.0, 0.0, 0.0)
            else:
                names = max(text_width(self.name(t.wire) + " →", NAME_SIZE) for t in ts) + 6.0
                labels = max((text_width(t.axis, LABEL_SIZE) for t in ts if t.axis), default=0.0) + 10.0
                right = STORE_RUN + 4.0 + max(text_width("→ " + self.name(t.wire), NAME_SIZE) for t in ts)
                v = (names, ARROW + labels, right)
            self.cache[x] = v
        return v

    def left(self, x: float) -> float:
        """Room a row that starts at cut x needs before it: loaded names, arrowheads, axis labels."""
        names, wire, _ = self._get(x)
        return names + wire

    def wire_start(self, x: float) -> float:
        """Where (in body coordinates, left of x) the wires of a row that starts at cut x begin."""
        return x - self._get(x)[1]

    def right(self, x: float) -> float:
        return self._get(x)[2]


def choose_rows(body: Layout, max_width: float, zones: _Zones | None = None) -> list[tuple[float, float]]:
    """Source x ranges of the rows: greedy, each row as wide as fits in max_width."""
    zones = zones or _Zones(body)
    end = body.width
    cuts = sorted(c for c in body.cuts if 1.0 < c < end - 1.0)
    if end + MARGIN <= max_width or not cuts:
        return [(0.0, end)]
    rows = []
    s, offset = 0.0, 0.0
    while True:
        if end - s + offset + MARGIN <= max_width:
            rows.append((s, end))
            return rows
        i = bisect.bisect_right(cuts, s + 1.0)
        if i == len(cuts):
            rows.append((s, end))
            return rows
        c = cuts[i]  # the first cut, even if the row is then too wide: nowhere else to break
        while i < len(cuts) and cuts[i] - s + offset + MARGIN <= max_width:
            if cuts[i] - s + offset + zones.right(cuts[i]) + MARGIN <= max_width:
                c = cuts[i]
            i += 1
        rows.append((s, c))
        s = c
        offset = MARGIN + zones.left(c)


# ---------------------------------------------------------------- the wrap


def row_breaks(body: Layout, max_width: float = PAGE_WIDTH, parent: str = "",
               aliases: dict[str, str] | None = None) -> frozenset:
    """The columns after which rows would break (indices into ``body.cuts``)."""
    ranges = choose_rows(body, max_width, _Zones(body, parent, aliases))
    return frozenset(body.cuts.index(e) for _, e in ranges[:-1])


def wrap(body: Layout, max_width: float = PAGE_WIDTH, parent: str = "",
         aliases: dict[str, str] | None = None, breaks: frozenset | None = None,
         mesh_axes: dict[str, str] | None = None) -> Layout:
    """The body broken into rows no wider than max_width (px), stacked top to bottom.

    A wire that goes on in a later row is labelled again at that row's start, with its mesh axis where
    `mesh_axes` splits it (``heads / model``, as `lanes.axis_label` writes it).

    The body is a Layout from the lane sweep (x from 0, y from 0) whose own tracks have
    `parent` as their parent; `breaks` (columns, from `row_breaks`) fixes where rows end.
    A body that fits, or has nowhere to cut, comes back squeezed but otherwise unchanged.
    """
    zones = _Zones(body, parent, aliases)
    if breaks is None:
        ranges = choose_rows(body, max_width, zones)
    else:
        ends = [body.cuts[c] for c in sorted(breaks)]
        starts_ = [0.0] + ends
        ranges = list(zip(starts_, ends + [body.width]))
    if len(ranges) == 1:
        return compacted(body)
    rows = [_Row(s, e) for s, e in ranges]
    starts = [r.s for r in rows]

    def row_of(x: float) -> int:
        return max(0, bisect.bisect_right(starts, x) - 1)

    for k, r in enumerate(rows):  # where each row starts on the page
        r.dx = 0.0 if k == 0 else MARGIN + zones.left(r.s) - r.s

    # the wire paths: their straight runs (by height and start) and where their other pieces start
    style: dict[tuple[float, float], Path] = {}
    bends_at: dict[float, list[float]] = {}
    for s in body.layers[1]:
        if isinstance(s, Path) and s.role == "wire":
            for sub in subpaths(s.cmds):
                st = _straight(sub)
                if st is None:
                    bends_at.setdefault(round(sub[0][2], 2), []).append(sub[0][1])
                else:
                    style.setdefault((round(st[2], 2), round(st[0], 1)), s)

    def active(t: TrackGeom, k: int) -> bool:
        r = rows[k]
        if t.x0 > r.s + 0.5 or t.x1 < r.e - 0.5:
            return True  # the run starts or ends in this row
        return any(r.s + 0.5 < x < r.e - 0.5 for x in bends_at.get(round(t.y, 2), ()))

    # the top-level runs that go on into another row, and the rows they are drawn in
    runs: dict[tuple[float, float], tuple] = {}   # (y, x0) -> (track, first row, last row, active per row)
    top_of: dict[tuple[str, float], float] = {}   # (wire, x0) -> y of its bundle's top track
    for t in zones.tracks:
        key = (t.wire, round(t.x0, 1))
        top_of[key] = min(top_of.get(key, t.y), t.y)
        k0, k1 = row_of(t.x0 + 1e-3), row_of(t.x1 + 1e-3)  # a run that ends on a cut bends in the next row
        if k0 != k1:
            runs[(round(t.y, 2), round(t.x0, 2))] = (t, k0, k1, [active(t, k) for k in range(k0, k1 + 1)])

    # shapes to rows; a run crossing a cut is split there and drawn only in the rows where it is active
    for li, layer in enumerate(body.layers):
        for s in layer:
            if not isinstance(s, Path):
                x0, _, x1, _ = bbox(s)
                rows[row_of((x0 + x1) / 2)].shapes[li].append(s)
                continue
            per_row: dict[int, list] = {}
            for sub in subpaths(s.cmds):
                st = _straight(sub)
                run = runs.get((round(st[2], 2), round(st[0], 2))) if st is not None and s.role == "wire" else None
                if run is not None:
                    x0, x1, y = st
                    t, k0, k1, act = run
                    for k in range(k0, k1 + 1):
                        if not act[k - k0]:
                            continue  # a long skip: stored before this row, loaded after it
                        a = max(x0, rows[k].s) if k == k0 else zones.wire_start(rows[k].s)
                        b = min(x1, rows[k].e) if k == k1 else rows[k].e + STORE_RUN - ARROW / 2
                        if b > a + 1e-6:
                            per_row.setdefault(k, []).extend((("M", a, y), ("L", b, y)))
                elif st is not None and row_of(st[0] + 1e-3) != row_of(st[1] - 1e-3):
                    x0, x1, y = st  # a separator or the like: cut where the rows end
                    for k in range(row_of(x0 + 1e-3), row_of(x1 - 1e-3) + 1):
                        per_row.setdefault(k, []).extend((("M", max(x0, rows[k].s), y),
                                                          ("L", min(x1, rows[k].e), y)))
                else:
                    x0, _, x1, _ = bbox(replace(s, cmds=sub))
                    per_row.setdefault(row_of((x0 + x1) / 2), []).extend(sub)
            for k, cmds in sorted(per_row.items()):
                rows[k].shapes[li].append(replace(s, cmds=tuple(cmds)))
    for b in body.boxes:
        rows[row_of(b.x + b.w / 2)].boxes.append(b)
    for i, lb in enumerate(body.labels):
        rows[row_of(lb.x + lb.w / 2)].labels.append((i, lb))

    # the ends of runs that go on: arrowheads, axis labels at a row's start, stored and loaded names
    new_labels: list[tuple[int, LabelGeom]] = []
    pieces: list[tuple[int, TrackGeom, tuple]] = []  # (row, track piece, its label: ("old", i) or ("new", j))
    for (y, _), (t, k0, k1, act) in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        path = style.get((round(t.y, 2), round(t.x0, 1)))
        color = path.stroke if path is not None and path.stroke else INK
        named = abs(top_of.get((t.wire, round(t.x0, 1)), t.y) - t.y) < 0.01  # a bundle's name goes once
        drawn = [k for k in range(k0, k1 + 1) if act[k - k0]]
        for k in drawn:
            r = rows[k]
            a, b = max(t.x0, r.s), min(t.x1, r.e)
            label = ("old", t.label) if k == k0 else ("none", -1)
            if k < k1:  # goes on after the cut: an arrowhead; a name when the next row it is drawn in is later
                xe = r.e + STORE_RUN
                r.shapes[2].append(replace(_arrow(xe, y, color), meta=(("wire", t.wire), ("axis", t.axis))))
                nxt = next((j for j in drawn if j > k), None)
                if named and nxt is not None and nxt > k + 1:
                    text = "→ " + zones.name(t.wire)
                    r.shapes[4].append(Text(xe + 4, y + 3.5, text, NAME_SIZE, INK, False, False, "start", "label store",
                                            (("wire", t.wire),)))
                    bx, by, bw, bh = _label_box(xe + 4, y + 3.5, text, NAME_SIZE)
                    r.labels.append((("store", id(t), k), LabelGeom(text, "store", bx, by, bw, bh, t.parent, t.wire)))
                b = xe
            if k > k0:  # comes from an earlier row: an arrowhead and its axis label at the row's start
                xs = zones.wire_start(r.s)
                r.shapes[2].append(replace(_arrow(xs + ARROW, y, color), meta=(("wire", t.wire), ("axis", t.axis))))
                a = xs
                if t.axis:
                    lx = xs + ARROW + 3
                    mesh = (mesh_axes or {}).get(t.axis)
                    text = f"{t.axis} / {mesh}" if mesh else t.axis
                    bx, by, bw, bh = _label_box(lx, y - 3.0, text, LABEL_SIZE)
                    label = ("new", len(new_labels))
                    new_labels.append((k, LabelGeom(text, "axis", bx, by, bw, bh, t.parent, t.wire, t.axis, y)))
                    r.shapes[4].append(Text(lx, y - 3.0, text, LABEL_SIZE, color, False, True, "start", "axis",
                                            (("wire", t.wire), ("axis", t.axis))))
                prev = max((j for j in drawn if j < k), default=None)
                if named and (prev is None or prev < k - 1):
                    text = zones.name(t.wire) + " →"
                    r.shapes[4].append(Text(xs - 3, y + 3.5, text, NAME_SIZE, INK, False, False, "end", "label load",
                                            (("wire", t.wire),)))
                    bx, by, bw, bh = _label_box(xs - 3, y + 3.5, text, NAME_SIZE, anchor="end")
                    r.labels.append((("load", id(t), k), LabelGeom(text, "load", bx, by, bw, bh, t.parent, t.wire)))
            pieces.append((k, replace(t, x0=a, x1=b), label))
    split = {id(t) for t, *_ in runs.values()}

    # empty bands squeezed out (a long skip that is not drawn leaves one), then the rows stacked
    for r in rows:
        _drop_orphan_labels(r)
        _compact(r)
    for r in rows:
        ys = [v for layer in r.shapes for s in layer if not _separator(s) for v in bbox(s)[1::2]]
        ys += [v for _, lb in r.labels for v in (lb.y, lb.y + lb.h)]
        r.top, r.bot = (min(ys), max(ys)) if ys else (0.0, 0.0)
        # a separator marks off things in the row; one above or below all of them marks off nothing
        r.shapes = [[s for s in layer if not _separator(s) or r.top < bbox(s)[1] < r.bot] for layer in r.shapes]
    cursor = rows[0].top
    for k, r in enumerate(rows):
        r.dy = cursor - r.top
        cursor = r.bot + r.dy + ROW_GAP

    # assembled in page coordinates
    layers: tuple = ([], [], [], [], [])
    for r in rows:
        for li in range(5):
            layers[li].extend(_shift(s, r.dx, r.dy) for s in r.shapes[li])
    labels: list[LabelGeom] = []
    old: dict[int, int] = {}
    for r in rows:
        for i, lb in r.labels:
            old[i] = len(labels)
            labels.append(replace(lb, x=lb.x + r.dx, y=lb.y + r.dy, line_y=lb.line_y + r.dy))
    new: list[int] = []
    for k, lb in new_labels:
        r = rows[k]
        new.append(len(labels))
        dy = _fy(r, lb.line_y) - lb.line_y + r.dy
        labels.append(replace(lb, x=lb.x + r.dx, y=lb.y + dy, line_y=lb.line_y + dy))
    boxes = [replace(b, x=b.x + r.dx, y=b.y + r.dy) for r in rows for b in r.boxes]
    tracks = []
    for t in body.tracks:
        if id(t) not in split:
            r = rows[row_of((t.x0 + t.x1) / 2)]
            tracks.append(replace(t, x0=t.x0 + r.dx, x1=t.x1 + r.dx, y=_fy(r, t.y) + r.dy,
                                  label=old.get(t.label, -1) if t.label >= 0 else -1))
    for k, t, (kind, i) in pieces:
        r = rows[k]
        lid = old.get(i, -1) if kind == "old" and i >= 0 else (new[i] if kind == "new" else -1)
        tracks.append(replace(t, x0=t.x0 + r.dx, x1=t.x1 + r.dx, y=_fy(r, t.y) + r.dy, label=lid))
    width = max(bbox(s)[2] for layer in layers for s in layer)
    return Layout(body.name, width, cursor - ROW_GAP - rows[0].top, [], boxes, labels, tracks, [],
                  body.in_ports, body.out_ports, layers, body.out_labels, [])


GAP = 8.0  # the most empty space left between two things stacked in a row


def _squeeze(intervals) -> "callable":
    """y -> y with every empty band taller than GAP between the intervals shrunk to GAP (monotone)."""
    merged: list[list[float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    gaps = [(merged[i][1], merged[i + 1][0]) for i in range(len(merged) - 1)
            if merged[i + 1][0] - merged[i][1] > GAP]
    if not gaps:
        return None
    starts = [g0 for g0, _ in gaps]
    removed = [0.0]
    for g0, g1 in gaps:
        removed.append(removed[-1] + (g1 - g0 - GAP))

    def f(y: float) -> float:
        i = bisect.bisect_right(starts, y) - 1
        if i < 0:
            return y
        g0, g1 = gaps[i]
        if y >= g1:
            return y - removed[i + 1]
        return y - removed[i] - max(0.0, (y - g0) - GAP)
    return f


def _drop_orphan_labels(r: "_Row"):
    """Axis labels with no wire under them in this row go.

    An output that is finished in an earlier row ends there with an arrowhead; the
    name it would get again at the figure's right edge lands in the last row, where
    nothing is drawn at its height.
    """
    runs = [st for s in r.shapes[1] if isinstance(s, Path) and s.role == "wire"
            for st in map(_straight, subpaths(s.cmds)) if st is not None]

    def carried(lb) -> bool:
        return any(abs(y - lb.line_y) < 0.6 and x0 <= lb.x + 1.0 and lb.x + lb.w - 1.0 <= x1 for x0, x1, y in runs)

    orphan = [lb.kind == "axis" and not carried(lb) for _, lb in r.labels]
    if not any(orphan):
        return
    orphans = [lb for (_, lb), o in zip(r.labels, orphan) if o]
    gone = {(lb.text, round(lb.line_y - 3.0, 2)) for lb in orphans}
    r.labels = [item for item, o in zip(r.labels, orphan) if not o]
    r.shapes[4] = [s for s in r.shapes[4] if not (isinstance(s, Text) and s.role == "axis"
                                                   and (s.text, round(s.y, 2)) in gone
                                                   and any(lb.x - 1 <= s.x <= lb.x + lb.w for lb in orphans))]


def _separator(s) -> bool:
    return isinstance(s, Path) and "separator" in s.role


def _occupied(shapes) -> list[tuple[float, float]]:
    out = []
    for s in shapes:
        if isinstance(s, Path) and "separator" in s.role:
            continue  # a separator goes where the space is, it does not hold it open
        if isinstance(s, Path) and s.role == "wire":
            # a wire holds open only the heights it runs along; a bend between them is elastic
            for sub in subpaths(s.cmds):
                for c in sub:
                    if c[0] != "Z":
                        out.append((c[-1] - 4.0, c[-1] + 4.0))
            continue
        x0, y0, x1, y1 = bbox(s)
        pad = 4.0 if isinstance(s, Path) and y1 - y0 < 0.5 else 0.5
        out.append((y0 - pad, y1 + pad))
    return out


def _map_y(s, f):
    if isinstance(s, Path):
        return replace(s, cmds=tuple(c if c[0] == "Z" else (c[0],) + tuple(f(v) if j % 2 else v
                                                                          for j, v in enumerate(c[1:]))
                                     for c in s.cmds))
    if isinstance(s, Circle):
        return replace(s, cy=f(s.cy))
    return replace(s, y=f(s.y))


def _compact(r: "_Row"):
    f = _squeeze(_occupied(s for layer in r.shapes for s in layer))
    if f is None:
        return
    r.shapes = [[_map_y(s, f) for s in layer] for layer in r.shapes]
    r.labels = [(i, replace(lb, y=f(lb.y), line_y=f(lb.line_y))) for i, lb in r.labels]
    r.boxes = [replace(b, y=f(b.y), h=f(b.y + b.h) - f(b.y)) for b in r.boxes]
    r.tracks_f = f


def compacted(body: Layout) -> Layout:
    """The body with its empty bands squeezed out."""
    f = _squeeze(_occupied(s for layer in body.layers for s in layer))
    if f is None:
        return body
    layers = tuple([_map_y(s, f) for s in layer] for layer in body.layers)
    labels = [replace(lb, y=f(lb.y), line_y=f(lb.line_y)) for lb in body.labels]
    boxes = [replace(b, y=f(b.y), h=f(b.y + b.h) - f(b.y)) for b in body.boxes]
    tracks = [replace(t, y=f(t.y)) for t in body.tracks]
    ys = [v for layer in layers for s in layer for v in bbox(s)[1::2]]
    top = min(ys) if ys else 0.0
    height = (max(ys) - top) if ys else body.height
    return Layout(body.name, body.width, height, [], boxes, labels, tracks, [], body.in_ports, body.out_ports,
                  layers, body.out_labels, body.cuts)


def _fy(r: "_Row", y: float) -> float:
    return r.tracks_f(y) if r.tracks_f is not None else y


def _arrow(x: float, y: float, color: str) -> Path:
    return _poly([(x - ARROW, y - 3.2), (x, y), (x - ARROW, y + 3.2)], color, None, 0.0, "arrow")


__all__ = ["wrap", "choose_rows", "PAGE_WIDTH", "bbox"]
