"""Backends, svg: the lane sweep that places one level of a diagram (no SVG text).

`layout(diagram)` turns the typed IR into positioned shapes (paths, circles,
texts) plus an index of what they mean (boxes, axis labels, wire tracks) that
tests and other renderers read. `draw.py` writes SVG and `tikz.py` writes TikZ
from the same shapes, so both show exactly the same figure.

How the figure is placed, in linear time (n boxes, w wires alive at once):

1. Columns. Boxes are layered along the topological order (a box sits one
   column right of its latest producer); parameters and constants sit just
   left of their first reader.
2. Lanes. Sweeping the columns left to right, every bundle (a wire of the IR)
   is put in a lane, a horizontal strip that keeps one vertical position.
   A box continues the lane of one input (the one in the oldest lane), so a
   chain of boxes stays on one straight line; a bundle still needed later is
   copied onto a new lane below (a copy dot), which is how a residual's skip
   path runs under its block. A lane records, per column, how far its wires,
   labels and box glyphs reach above and below its line.
3. Vertical order. A new lane is linked in just below its parent, so the
   order of lanes alive at the same time never changes. Adjacent live lanes
   give constraints (lower one's line >= upper one's line + both reaches +
   a gap), solved in that order (a longest path): a greedy track assignment.
4. Horizontal sizes. Each column is as wide as its widest glyph; each gap
   holds the bends leaving boxes, the axis labels, and the bends entering
   the next boxes, each zone only as wide as its widest content.

Every axis is one horizontal track; a box covers only the tracks it
consumes or produces, the others run past it. Text widths come from a fixed
table (DejaVu Sans metrics), so layout never depends on installed fonts.
"""
from __future__ import annotations

import bisect

from ...ir import Diagram
from .geometry import (
    BINARY_TEXT,
    BOT_PAD,
    COMMUTATIVE,
    FOLDABLE,
    KIND,
    LABEL_SIZE,
    LANE_GAP,
    LOOP,
    MARGIN,
    MIN_LABEL_GAP,
    PITCH,
    RELABEL_COLUMNS,
    STACK,
    TOP_PAD,
    Layout,
    _bend_width,
    _const_text,
    text_width,
    where_text,
)
from .glyphs import _GlyphsMixin
from .nodes import _axes_of, _Band, _Ctx, _Lane, _Node, _Out, _Read, _Seg
from .order import lane_ranks
from .ports import _PortsMixin


