"""Backends, svg: measures of a drawn figure (crossings, pileups, label size, page height) and property checks.

The measures follow the definitions of the project's referee, ``svg_metrics.py``
(which lives outside the repository), so a figure can be scored from its
Layout in tests and benchmarks without writing and re-reading SVG:

- ``crossings``: proper intersection points between two wire subpaths of
  DIFFERENT wire paths, not within 2 px of an endpoint of either subpath (a
  shared start or end, a junction, is not a crossing); points of one pair of
  subpaths closer than 1 px count once. ``self_crossings``: the same between
  two subpaths of one path.
- ``pileups``: places where 3 or more subpaths cross within 3 px: crossing
  points whose 3 px neighbourhood of crossings involves 3 or more subpaths,
  grouped by 3 px links (one pileup per group).
- ``label_pt``: the smallest axis-label font, in points, when the figure is
  printed 6.5 in (468 pt) wide; ``page_height_in``: its height in inches then.

A wire is a Path shape whose role is "wire" (SVG: ``<path class="wire">``);
each of its subpaths (each M) is one wire subpath; curves are flattened into
16 straight segments; subpaths with identical geometry count once. An axis
label is a Text whose role is "axis". Roles are SVG classes, so both are read
as the referee reads classes: a role with the word "wire", a role naming
"axis" or "label", never one naming "legend". Coordinates
are taken at the precision ``draw.py`` writes them (two decimals), so
``measure(fig)`` and ``measure_svg(to_svg(fig))`` give the same numbers.

The property checks read the Layout's index (boxes, labels, tracks) and return
human-readable violations, an empty list when the figure is fine:
``label_overlaps``, ``panel_frame_crossings`` and ``undrawn_wires``.

Only numpy and the standard library: importing this module never imports jax.

Example:
    >>> import diagrammar
    >>> from diagrammar.backends.svg import layout
    >>> d = diagrammar.parse("axis d = 4\\ncircuit F(x: [d]) -> [d]:\\n    return relu(x)\\n")["F"]
    >>> m = measure(layout(d))
    >>> m["crossings"], m["pileups"], m["label_pt"] > 6
    (0, 0, True)
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

try:
    import numpy as np
except ImportError:  # the renderer needs only lark (the browser playground has no numpy): plain Python then
    np = None

from .geometry import Layout, Path, Text, call_title

__all__ = ["HEIGHT_IN_MAX", "LABEL_PT_MIN", "crossing_points", "label_overlaps", "measure", "measure_svg",
           "panel_frame_crossings", "undrawn_wires"]

CURVE_SEGMENTS = 16   # straight segments per flattened cubic
ENDPOINT_PX = 2.0     # a crossing this close to an end of either subpath is a touch, not a crossing
MERGE_PX = 1.0        # crossings of one pair of subpaths closer than this are one crossing
PILEUP_PX = 3.0       # radius within which 3+ subpaths crossing make a pileup
PRINT_WIDTH_PT = 468.0
PRINT_WIDTH_IN = 6.5
DECIMALS = 2          # draw.fmt writes coordinates with two decimals
LABEL_PT_MIN = 6.0    # DESIGN.md: axis labels at 6 pt or more when printed 6.5 in wide
HEIGHT_IN_MAX = 9.0   # ... and the figure at most 9 in tall
TOLERANCE = 0.5       # px: how far two things must overlap before a property check complains
CONTAINERS = ("panel", "repeat")   # boxes that contain other things: labels and wires inside are fine
UNCHECKED_LABELS = ("legend",)      # the legend is a key beside the figure, not part of it

# Bernstein weights of a cubic at t = 1/16 .. 16/16 (the start point is the previous point)
_CUBIC = [((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t * t, t ** 3)
          for t in ((i + 1) / CURVE_SEGMENTS for i in range(CURVE_SEGMENTS))]


# ---------------------------------------------------------------- wires as polylines


def _polylines(cmds) -> list[list[tuple[float, float]]]:
    """The subpaths of Path commands (M, L, C, Z) as polylines, cubics flattened."""
    subs: list[list[tuple[float, float]]] = []
    cur = None
    x = y = sx = sy = 0.0
    for c in cmds:
        op = c[0]
        if op == "Z":
            if cur is not None and (x, y) != (sx, sy):
                cur.append((sx, sy))
            x, y, cur = sx, sy, None
            continue
        if op == "M":
            x, y = c[1], c[2]
            sx, sy = x, y
            cur = [(x, y)]
            subs.append(cur)
            continue
        if cur is None:  # drawing on after a Z starts a new subpath where the last one started
            cur = [(x, y)]
            subs.append(cur)
        if op == "L":
            x, y = c[1], c[2]
            cur.append((x, y))
        elif op == "C":
            x1, y1, x2, y2, x3, y3 = c[1:7]
            for w0, w1, w2, w3 in _CUBIC:
                cur.append((w0 * x + w1 * x1 + w2 * x2 + w3 * x3, w0 * y + w1 * y1 + w2 * y2 + w3 * y3))
            cur[-1] = (x3, y3)
            x, y = x3, y3
        else:
            raise ValueError(f"unknown path command {op!r}")
    return subs


def _rounded(cmds) -> tuple:
    """Path commands at the precision the SVG writer prints them."""
    return tuple(c if c[0] == "Z" else (c[0],) + tuple(round(v, DECIMALS) for v in c[1:]) for c in cmds)


def _distinct_subpaths(paths) -> tuple[list[list[tuple[float, float]]], list[int]]:
    """Subpaths of every wire path (as polylines) and the index of the path each belongs to.

    Repeated points are dropped, subpaths of fewer than two points too, and a
    subpath with the same geometry as an earlier one (in either direction)
    counts once: a wire drawn twice is one wire.
    """
    subpaths, owner, seen = [], [], set()
    for k, cmds in enumerate(paths):
        for pts in _polylines(cmds):
            clean = [p for i, p in enumerate(pts)
                     if i == 0 or abs(p[0] - pts[i - 1][0]) > 1e-9 or abs(p[1] - pts[i - 1][1]) > 1e-9]
            if len(clean) < 2:
                continue
            key = tuple((round(x, 2), round(y, 2)) for x, y in clean)
            if key in seen or key[::-1] in seen:
                continue
            seen.add(key)
            subpaths.append(clean)
            owner.append(k)
    return subpaths, owner


# ---------------------------------------------------------------- crossings


CELL = 48.0  # px: the grid segments are bucketed in to find the pairs that may cross


def _candidate_pairs(x0, y0, x1, y1, sub):
    """Index pairs (a < b) of segments of different subpaths whose bounding boxes share a grid cell.

    Each segment goes in every cell its bounding box touches (a long straight run in every cell
    along it), so only segments near each other are ever compared: linear in the figure, where a
    sweep along x would pair every run with every other run stacked above or below it.
    """
    cells: dict[tuple[int, int], list[int]] = {}
    for i in range(len(x0)):
        for cx in range(math.floor(min(x0[i], x1[i]) / CELL), math.floor(max(x0[i], x1[i]) / CELL) + 1):
            for cy in range(math.floor(min(y0[i], y1[i]) / CELL), math.floor(max(y0[i], y1[i]) / CELL) + 1):
                cells.setdefault((cx, cy), []).append(i)
    pairs = set()
    for members in cells.values():
        for k, i in enumerate(members):
            for j in members[k + 1:]:
                if sub[i] != sub[j]:
                    pairs.add((i, j) if i < j else (j, i))
    return sorted(pairs)


def _candidate_arrays(x0, y0, x1, y1, sub):
    """`_candidate_pairs` as two index arrays."""
    pairs = _candidate_pairs(x0, y0, x1, y1, sub)
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = zip(*pairs)
    return np.array(a, np.int64), np.array(b, np.int64)


def _crossings(subpaths):
    """Proper crossings between subpaths, one row per merged point: (subpath a, subpath b, x, y), a < b."""
    if len(subpaths) < 2:
        return []
    if np is None:
        return _crossings_plain(subpaths)
    seg_sub = np.concatenate([np.full(len(p) - 1, k) for k, p in enumerate(subpaths)])
    pts = [np.asarray(p, dtype=float) for p in subpaths]
    x0 = np.concatenate([p[:-1, 0] for p in pts])
    y0 = np.concatenate([p[:-1, 1] for p in pts])
    x1 = np.concatenate([p[1:, 0] for p in pts])
    y1 = np.concatenate([p[1:, 1] for p in pts])
    a, b = _candidate_arrays(x0, y0, x1, y1, seg_sub)
    # segment a: P + t r, segment b: Q + u s; they cross where both parameters are in [0, 1]
    rx, ry = x1[a] - x0[a], y1[a] - y0[a]
    sx, sy = x1[b] - x0[b], y1[b] - y0[b]
    qx, qy = x0[b] - x0[a], y0[b] - y0[a]
    den = rx * sy - ry * sx
    ok = np.abs(den) > 1e-9 * np.hypot(rx, ry) * np.hypot(sx, sy)   # parallel segments never cross properly
    den = np.where(ok, den, 1.0)
    t = (qx * sy - qy * sx) / den
    u = (qx * ry - qy * rx) / den
    eps = 1e-9
    ok &= (t >= -eps) & (t <= 1 + eps) & (u >= -eps) & (u <= 1 + eps)
    a, t = a[ok], t[ok]
    sa, sb = seg_sub[a], seg_sub[b[ok]]
    px, py = x0[a] + t * (x1[a] - x0[a]), y0[a] + t * (y1[a] - y0[a])
    ends = np.array([[p[0][0], p[0][1], p[-1][0], p[-1][1]] for p in subpaths])
    far = np.ones(len(px), bool)
    for s in (sa, sb):
        for j in (0, 2):
            far &= np.hypot(px - ends[s, j], py - ends[s, j + 1]) > ENDPOINT_PX
    by_pair: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for i in np.flatnonzero(far):
        by_pair.setdefault((int(sa[i]), int(sb[i])), []).append((float(px[i]), float(py[i])))
    out = []
    for pair in sorted(by_pair):
        for group in _clusters(sorted(by_pair[pair]), MERGE_PX, strict=True):
            out.append(pair + (sum(p[0] for p in group) / len(group), sum(p[1] for p in group) / len(group)))
    return out


def _crossings_plain(subpaths):
    """`_crossings` without numpy: the same arithmetic, one candidate pair at a time (same result)."""
    x0, y0, x1, y1, seg_sub = [], [], [], [], []
    for k, p in enumerate(subpaths):
        for (ax, ay), (bx, by) in zip(p[:-1], p[1:]):
            x0.append(float(ax))
            y0.append(float(ay))
            x1.append(float(bx))
            y1.append(float(by))
            seg_sub.append(k)
    ends = [(p[0][0], p[0][1], p[-1][0], p[-1][1]) for p in subpaths]
    eps = 1e-9
    by_pair: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for a, b in _candidate_pairs(x0, y0, x1, y1, seg_sub):
        rx, ry = x1[a] - x0[a], y1[a] - y0[a]
        sx, sy = x1[b] - x0[b], y1[b] - y0[b]
        qx, qy = x0[b] - x0[a], y0[b] - y0[a]
        den = rx * sy - ry * sx
        if not abs(den) > 1e-9 * math.hypot(rx, ry) * math.hypot(sx, sy):
            continue  # parallel segments never cross properly
        t = (qx * sy - qy * sx) / den
        u = (qx * ry - qy * rx) / den
        if not (-eps <= t <= 1 + eps and -eps <= u <= 1 + eps):
            continue
        px, py = x0[a] + t * (x1[a] - x0[a]), y0[a] + t * (y1[a] - y0[a])
        sa, sb = seg_sub[a], seg_sub[b]
        if all(math.hypot(px - ends[s][j], py - ends[s][j + 1]) > ENDPOINT_PX for s in (sa, sb) for j in (0, 2)):
            by_pair.setdefault((sa, sb), []).append((px, py))
    out = []
    for pair in sorted(by_pair):
        for group in _clusters(sorted(by_pair[pair]), MERGE_PX, strict=True):
            out.append(pair + (sum(p[0] for p in group) / len(group), sum(p[1] for p in group) / len(group)))
    return out


def _clusters(points, radius: float, strict: bool) -> list[list[tuple[float, float]]]:
    """Points grouped by links shorter than `radius` (`strict`) or at most `radius` (single linkage)."""
    parent = list(range(len(points)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in _near_pairs(points, radius, strict):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list] = {}
    for i, p in enumerate(points):
        groups.setdefault(find(i), []).append(p)
    return list(groups.values())


def _near_pairs(points, radius: float, strict: bool = False) -> list[tuple[int, int]]:
    """Index pairs (i < j) of points closer than `radius` (`strict`) or at most `radius` apart (grid buckets)."""
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (x, y) in enumerate(points):
        cells.setdefault((math.floor(x / radius), math.floor(y / radius)), []).append(i)
    limit = radius * radius if strict else radius * radius + 1e-9
    out = []
    for (cx, cy), members in cells.items():
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for i in members:
                    for j in cells.get((cx + dx, cy + dy), ()):
                        if i < j:
                            d2 = (points[i][0] - points[j][0]) ** 2 + (points[i][1] - points[j][1]) ** 2
                            if d2 < limit if strict else d2 <= limit:
                                out.append((i, j))
    return out


def involved(points) -> list[set[int]]:
    """Per crossing point, the subpaths crossing within PILEUP_PX of it (3 or more: a pile-up there)."""
    xy = [(x, y) for _a, _b, x, y in points]
    sets = [{a, b} for a, b, _x, _y in points]
    for i, j in _near_pairs(xy, PILEUP_PX):
        sets[i] = sets[i] | {points[j][0], points[j][1]}
        sets[j] = sets[j] | {points[i][0], points[i][1]}
    return sets


def _pileups(points) -> int:
    """Groups of crossings where 3 or more subpaths cross within PILEUP_PX of each other."""
    dense = {i for i, s in enumerate(involved(points)) if len(s) >= 3}
    parent = {i: i for i in dense}

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    xy = [(x, y) for _a, _b, x, y in points]
    for i, j in _near_pairs(xy, PILEUP_PX):
        if i in dense and j in dense:
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    return len({find(i) for i in dense})


# ---------------------------------------------------------------- the measures


def _measures(paths, label_fonts, width: float, height: float) -> dict:
    subpaths, owner = _distinct_subpaths(paths)
    points = _crossings(subpaths)
    between = [p for p in points if owner[p[0]] != owner[p[1]]]
    label = min(label_fonts) * PRINT_WIDTH_PT / width if label_fonts else None
    return {
        "crossings": len(between),
        "self_crossings": len(points) - len(between),
        "pileups": _pileups(points),
        "label_pt": None if label is None else round(label, 2),
        "page_height_in": round(height * PRINT_WIDTH_IN / width, 2),
        "width": round(width, 2),
        "height": round(height, 2),
        "wires": len(subpaths),
    }


# roles are written as SVG classes; these read them as the referee does
_WIRE_ROLE = re.compile(r"(?<![A-Za-z0-9])wires?(?![A-Za-z0-9])", re.IGNORECASE)   # the word "wire" (or "wires")
_LABEL_ROLE = re.compile(r"axis|axes|label", re.IGNORECASE)                        # axis labels ("axis")
_LEGEND_ROLE = re.compile(r"legend", re.IGNORECASE)                                # the key, not the figure


def _is_wire(role: str) -> bool:
    return bool(_WIRE_ROLE.search(role)) and not _LEGEND_ROLE.search(role)


def _is_label(role: str) -> bool:
    return bool(_LABEL_ROLE.search(role)) and not _LEGEND_ROLE.search(role)


def _wire_paths(fig: Layout) -> list[tuple]:
    return [_rounded(s.cmds) for s in fig.shapes if isinstance(s, Path) and _is_wire(s.role)]


def measure(fig: Layout) -> dict:
    """Crossings, pileups, smallest axis label (pt at 6.5 in) and page height (in) of a laid-out figure.

    Returns:
        A dict with ``crossings``, ``self_crossings``, ``pileups``, ``label_pt``
        (None without axis labels), ``page_height_in``, ``width``, ``height``
        and ``wires`` (distinct wire subpaths), defined as in ``svg_metrics.py``.
    """
    fonts = [round(s.size, DECIMALS) for s in fig.shapes if isinstance(s, Text) and _is_label(s.role)]
    return _measures(_wire_paths(fig), fonts, round(fig.width, DECIMALS), round(fig.height, DECIMALS))


def crossing_points(fig: Layout) -> list[tuple[float, float]]:
    """Where wires of different paths cross (x, y), for reports: the points ``measure`` counts."""
    paths = _wire_paths(fig)
    subpaths, owner = _distinct_subpaths(paths)
    return [(round(x, 2), round(y, 2)) for a, b, x, y in _crossings(subpaths) if owner[a] != owner[b]]


_PATH_TOKEN = re.compile(r"([MLCZ])([^MLCZ]*)")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _parse_d(d: str) -> tuple:
    """Path data as draw.py writes it (absolute M, L, C and Z) back into Path commands."""
    cmds = []
    for op, args in _PATH_TOKEN.findall(d):
        vals = [float(v) for v in _NUMBER.findall(args)]
        arity = {"M": 2, "L": 2, "C": 6, "Z": 0}[op]
        if arity == 0:
            cmds.append(("Z",))
            continue
        for i in range(0, len(vals), arity):   # repeated coordinates repeat the command (M: as L)
            cmds.append((op if i == 0 or op != "M" else "L",) + tuple(vals[i:i + arity]))
    return tuple(cmds)


def measure_svg(text: str | bytes) -> dict:
    """The measures of ``measure``, read back from an SVG this package wrote.

    Only our own output is understood: wires are ``<path class="wire">`` with
    absolute M/L/C/Z data, axis labels ``<text class="axis" font-size=...>``,
    no groups or transforms; the size is the root's width and height.
    """
    root = ET.fromstring(text.encode("utf-8") if isinstance(text, str) else text)
    paths, fonts = [], []
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        role = el.get("class") or ""
        if tag == "path" and _is_wire(role):
            paths.append(_parse_d(el.get("d") or ""))
        elif tag == "text" and _is_label(role):
            fonts.append(float(el.get("font-size") or 16.0))
    return _measures(paths, fonts, float(root.get("width")), float(root.get("height")))


# ---------------------------------------------------------------- property checks


def _num(v: float) -> str:
    return f"{v:.1f}"


def _where(x0: float, y0: float, x1: float, y1: float) -> str:
    return f"x {_num(x0)}..{_num(x1)}, y {_num(y0)}..{_num(y1)}"


def _overlap_1d(a0, a1, b0, b1, tol: float):
    """Intervals [a0, a1] and [b0, b1] share more than `tol`; a point b0 == b1 must lie `tol` inside [a0, a1].
    Works elementwise on broadcast numpy arrays."""
    return np.where(b0 == b1, (a0 + tol < b0) & (b0 < a1 - tol), np.minimum(a1, b1) - np.maximum(a0, b0) > tol)


def _overlapping(rects_a, rects_b, tol: float) -> list[tuple[int, int]]:
    """Pairs (i, j) where rectangle i of `rects_a` and rectangle j of `rects_b` overlap by more than `tol`.

    Rectangles are (x0, y0, x1, y1); a horizontal line (y0 == y1) overlaps a
    rectangle when it runs through its inside (more than `tol` from its edges).
    """
    if not rects_a or not rects_b:
        return []
    a = np.asarray(rects_a, dtype=float)[:, None, :]
    b = np.asarray(rects_b, dtype=float)[None, :, :]
    hit = _overlap_1d(a[..., 0], a[..., 2], b[..., 0], b[..., 2], tol) & \
        _overlap_1d(a[..., 1], a[..., 3], b[..., 1], b[..., 3], tol)
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(hit))]


def _label_rect(lb):
    return (lb.x, lb.y, lb.x + lb.w, lb.y + lb.h)


def _describe_label(lb) -> str:
    what = f"{lb.kind} label {lb.text!r}"
    if lb.wire:
        what += f" of wire {lb.wire}"
    return f"{what} ({_where(*_label_rect(lb))})"


def _owns(lb, box) -> bool:
    """Whether a label belongs to a box, so may lie on it: a title written inside its box (a panel's
    name, a definition's heading), an annotation centred under its box.

    The index does not say which box a label belongs to (LabelGeom has no `box`
    field), so this is read from where the layout puts them.
    """
    if lb.kind == "title":
        return (box.x - TOLERANCE <= lb.x and lb.x + lb.w <= box.x + box.w + TOLERANCE and
                box.y - TOLERANCE <= lb.y and lb.y + lb.h <= box.y + box.h + TOLERANCE)
    if lb.kind == "annotation":
        return abs((lb.x + lb.w / 2) - (box.x + box.w / 2)) < TOLERANCE and lb.y + lb.h / 2 > box.y + box.h / 2
    return False


def label_overlaps(fig: Layout, tol: float = TOLERANCE) -> list[str]:
    """Labels that overlap a box, another label, or a wire track they do not name.

    Every label but the legend's is checked (axis, port, title, annotation, and
    any kind added later); panels and repeats are containers and never count,
    nor does the box a label belongs to (see `_owns`). An axis label may touch
    its own wire's line (the track at its `line_y`) but no other track.

    Returns:
        One sentence per overlap, with coordinates; empty when there is none.
    """
    index = [i for i, lb in enumerate(fig.labels) if lb.kind not in UNCHECKED_LABELS]
    labels = [fig.labels[i] for i in index]
    rects = [_label_rect(lb) for lb in labels]
    out = []
    for i, j in _overlapping(rects, rects, tol):
        if i < j:
            out.append(f"{_describe_label(labels[i])} overlaps {_describe_label(labels[j])}")
    solid = [b for b in fig.boxes if b.kind not in CONTAINERS]
    for i, j in _overlapping(rects, [(b.x, b.y, b.x + b.w, b.y + b.h) for b in solid], tol):
        lb, b = labels[i], solid[j]
        if not _owns(lb, b):
            out.append(f"{_describe_label(lb)} overlaps box {b.path} ({b.op}, {_where(b.x, b.y, b.x + b.w, b.y + b.h)})")
    tracks = fig.tracks
    for i, j in _overlapping(rects, [(t.x0, t.y, t.x1, t.y) for t in tracks], tol):
        lb, t = labels[i], tracks[j]
        own = (t.label >= 0 and t.label == index[i]) or \
            (lb.wire == t.wire and lb.axis == t.axis and abs(lb.line_y - t.y) < 0.01)
        if not own:
            out.append(f"{_describe_label(lb)} lies on the track of wire {t.wire} axis {t.axis!r} "
                       f"(y {_num(t.y)}, x {_num(t.x0)}..{_num(t.x1)})")
    return out


def _box_ports(diagram) -> dict[str, tuple[set[str], set[str], set[str]]]:
    """Dotted path of every box -> (dotted input wires, dotted output wires, batch axes), from the IR."""
    out = {}
    if diagram is None:
        return out
    for path, box in diagram.walk():
        prefix = path[:len(path) - len(box.name)]
        out[path] = ({prefix + w for w in box.inputs}, {prefix + w for w in box.outputs},
                     set(box.attr("batch", ()) or ()))
    return out


def panel_frame_crossings(fig: Layout, diagram=None, tol: float = TOLERANCE) -> list[str]:
    """Wire tracks that run through the frame of an expanded sub-circuit (a panel) without being its wires.

    A track crosses the left (right) edge of a panel when it runs horizontally
    from outside to inside (inside to outside) at a height strictly within the
    frame. That is right only for a wire the panel consumes or makes:

    - a wire of its body (drawn in the panel: its `parent` is the panel or
      inside it) never counts;
    - a run that crosses the left edge must end inside the panel where a body
      wire carries on at the same height (an input entering the body), and one
      that crosses the right edge must start right of every run of the body
      (an output leaving it, not a wire passing under the title strip);
    - a run through both edges is never right;
    - with the IR (`diagram`), an entering run must also be an input of the
      panel's box and a leaving one an output, on an axis that is not one of
      the box's batch axes: the wires a panel broadcasts over run past it.

    The Layout index alone cannot say which box a run ends at or starts from,
    nor whether its axis passes a box (TrackGeom has no such fields), so
    without the IR the check relies on where the body's runs are.

    Returns:
        One sentence per (track, panel), with coordinates; empty when there is none.
    """
    ports = _box_ports(diagram)
    out = []
    for p in fig.boxes:
        if p.kind != "panel":
            continue
        xl, xr, y0, y1 = p.x, p.x + p.w, p.y, p.y + p.h
        inside = p.path + "."
        # a wire of the body is drawn in the panel (its parent); its dotted path starts with the panel's,
        # but so does a tuple output of the panel itself ("lstm.0" of the box "lstm"): go by parent
        body = [t for t in fig.tracks if t.parent == p.path or t.parent.startswith(inside)]
        in_body = {id(t) for t in body}
        body_end = max((t.x1 for t in body), default=xl)
        ins, outs, batch = ports.get(p.path, (None, None, set()))
        frame = f"panel {p.path} (x {_num(xl)}..{_num(xr)}, y {_num(y0)}..{_num(y1)})"
        for t in fig.tracks:
            if not (y0 + tol < t.y < y1 - tol) or id(t) in in_body:
                continue
            left = t.x0 < xl - tol and t.x1 > xl + tol
            right = t.x0 < xr - tol and t.x1 > xr + tol
            if not (left or right):
                continue
            run = f"track of wire {t.wire} axis {t.axis!r} (y {_num(t.y)}, x {_num(t.x0)}..{_num(t.x1)})"
            if left and right:
                out.append(f"{run} runs through {frame}")
                continue
            if left:
                edge, verb, role, wires = "left", "ends", "input", ins
                joined = any(abs(b.y - t.y) < 0.01 and b.x0 >= t.x1 - tol for b in body)
                why = "no wire of the body carries it on at its height"
            else:
                edge, verb, role, wires = "right", "starts", "output", outs
                joined = t.x0 >= body_end - tol
                why = f"it starts left of where the body ends (x {_num(body_end)})"
            where = f"{run} crosses the {edge} edge of {frame} and {verb} inside it"
            if wires is not None and t.wire not in wires:
                out.append(f"{where}, but is not an {role} of the panel")
            elif t.axis in batch:
                out.append(f"{where}, but {t.axis!r} is a batch axis of the panel: it should run past it")
            elif not joined:
                out.append(f"{where}, but {why}")
    return out


def _circuit_key(box) -> str:
    """A sub-circuit as a definition names it: the circuit and its axis arguments (``MLP[hidden=256]``)."""
    return call_title(box)


def _drawn_levels(diagram, depth: int, expanded: set[str]):
    """(dotted prefix, diagram) of every level drawn, and the sub-circuits within `depth` never drawn.

    The top level is drawn, and `repeat` bodies always (in place). A call or
    scan within `depth` levels has its body drawn when the figure has a box
    for it that shows the body: a panel in place, or a definition below the
    figure (each distinct sub-circuit once); `expanded` holds their paths.

    Returns:
        (levels, missing): missing maps a sub-circuit's key to its first call's path.
    """
    levels, wanted, shown = [], {}, set()

    def visit(d, prefix: str, dep: int):
        levels.append((prefix, d))
        for b in d.boxes:
            if b.body is None:
                continue
            path = prefix + b.name
            if b.op == "repeat":
                visit(b.body, path + ".", dep)
            elif dep > 0:
                key = _circuit_key(b)
                wanted.setdefault(key, path)
                if path in expanded:
                    shown.add(key)
                    visit(b.body, path + ".", dep - 1)

    visit(diagram, "", depth)
    return levels, {k: p for k, p in wanted.items() if k not in shown}


def undrawn_wires(fig: Layout, diagram, depth: int) -> list[str]:
    """Wires of the IR (at the levels drawn at `depth`) without a track or without a label per axis.

    The levels drawn: the top level, `repeat` bodies always, and the bodies of
    calls and scans within `depth` levels, each distinct sub-circuit at least
    once (in place as a panel, a box of kind "panel" whose path is the call's, or
    as a definition, whose heading is a box of kind "definition" at path "=Title").

    A wire counts as labelled on an axis when one of its tracks shows a label:
    an axis label that names it (its `wire` and `axis`) on the track's line,
    or the axis label the track's index points at, if that lies on the track's
    line; or when the track carries straight on (same axis, same height, no
    gap) from tracks that show one (a wire that runs straight on is labelled
    once). A scalar needs a track only. A constant folded into the
    operation that reads it (its box is not drawn) is written there, not drawn.

    Returns:
        One sentence per sub-circuit never drawn and per missing track or label; empty when all is drawn.
    """
    drawn_boxes = {b.path for b in fig.boxes}
    expanded = {b.path for b in fig.boxes if b.kind == "panel"}
    in_place = set(expanded)  # calls drawn as panels (a definition's call is drawn collapsed)
    heads = {b.path[1:] for b in fig.boxes if b.kind == "definition"}  # "=Title": a definition's heading
    if heads:
        from .page import (
            definitions,  # a definition is drawn with the path of the sub-circuit's first call
        )
        expanded |= {path for title, path, _ in definitions(diagram, depth) if title in heads}
    tracks: dict[tuple[str, str], list] = {}
    for t in fig.tracks:
        tracks.setdefault((t.wire, t.axis), []).append(t)
    named = {(lb.wire, lb.axis, round(lb.line_y, 2)) for lb in fig.labels if lb.kind == "axis"}
    ending = {(t.axis, round(t.y, 2), round(t.x1, 2)): t for t in fig.tracks}

    def shows_label(t) -> bool:
        """A label names this run: its own, or the one its index points at, on its line."""
        if (t.wire, t.axis, round(t.y, 2)) in named:
            return True
        lb = fig.labels[t.label] if 0 <= t.label < len(fig.labels) else None
        return lb is not None and lb.kind == "axis" and lb.text == t.axis and abs(lb.line_y - t.y) < 0.01

    def labelled(t) -> bool:
        """The run shows a label, or carries straight on from runs of the same axis that do."""
        for _ in range(256):
            if shows_label(t):
                return True
            t = ending.get((t.axis, round(t.y, 2), round(t.x0, 2)))
            if t is None:
                return False
        return False

    levels, missing = _drawn_levels(diagram, depth, expanded)
    out = [f"sub-circuit {key} (first called as {path}) is within depth {depth} but its body is not drawn"
           for key, path in missing.items()]
    for prefix, level in levels:
        folded = {b.outputs[0] for b in level.boxes
                  if b.op == "const" and b.outputs and prefix + b.name not in drawn_boxes}
        read = {w for b in level.boxes for w in b.inputs} | set(level.output.wires)
        unused = {w for b in level.boxes if b.op in ("call", "scan") and prefix + b.name not in in_place
                  for w in b.outputs if w not in read}  # a collapsed block's result nothing reads: a port only
        for w in level.wires:
            if w.name in folded or w.name in unused:
                continue
            path = prefix + w.name
            for a in list(w.type.names) or [""]:
                runs = tracks.get((path, a), [])
                if not runs:
                    out.append(f"wire {path} ({w.type}) has no track for axis {a!r}" if a else
                               f"scalar wire {path} ({w.type}) has no track")
                elif a and not any(labelled(t) for t in runs):
                    where = "; ".join(_run_story(fig, t, ending) for t in runs)
                    out.append(f"wire {path} ({w.type}) shows no label for axis {a!r}: {where}")
    return out


def _run_story(fig: Layout, t, ending: dict) -> str:
    """Where a run is, which label its index points at, and the runs it carries straight on from."""

    def one(r) -> str:
        lb = fig.labels[r.label] if 0 <= r.label < len(fig.labels) else None
        points = "no label" if lb is None else \
            f"label {r.label} {lb.text!r} of wire {lb.wire or '-'} on line y {_num(lb.line_y)}"
        return f"{r.wire} y {_num(r.y)} x {_num(r.x0)}..{_num(r.x1)} -> {points}"

    chain = [one(t)]
    prev = ending.get((t.axis, round(t.y, 2), round(t.x0, 2)))
    while prev is not None and len(chain) < 8:
        chain.append(one(prev))
        prev = ending.get((prev.axis, round(prev.y, 2), round(prev.x0, 2)))
    return "track " + chain[0] + "".join(f", carrying on from {c}" for c in chain[1:])
