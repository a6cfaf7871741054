"""Backends, svg: a last pass that pulls apart places where three or more wires cross at one point.

Bends are S-curves whose two control points sit halfway across their gap, so
bends that share a gap all turn around the same x: two wires bending across
a third, or a bundle's tracks crossing a wire on the steep part of their turn,
can cross it within a pixel or two of each other, and the eye can no longer
tell which wire goes where. The layout does not move anything to fix that: a
bend's end points and the order of everything stay as they are; only the
shape of the bend changes (where it turns, earlier or later in its gap), and
a new shape is kept only if it removes the pile-up without adding crossings
near it. The result is still deterministic: candidates are tried in a fixed
order.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .geometry import Path
from .quality import ENDPOINT_PX, MERGE_PX, PILEUP_PX, _clusters, _near_pairs, _polylines

TURNS = (0.5, 0.36, 0.64, 0.26, 0.74, 0.44, 0.56)  # where a bend turns, as a fraction of its gap
MARGIN = 4.0       # px around a pile-up within which crossings are recounted
MAX_ROUNDS = 3
CELL = 48.0        # px: the grid crossings are looked for in (long runs are cut to it)


def _is_wire(s) -> bool:
    return isinstance(s, Path) and "wire" in s.role.split()


def _split(cmds) -> list[tuple]:
    subs: list[list] = []
    for c in cmds:
        if c[0] == "M" or not subs:
            subs.append([])
        subs[-1].append(c)
    return [tuple(s) for s in subs]


def _bend(sub) -> tuple | None:
    """(x0, y0, x1, y1) of an S-bend subpath (leaving and arriving level), else None."""
    if len(sub) == 2 and sub[0][0] == "M" and sub[1][0] == "C":
        x0, y0 = sub[0][1], sub[0][2]
        _, c1x, c1y, c2x, c2y, x1, y1 = sub[1]
        if abs(c1y - y0) < 1e-9 and abs(c2y - y1) < 1e-9 and abs(y1 - y0) > 0.5 and x1 > x0:
            return x0, y0, x1, y1
    return None


def _with_turn(sub, f: float) -> tuple:
    x0, y0, x1, y1 = _bend(sub)
    xm = x0 + (x1 - x0) * f
    return (("M", x0, y0), ("C", xm, y0, xm, y1, x1, y1))


def _box(poly) -> tuple[float, float, float, float]:
    xs = [p[0] for p in poly]
    ys = [p[1] for p in poly]
    return min(xs), min(ys), max(xs), max(ys)


def _piles(points) -> list[set[int]]:
    """The sets of subpaths (3 or more) crossing within PILEUP_PX of one another."""
    xy = [(x, y) for _a, _b, x, y in points]
    near = _near_pairs(xy, PILEUP_PX)
    involved = [{a, b} for a, b, _x, _y in points]
    for i, j in near:
        involved[i] = involved[i] | {points[j][0], points[j][1]}
        involved[j] = involved[j] | {points[i][0], points[i][1]}
    return [s for s in involved if len(s) >= 3]


def untangle(shapes: list) -> list:
    """The shapes with the bends of every pile-up reshaped where that pulls it apart (a new list)."""
    wires = [i for i, s in enumerate(shapes) if _is_wire(s)]
    subs: list[tuple] = []      # every wire subpath, as path commands
    owner: list[int] = []       # the shape it belongs to
    for i in wires:
        for sub in _split(shapes[i].cmds):
            subs.append(sub)
            owner.append(i)
    polys = [_polylines(s)[0] for s in subs]
    changed = False
    for _ in range(MAX_ROUNDS):
        points = _crossings(polys)
        piles = _piles(points)
        if not piles:
            break
        progress = False
        done: set[int] = set()
        for pile in piles:
            if pile & done:
                continue
            x0, y0, x1, y1 = _box([p for k in pile for p in polys[k]])
            near = [k for k, poly in enumerate(polys)
                    if _overlaps(_box(poly), (x0 - MARGIN, y0 - MARGIN, x1 + MARGIN, y1 + MARGIN))]
            base = _local(polys, near)
            best = None
            for k in sorted(pile):
                if _bend(subs[k]) is None:
                    continue
                for f in TURNS[1:]:
                    trial = list(polys)
                    trial[k] = _polylines(_with_turn(subs[k], f))[0]
                    score = _local(trial, near)
                    if score[0] < base[0] and score[1] <= base[1] and (best is None or score < best[0]):
                        best = (score, k, f)
            if best is not None:
                _, k, f = best
                subs[k] = _with_turn(subs[k], f)
                polys[k] = _polylines(subs[k])[0]
                done |= pile
                progress = changed = True
        if not progress:
            break
    if not changed:
        return shapes
    out = list(shapes)
    for i in wires:
        cmds = tuple(c for k, sub in enumerate(subs) if owner[k] == i for c in sub)
        if cmds != shapes[i].cmds:
            out[i] = replace(shapes[i], cmds=cmds)
    return out


def _crossings(polys) -> list[tuple[int, int, float, float]]:
    """Proper crossings between polylines, as quality's counter finds them, in time linear in the figure.

    Segments are put in the cells of a grid they touch (a long straight run in every cell along
    it), and only segments sharing a cell are intersected: wires far apart are never compared.
    """
    segs = []
    for k, poly in enumerate(polys):
        for (ax, ay), (bx, by) in zip(poly, poly[1:]):
            if ax == bx and ay == by:
                continue
            segs.append((ax, ay, bx, by, k))
    if len(segs) < 2:
        return []
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (ax, ay, bx, by, _k) in enumerate(segs):
        for cx in range(math.floor(min(ax, bx) / CELL), math.floor(max(ax, bx) / CELL) + 1):
            for cy in range(math.floor(min(ay, by) / CELL), math.floor(max(ay, by) / CELL) + 1):
                cells.setdefault((cx, cy), []).append(i)
    pairs = set()
    for members in cells.values():
        for n, i in enumerate(members):
            ki = segs[i][4]
            for j in members[n + 1:]:
                if segs[j][4] != ki:
                    pairs.add((i, j) if i < j else (j, i))
    if not pairs:
        return []
    arr = np.array(segs, dtype=float)
    a, b = (np.array(v, dtype=np.int64) for v in zip(*sorted(pairs)))
    x0, y0, x1, y1, sub = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4].astype(np.int64)
    rx, ry = x1[a] - x0[a], y1[a] - y0[a]
    sx, sy = x1[b] - x0[b], y1[b] - y0[b]
    qx, qy = x0[b] - x0[a], y0[b] - y0[a]
    den = rx * sy - ry * sx
    ok = np.abs(den) > 1e-9 * np.hypot(rx, ry) * np.hypot(sx, sy)
    den = np.where(ok, den, 1.0)
    t = (qx * sy - qy * sx) / den
    u = (qx * ry - qy * rx) / den
    ok &= (t >= -1e-9) & (t <= 1 + 1e-9) & (u >= -1e-9) & (u <= 1 + 1e-9)
    a, b, t = a[ok], b[ok], t[ok]
    px, py = x0[a] + t * rx[ok], y0[a] + t * ry[ok]
    sa, sb = sub[a], sub[b]
    ends = np.array([[p[0][0], p[0][1], p[-1][0], p[-1][1]] for p in polys])
    far = np.ones(len(px), bool)
    for s_ in (sa, sb):
        for j in (0, 2):
            far &= np.hypot(px - ends[s_, j], py - ends[s_, j + 1]) > ENDPOINT_PX
    by_pair: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for i in np.flatnonzero(far):
        p, q = int(sa[i]), int(sb[i])
        by_pair.setdefault((min(p, q), max(p, q)), []).append((float(px[i]), float(py[i])))
    out = []
    for pair in sorted(by_pair):
        for group in _clusters(sorted(by_pair[pair]), MERGE_PX, strict=True):
            out.append(pair + (sum(p[0] for p in group) / len(group), sum(p[1] for p in group) / len(group)))
    return out


def _overlaps(a, b) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _local(polys, near: list[int]) -> tuple[int, int]:
    """(pile-ups, crossings) among the subpaths `near`."""
    sub = [polys[k] for k in near]
    points = _crossings(sub)
    return len(_piles(points)), len(points)