class _Builder(_PortsMixin, _GlyphsMixin):
    def __init__(self, diagram: Diagram, depth: int, ctx: _Ctx, prefix: str = "", nested: bool = False,
                 in_order: list[int] | None = None, origin_y: float = 0.0,
                 lane_rank: dict[int, int] | None = None, row_breaks: frozenset = frozenset()):
        self.row_breaks = row_breaks  # columns after which the figure wraps to a new row (wrap.py)
        self.lane_rank = lane_rank  # a second sweep: every lane goes in at this rank (see order.py)
        self._ranked: list[tuple[int, int]] = []  # (rank, lane id) of the lanes made so far, sorted
        self.origin_y = origin_y  # where the frame's top lands (the top level leaves room for a title)
        self.d = diagram
        self.depth = depth
        self.ctx = ctx
        self.prefix = prefix
        self.nested = nested
        n_in = sum(len(p.wires) for p in diagram.inputs)
        self.in_order = in_order if in_order is not None else list(range(n_in))
        self.types = {w.name: w.type for w in diagram.wires}
        self.aliases = dict(diagram.aliases)
        self.nodes: list[_Node] = []
        self.bands: dict[str, _Band] = {}
        self.lanes: list[_Lane] = []
        self.head: _Lane | None = None
        self.last: _Lane | None = None
        self.ncols = 0
        self.out_reads: list[_Read] = []
        self.floors: list[tuple[_Lane, _Lane, float]] = []

    # ------------------------------------------------ nodes and columns

    def make_nodes(self):
        d = self.d
        in_wires = [w for p in d.inputs for w in p.wires]
        self.in_wires = in_wires
        self.in_node = _Node(0, "in", "in", None, "", [], [in_wires[i] for i in self.in_order])
        nodes = [self.in_node]
        readers: dict[str, list] = {}
        for b in d.boxes:
            for w in b.inputs:
                readers.setdefault(w, []).append(b)
        outputs = set(d.output.wires)
        folded: dict[str, str] = {}  # const wire -> its text
        for b in d.boxes:
            if b.op == "const" and b.outputs and b.outputs[0] not in outputs:
                w0 = b.outputs[0]
                rs = readers.get(w0, [])
                if rs and all((r.op in FOLDABLE and len(r.inputs) == 2 and r.inputs.count(w0) == 1) or
                              (r.op == "where" and len(r.inputs) == 3 and r.inputs[0] != w0) for r in rs):
                    folded[b.outputs[0]] = _const_text(b.attr("value", ("num", 0.0)))
        for b in d.boxes:
            if b.op == "const" and b.outputs and b.outputs[0] in folded:
                continue
            inputs = [w for w in b.inputs if w not in folded]
            kind = KIND.get(b.op, "box")
            const_text = ""
            if b.op == "where" and len(inputs) < len(b.inputs):
                const_text = where_text(*(folded.get(w) for w in b.inputs[1:]))
                if len(inputs) == 1:
                    kind = "mark"
            elif kind == "junction" and len(inputs) == 1 and len(b.inputs) == 2:
                kind = "mark"
                sym = BINARY_TEXT[b.op]
                if b.inputs[0] in folded and b.op not in COMMUTATIVE:
                    const_text = f"{folded[b.inputs[0]]} {sym} ·"
                else:  # x + 1; 5 * x is written x * 5
                    c = folded.get(b.inputs[1], folded.get(b.inputs[0]))
                    const_text = f"{sym}{c}" if len(sym) == 1 else f"{sym} {c}"
            if kind in ("call", "scan") and self.depth > 0 and b.body is not None:
                kind = "panel"
            node = _Node(len(nodes), kind, b.op, b, self.prefix + b.name, inputs, list(b.outputs))
            node.const_text = const_text
            if kind in ("call", "scan"):  # a final state nobody reads is not drawn leaving the block
                node.unused = {k for k, w in enumerate(b.outputs) if w not in readers and w not in outputs}
            node.types = [self.types[w] for w in b.outputs]
            node.annotation = self.ctx.annotations.get(self.prefix + b.name, "")
            nodes.append(node)
        self._scales_on_arrows(nodes, readers, outputs)
        self.out_node = _Node(len(nodes), "out", "out", None, "", list(d.output.wires), [])
        nodes.append(self.out_node)
        self.nodes = nodes

    def _scales_on_arrows(self, nodes: list[_Node], readers: dict, outputs: set):
        """A contraction scaled by a constant (``dot(q, k, over = dk) / sqrt(dk)``) has the scale written on
        its cap's arrow, as Abbott writes ``∗k^-1/2``, not in a mark further along the wire."""
        made_by = {w: n for n in nodes for w in n.outputs}
        for n in nodes:
            if n.kind != "mark" or n.op not in ("mul", "div") or not n.const_text or len(n.inputs) != 1:
                continue
            src = made_by.get(n.inputs[0])
            if src is None or src.kind != "contract" or "scale" in src.g:
                continue
            if len(readers.get(n.inputs[0], ())) != 1 or n.inputs[0] in outputs:
                continue
            src.g["scale"] = n.const_text.replace("÷", "∗ ").replace("×", "∗ ") if n.op == "mul" else n.const_text
            n.kind = "scale"
            src.g["scale_node"] = n
            n.g["host"] = src

    def columns(self):
        producer: dict[str, _Node] = {}
        col: dict[int, int] = {0: 0}
        for w in self.in_node.outputs:
            producer[w] = self.in_node
        consumers: dict[int, list[_Node]] = {}
        sources = []
        for n in self.nodes[1:-1]:
            cs = [producer[w] for w in n.inputs if w in producer]
            for p in cs:
                consumers.setdefault(p.idx, []).append(n)
            real = [col[p.idx] for p in cs if p.kind != "source"]
            if n.kind == "source" and not real:
                sources.append(n)
                col[n.idx] = -1
            else:
                col[n.idx] = 1 + max(real, default=0)
            for w in n.outputs:
                producer[w] = n
        out_col = 1 + max(col.values(), default=0)
        col[self.out_node.idx] = out_col
        for w in self.out_node.inputs:
            p = producer.get(w)
            if p is not None:
                consumers.setdefault(p.idx, []).append(self.out_node)
        for n in sources:
            readers = consumers.get(n.idx, [])
            col[n.idx] = max(0, min((col[r.idx] for r in readers), default=2) - 1)
        for n in self.nodes:
            n.col = col[n.idx]
        self.ncols = out_col + 1
        self.producer = producer
        by_col: list[list[_Node]] = [[] for _ in range(self.ncols)]
        for n in self.nodes:
            by_col[n.col].append(n)
        for c in range(self.ncols):
            # the inputs first, sources last: a source's lane goes under its reader's input
            by_col[c].sort(key=lambda n: (n.kind != "in", n.kind == "source", n.idx))
        self.by_col = by_col

    # ------------------------------------------------ lanes

    def new_lane(self, parent: _Lane | None) -> _Lane:
        lane = _Lane(len(self.lanes), parent)
        self.lanes.append(lane)
        if self.lane_rank is not None:
            return self._insert_ranked(lane)
        if self.head is None:
            self.head = self.last = lane
            return lane
        anchor = parent.tail if parent is not None else self.last
        lane.next = anchor.next
        anchor.next = lane
        lane.key = (anchor.key + lane.next.key) / 2 if lane.next is not None else anchor.key + 1.0
        if anchor is self.last:
            self.last = lane
        p, steps = parent, 0
        while p is not None and p.tail is anchor and steps < 64:
            p.tail = lane
            p = p.parent
            steps += 1
        return lane

    def _insert_ranked(self, lane: _Lane) -> _Lane:
        """Link a lane in among those made so far, by its rank from order.lane_ranks."""
        r = self.lane_rank.get(lane.id, len(self.lane_rank) + lane.id)
        lane.key = float(r)
        at = bisect.bisect_left(self._ranked, (r, lane.id))
        self._ranked.insert(at, (r, lane.id))
        before = self.lanes[self._ranked[at - 1][1]] if at > 0 else None
        after = self.lanes[self._ranked[at + 1][1]] if at + 1 < len(self._ranked) else None
        lane.next = after
        if before is None:
            self.head = lane
        else:
            before.next = lane
        if after is None:
            self.last = lane
        return lane

    # ------------------------------------------------ the sweep

    def sweep(self):
        # consumers of every wire, by column
        cons: dict[str, list] = {}
        for n in self.nodes:
            for i, w in enumerate(n.inputs):
                cons.setdefault(w, []).append((n.col, n, i))
        self.cons = cons
        for c in range(self.ncols):
            claimed: set[int] = set()
            for n in self.by_col[c]:
                if n.kind == "in":
                    self.place_inputs(n)
                elif n.kind == "out":
                    self.place_outputs(n)
                else:
                    self.place_node(n, c, claimed)

    def _new_band(self, wire: str, producer: _Node, k: int, axes: list[str]) -> _Band:
        b = _Band(wire, self.types[wire], axes, producer, k)
        cs = self.cons.get(wire, [])
        b.consumers = cs
        b.last_col = max((c for c, _, _ in cs), default=producer.col)
        self.bands[wire] = b
        return b

    def place_inputs(self, n: _Node):
        for k, w in enumerate(n.outputs):
            lane = self.new_lane(None)  # siblings in input order: a child of one goes right under it
            axes = _axes_of(self.types[w])
            b = self._new_band(w, n, k, axes)
            c0 = 0 if self.nested else self._entry_col(w)
            seg = _Seg(b, lane, [i * PITCH for i in range(len(axes))], 2 * c0, "input", c0)
            b.segs.append(seg)
        n.lane = self.lanes[0] if self.lanes else None

    def axis_label(self, s: _Seg, axis: str) -> str:
        """The text of a track's axis label: the axis, and on an input its size where the style says so."""
        text = self.ctx.input_label(axis) if s.start == "input" and not self.nested else axis
        mesh = self.ctx.mesh_axes.get(axis)
        return f"{text} / {mesh}" if mesh else text

    def port_name(self, wire: str) -> str:
        """An input's name in the figure: what the program unpacked it as (`value`, not `state.1`)."""
        return self.aliases.get(wire, wire)

    def _entry_col(self, wire: str) -> int:
        """The column an input enters in: just before its first use, so that it does not run (and get
        crossed) all the way from the left edge. A body drawn in a panel takes its inputs at the edge."""
        first = min((c for c, _, _ in self.cons.get(wire, ())), default=1)
        return max(0, first - 1)

    def place_outputs(self, n: _Node):
        c = n.col
        seen: set[str] = set()
        last_lane = None
        for i, w in enumerate(n.inputs):
            b = self.bands.get(w)
            if b is None:
                continue
            seg = b.seg_at(2 * c - 1)
            if w not in seen:
                r = _Read(n, i, c, seg, seg.lane, list(seg.offs), True)
                seg.p1 = max(seg.p1, 2 * c)
                last_lane = seg.lane
            else:  # the same wire returned twice: a copy on a lane of its own
                lane = self.new_lane(last_lane or seg.lane)
                offs = [j * PITCH for j in range(len(b.axes))]
                lane.reach(2 * c, -TOP_PAD, offs[-1] + BOT_PAD)
                r = _Read(n, i, c, seg, lane, offs, False)
                seg.p1 = max(seg.p1, 2 * c - 1)
                last_lane = lane
            seen.add(w)
            seg.reads.append(r)
            self.out_reads.append(r)

    def _source_parent(self, n: _Node) -> _Lane | None:
        for _, reader, _ in self.cons.get(n.outputs[0], []) if n.outputs else []:
            for w in reader.inputs:
                b = self.bands.get(w)
                if b is not None and b.producer.kind != "source":
                    return b.seg_at(2 * n.col + 1).lane
        return self.last

    def place_node(self, n: _Node, c: int, claimed: set[int]):
        reads = []
        for i, w in enumerate(n.inputs):
            b = self.bands[w]
            reads.append((i, b, b.seg_at(2 * c - 1)))
        main = None
        if n.kind != "source":
            best = None
            for i, b, seg in reads:
                if seg.lane.id in claimed:
                    continue
                key = (seg.lane.id, i)
                if best is None or key < best:
                    best = key
            if best is not None:
                main = best[1]
        if main is not None:
            _, b, seg = reads[main]
            lane = seg.lane
            if b.last_col > c:  # still needed later: move the rest of it to a lane below
                skip = self.new_lane(lane)
                nseg = _Seg(b, skip, [j * PITCH for j in range(len(b.axes))], 2 * c, "branch", c, prev=seg)
                b.segs.append(nseg)
        else:
            parent = reads[0][2].lane if reads else self._source_parent(n)
            lane = self.new_lane(parent)
        claimed.add(lane.id)
        n.lane = lane
        n.main = main
        n.prim = main if main is not None else (0 if reads and n.kind != "source" else None)
        self.ports(n, reads)
        for i, b, seg in reads:
            in_lane = i == main
            r = _Read(n, i, c, seg, lane, n.in_ports[i], in_lane)
            seg.reads.append(r)
            seg.p1 = max(seg.p1, 2 * c - 1)
        lane.reach(2 * c, n.top, n.bottom)
        # outputs
        if self.lane_rank is not None and n.kind != "panel" and len(n.out_order) > 1:
            self._order_extra_outputs(n)
        prev_lane = lane
        main_seg = reads[main][2] if main is not None else None
        for rank, k in enumerate(n.out_order):
            if k in n.unused:
                continue
            w = n.outputs[k]
            spec = n.outs[k]
            b = self._new_band(w, n, k, spec.axes)
            if rank == 0:
                olane, offs = lane, list(spec.band)
            else:
                olane = self.new_lane(prev_lane)
                offs = [j * PITCH for j in range(len(spec.axes))]
                # no higher than where it leaves the box, so it leaves straight when it can
                self.floors.append((lane, olane, spec.ports[0]))
            prev_lane = olane
            seg = _Seg(b, olane, offs, 2 * c + 1, "node", c)
            b.segs.append(seg)
            # labels: a track that runs straight on keeps its label for a while
            if rank == 0 and n.prim is not None:
                src_axes = reads[n.prim][1].axes
                for t, a in enumerate(spec.axes):
                    if a in spec.passing and a in src_axes:
                        j = src_axes.index(a)
                        seg.passing[t] = True
                        straight = (main_seg is not None and abs(spec.ports[t] - offs[t]) < 0.01 and
                                    abs(main_seg.offs[j] - offs[t]) < 0.01 and
                                    abs(n.in_ports[n.prim][j] - offs[t]) < 0.01)
                        if straight and c - main_seg.label_col[j] < RELABEL_COLUMNS and \
                                not any(main_seg.label_col[j] <= k < c for k in self.row_breaks):
                            seg.labelled[t] = False
                            seg.inherit[t] = (main_seg, j)
                            seg.label_col[t] = main_seg.label_col[j]

    def _order_extra_outputs(self, n: _Node):
        """Stack a block's second and later output ports in the order their lanes will have.

        Those lanes are made next, one per output in `out_order`; their ranks (order.py) say
        where they go, so the ports are restacked to match and the wires leave without crossing.
        """
        extra = n.out_order[1:]
        used = [k for k in extra if k not in n.unused]
        first_id = len(self.lanes)
        rank_of = {k: self.lane_rank.get(first_id + i, 1 << 30) for i, k in enumerate(used)}
        wanted = sorted(used, key=lambda k: (rank_of[k], k)) + [k for k in extra if k in n.unused]
        if wanted == extra:
            return
        base = min(n.outs[k].ports[0] for k in extra)
        for k in wanted:
            ports = [base + j * PITCH for j in range(len(n.outs[k].ports))]
            n.outs[k] = _Out(n.outs[k].axes, ports, n.outs[k].band, n.outs[k].passing)
            base = ports[-1] + STACK

    # ------------------------------------------------ ports, per kind of node
    # ------------------------------------------------ vertical placement

    def place_lanes(self):
        order = []
        lane = self.head
        while lane is not None:
            lane.rank = len(order)
            order.append(lane)
            lane = lane.next
        for b in self.bands.values():
            for s in b.segs:
                top = min(s.offs) - TOP_PAD
                bot = max(s.offs) + BOT_PAD
                for p in range(s.p0, s.p1 + 1):
                    s.lane.reach(p, top, bot)
        buckets: dict[int, list[_Lane]] = {}
        for lane in order:
            for p in lane.prof:
                buckets.setdefault(p, []).append(lane)
        open_: dict[tuple[int, int], list] = {}
        ranges = []
        for p in sorted(buckets):
            ls = buckets[p]
            for m, l in zip(ls, ls[1:]):
                key = (m.id, l.id)
                mb, lt = m.prof[p][1], l.prof[p][0]
                st = open_.get(key)
                if st is not None and st[3] == p - 1:
                    st[3] = p
                    st[4] = max(st[4], mb)
                    st[5] = min(st[5], lt)
                else:
                    if st is not None:
                        ranges.append(tuple(st))
                    open_[key] = [m, l, p, p, mb, lt]
        ranges.extend(tuple(st) for st in open_.values())
        incoming: dict[int, list] = {}
        for m, l, p0, p1, mb, lt in ranges:
            incoming.setdefault(l.id, []).append((m, mb - lt + LANE_GAP))
        for m, l, d in self.floors:
            incoming.setdefault(l.id, []).append((m, d))
        for lane in order:
            lane.y = max((m.y + d for m, d in incoming.get(lane.id, ())), default=0.0)
        top = min((lane.y + r[0] for lane in order for r in lane.prof.values()), default=0.0)
        bottom = max((lane.y + r[1] for lane in order for r in lane.prof.values()), default=0.0)
        for lane in order:
            lane.y += self.origin_y - top
        self.height = bottom - top
        self.ranges = ranges

    # ------------------------------------------------ horizontal placement

    def place_columns(self):
        nc = self.ncols
        colw = [0.0] * nc
        for n in self.nodes:
            if n.kind not in ("in", "out"):
                colw[n.col] = max(colw[n.col], n.span)
        if not self.nested:
            for w in self.in_node.outputs:  # the input's name, in the column it enters in
                b = self.bands.get(w)
                c = b.segs[0].col if b is not None else 0
                colw[c] = max(colw[c], text_width(self.port_name(w), LABEL_SIZE) + 8.0)
            colw[-1] = max(colw[-1], 6.0)
        post = [0.0] * nc
        pre = [0.0] * nc
        lab = [0.0] * nc
        for b in self.bands.values():
            for s in b.segs:
                y0 = s.lane.y
                if s.start == "node":
                    n = b.producer
                    spec = n.outs[b.out_index]
                    for t in range(len(b.axes)):
                        dy = (n.lane.y + spec.ports[t]) - (y0 + s.offs[t])
                        post[n.col] = max(post[n.col], _bend_width(dy))
                elif s.start == "branch":
                    p = s.prev
                    for t in range(len(b.axes)):
                        dy = (p.lane.y + p.offs[t]) - (y0 + s.offs[t])
                        pre[s.col - 1] = max(pre[s.col - 1], _bend_width(dy))
                for r in s.reads:
                    for t in range(len(b.axes)):
                        dy = (r.lane.y + r.ports[t]) - (y0 + s.offs[t])
                        if abs(dy) > 0.01 or not r.in_lane:
                            pre[r.col - 1] = max(pre[r.col - 1], _bend_width(dy), 12.0)
                widths = [text_width(self.axis_label(s, a), LABEL_SIZE) + 6.0
                          for a, on in zip(b.axes, s.labelled) if on and a]
                wmax = max(widths, default=0.0)
                if s.start == "branch":
                    colw[s.col] = max(colw[s.col], wmax + 4.0)
                else:
                    c = b.producer.col if s.start == "node" else s.col
                    lab[c] = max(lab[c], wmax)
        x = 0.0 if self.nested else MARGIN
        self.x_left, self.x_right, self.x_post, self.x_lab = [0.0] * nc, [0.0] * nc, [0.0] * nc, [0.0] * nc
        for c in range(nc):
            self.x_left[c] = x
            x += colw[c]
            self.x_right[c] = x
            if c == nc - 1:
                break
            x += post[c]
            self.x_post[c] = x
            x += max(lab[c], MIN_LABEL_GAP)
            self.x_lab[c] = x
            x += pre[c]
        self.colw = colw
        self.width = x
        for n in self.nodes:
            c = n.col
            if n.kind == "in":
                n.x0 = n.in_x = n.out_x = self.x_right[0]
                continue
            if n.kind == "out":
                n.x0 = self.x_left[c]
                n.in_x = n.out_x = self.x_left[c] + colw[c]
                continue
            n.x0 = self.x_left[c] + (colw[c] - n.width) / 2
            if n.kind in ("mark", "junction"):
                n.in_x = n.out_x = n.x0 + n.width / 2
            elif n.kind in ("panel", "repeat"):
                n.in_x = n.x0 + n.g["frame_x"]
                n.out_x = n.in_x + n.frame.width
            elif n.kind == "scan":
                n.in_x = n.x0 + LOOP
                n.out_x = n.x0 + n.width - LOOP
            else:
                n.in_x = n.x0
                n.out_x = n.x0 + n.width

    # ------------------------------------------------ shapes

    def run(self) -> Layout:
        self.make_nodes()
        self.columns()
        self.sweep()
        if self.lane_rank is None:
            ranks = lane_ranks(self)
            if ranks is not None:  # sweep again with the lanes where they cross least
                return _Builder(self.d, self.depth, self.ctx, self.prefix, self.nested, self.in_order,
                                self.origin_y, lane_rank=ranks, row_breaks=self.row_breaks).run()
        self.place_lanes()
        self.place_columns()
        return self.emit()
