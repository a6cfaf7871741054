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

from dataclasses import replace

from .geometry import Path, _bend
from .quality import _crossings, _polylines, involved
from .wrap import subpaths

TURNS = (0.5, 0.36, 0.64, 0.26, 0.74, 0.44, 0.56, 0.18, 0.82, 0.3, 0.7)  # where a bend turns, as a fraction of its gap
MARGIN = 4.0       # px around a pile-up within which crossings are recounted
MAX_ROUNDS = 3


def _is_wire(s) -> bool:
    return isinstance(s, Path) and "wire" in s.role.split()


def _bend_ends(sub) -> tuple | None:
    """(x0, y0, x1, y1) of an S-bend subpath (leaving and arriving level), else None."""
    if len(sub) == 2 and sub[0][0] == "M" and sub[1][0] == "C":
        x0, y0 = sub[0][1], sub[0][2]
        _, c1x, c1y, c2x, c2y, x1, y1 = sub[1]
        if abs(c1y - y0) < 1e-9 and abs(c2y - y1) < 1e-9 and abs(y1 - y0) > 0.5 and x1 > x0:
            return x0, y0, x1, y1
    return None


def _with_turn(sub, f: float) -> tuple:
    return _bend(*_bend_ends(sub), f)


def _box(poly) -> tuple[float, float, float, float]:
    xs = [p[0] for p in poly]
    ys = [p[1] for p in poly]
    return min(xs), min(ys), max(xs), max(ys)


def _piles(points) -> list[set[int]]:
    """The sets of subpaths (3 or more) crossing within PILEUP_PX of one another."""
    return [s for s in involved(points) if len(s) >= 3]


def untangle(shapes: list) -> list:
    """The shapes with the bends of every pile-up reshaped where that pulls it apart (a new list)."""
    wires = [i for i, s in enumerate(shapes) if _is_wire(s)]
    subs: list[tuple] = []      # every wire subpath, as path commands
    owner: list[int] = []       # the shape it belongs to
    for i in wires:
        for sub in subpaths(shapes[i].cmds):
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
                if _bend_ends(subs[k]) is None:
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


def _overlaps(a, b) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _local(polys, near: list[int]) -> tuple[int, int]:
    """(pile-ups, crossings) among the subpaths `near`."""
    sub = [polys[k] for k in near]
    points = _crossings(sub)
    return len(_piles(points)), len(points)
