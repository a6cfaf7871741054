"""Backends, svg: the vertical order of lanes, chosen to avoid crossings (layered graph drawing).

The first sweep puts each new lane just below the lane it came from. That is a
good start and often a poor end: a wire bends up or down across every lane
that lies between where it is made and where it is read. This module takes
the lanes of a finished first sweep and looks for a better top-to-bottom order
by *sifting* (Matuszewski, Schönfeld and Molitor 1999, the method ELK and
dagre refine layers with): each lane in turn is moved to the rank, among all
ranks, where the estimated number of crossings is least, and the rounds
repeat until nothing improves. The sweep then runs again, inserting every
lane at its rank.

The estimate. A *bend* is a wire leaving one lane for another in the gap
between two columns: a box's output placed on a lane of its own, a copy
branching off, an input entering a box from another lane. A bend crosses
every track of every lane that is alive in that gap and lies strictly between
its two ends. An end may sit half a rank below its lane (the ports of a
box's second and later inputs, and of its later outputs, are stacked under its
main tracks), so a bend from above into such a port also crosses the box's
own main tracks. Swapping two neighbouring lanes changes only the terms in
which one of them is an end and the other is crossed, which makes each step
of a sift O(degree).
"""
from __future__ import annotations

from collections import defaultdict

MAX_ROUNDS = 4
WINDOW = 32  # a lane is sifted at most this many ranks up or down (keeps big figures linear)


class _Bend:
    __slots__ = ("a", "da", "b", "db", "pos", "w")

    def __init__(self, a: int, da: float, b: int, db: float, pos: int, w: int):
        self.a, self.da, self.b, self.db, self.pos, self.w = a, da, b, db, pos, w


def _model(builder):
    """Lanes (ids in first-sweep order), bends, where each lane is alive, and must-precede pairs."""
    order = []
    lane = builder.head
    while lane is not None:
        order.append(lane.id)
        lane = lane.next
    alive: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # lane -> (p0, p1, tracks)
    bends: list[_Bend] = []
    for band in builder.bands.values():
        n_tracks = len(band.axes)
        for s in band.segs:
            alive[s.lane.id].append((s.p0, s.p1, n_tracks))
            if s.start == "node":
                node = band.producer
                if node.lane is not None and node.lane is not s.lane:
                    bends.append(_Bend(node.lane.id, 0.5, s.lane.id, 0.0, 2 * node.col + 1, n_tracks))
            elif s.start == "branch" and s.prev is not None and s.prev.lane is not s.lane:
                bends.append(_Bend(s.prev.lane.id, 0.0, s.lane.id, 0.0, 2 * s.col - 1, n_tracks))
            for r in s.reads:
                if r.lane is s.lane and r.in_lane:
                    continue
                bends.append(_Bend(s.lane.id, 0.0, r.lane.id, _port_side(r), 2 * r.col - 1, n_tracks))
    before: list[tuple[int, int]] = [(a.id, b.id) for a, b, _ in builder.floors]
    if builder.nested:  # the parent block's ports fix the order of a body's inputs
        ins = [builder.bands[w].segs[0].lane.id for w in builder.in_node.outputs if w in builder.bands]
        before += list(zip(ins, ins[1:]))
    return order, bends, alive, before


def _port_side(r) -> float:
    """Where a read's ports sit against its node's main tracks, as a rank offset of the node's lane.

    0: the main input itself (or an output, or ports level with the main tracks); +0.5: ports
    stacked under the main tracks (a box's second input), so a bend from above crosses them;
    -0.5: ports merging into the top of the main tracks (a junction: `p * mask` where the mask
    has the top axes), so a bend from below crosses the tracks under them.
    """
    node = r.node
    if r.in_lane or node.kind == "out":
        return 0.0
    if node.kind != "junction" or node.prim is None or node.prim not in node.in_ports:
        return 0.5
    main = node.in_ports[node.prim]
    if max(r.ports) <= min(main) + 0.01 and min(main) + 0.01 < max(main):
        return -0.5
    if min(r.ports) >= max(main) - 0.01:
        return 0.5
    return 0.0


def lane_ranks(builder) -> dict[int, int] | None:
    """Lane id -> rank (0 at the top) with fewer estimated crossings; None when the first order is kept."""
    order, bends, alive, before = _model(builder)
    if len(order) < 3 or not bends:
        return None
    incident: dict[int, list[_Bend]] = defaultdict(list)
    for b in bends:
        if b.a != b.b:
            incident[b.a].append(b)
            incident[b.b].append(b)
    live_cache: dict[tuple[int, int], int] = {}

    def live(lane: int, pos: int) -> int:
        key = (lane, pos)
        v = live_cache.get(key)
        if v is None:
            v = sum(w for p0, p1, w in alive.get(lane, ()) if p0 <= pos <= p1)
            live_cache[key] = v
        return v

    must_above: dict[int, set[int]] = defaultdict(set)  # lane -> lanes that must stay above it
    must_below: dict[int, set[int]] = defaultdict(set)
    for a, b in before:
        must_above[b].add(a)
        must_below[a].add(b)
    rank = {lid: i for i, lid in enumerate(order)}

    def pair_cost(x: int, y: int) -> float:
        """Crossings of x's and y's tracks by the bends that end on x or y, at the current ranks."""
        total = 0.0
        own = incident.get(x, [])
        for b in own + [b for b in incident.get(y, ()) if b.a != x and b.b != x]:
            lo = rank[b.a] + b.da
            hi = rank[b.b] + b.db
            if lo > hi:
                lo, hi = hi, lo
            for c in (x, y):
                if lo < rank[c] < hi:
                    total += b.w * live(c, b.pos)
        return total

    def swap_delta(i: int) -> float:
        """Cost change when the lanes at ranks i and i + 1 trade places."""
        x, y = order[i], order[i + 1]
        before_cost = pair_cost(x, y)
        rank[x], rank[y] = i + 1, i
        after_cost = pair_cost(x, y)
        rank[x], rank[y] = i, i + 1
        return after_cost - before_cost

    def do_swap(i: int):
        x, y = order[i], order[i + 1]
        order[i], order[i + 1] = y, x
        rank[x], rank[y] = i + 1, i

    improved_any = False
    for _ in range(MAX_ROUNDS):
        improved = False
        for lid in sorted(incident, key=lambda l: (-len(incident[l]), l)):
            start = rank[lid]
            # up as far as allowed, keeping the running cost
            cost, best, best_at = 0.0, 0.0, start
            i = start
            while i > 0 and start - i < WINDOW and order[i - 1] not in must_above[lid]:
                cost += swap_delta(i - 1)
                do_swap(i - 1)
                i -= 1
                if cost < best - 1e-9:
                    best, best_at = cost, i
            # back down past the start and on
            while i < len(order) - 1 and i - start < WINDOW and order[i + 1] not in must_below[lid]:
                cost += swap_delta(i)
                do_swap(i)
                i += 1
                if cost < best - 1e-9:
                    best, best_at = cost, i
            while i > best_at:
                do_swap(i - 1)
                i -= 1
            while i < best_at:
                do_swap(i)
                i += 1
            if best_at != start:
                improved = improved_any = True
        if not improved:
            break
    if not improved_any:
        return None
    return dict(rank)
