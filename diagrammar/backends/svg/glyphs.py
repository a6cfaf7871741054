"""Backends, svg: the shapes of a placed figure (wires, glyphs, dots, labels, panels)."""
from __future__ import annotations

from dataclasses import replace

from .geometry import (
    BINARY_TEXT,
    BOX_SIZE,
    COMMUTATIVE,
    FILL,
    INK,
    LABEL_SIZE,
    LANE_GAP,
    LOOP,
    PANEL_PAD,
    PORT_NAME_SIZE,
    SELECT_R,
    SMALL,
    BoxGeom,
    Circle,
    LabelGeom,
    Layout,
    Path,
    Text,
    TrackGeom,
    _bend,
    _const_text,
    _hline,
    _label_box,
    _poly,
    _rect,
    _shift,
    glyph_text,
    text_width,
    where_text,
)
from .nodes import _Band, _Node, _Seg


class _GlyphsMixin:
    def emit(self) -> Layout:
        back, wires, glyphs, dots, texts = [], [], [], [], []
        self.L = (back, wires, glyphs, dots, texts)
        self.boxes: list[BoxGeom] = []
        self._branch_shift: dict[int, float] = {}  # a copied segment -> how far along its parent's run it leaves
        self.labels: list[LabelGeom] = []
        self.tracks: list[TrackGeom] = []
        self.parent = self.prefix[:-1] if self.prefix else ""
        self.emit_separators()
        for n in self.nodes:
            self._start = [len(layer) for layer in self.L]
            self.emit_node(n)
            if n.kind not in ("in", "out"):
                self._tag_since(n)
        succ: dict[int, list[_Seg]] = {}
        for b in self.bands.values():
            for s in b.segs:
                if s.prev is not None:
                    succ.setdefault(id(s.prev), []).append(s)
        for b in self.bands.values():
            for s in b.segs:
                self.emit_segment(b, s, succ.get(id(s), []))
        in_ports = []
        for w in self.in_wires:
            b = self.bands.get(w)
            if b is None:
                in_ports.append({})
                continue
            s = b.segs[0]
            in_ports.append({a: s.lane.y + o for a, o in zip(b.axes, s.offs)})
        out_ports = [{} for _ in self.out_node.inputs]
        out_labels = [{} for _ in self.out_node.inputs]
        for r in self.out_reads:
            b = r.seg.band
            out_ports[r.index] = {a: r.lane.y + o for a, o in zip(b.axes, r.ports)}
            for t, a in enumerate(b.axes):
                lid = r.seg.label_ids[t]
                if lid >= 0 and r.in_lane:
                    out_labels[r.index][a] = (lid, self.labels[lid].x)
        return Layout(self.d.name, self.width, self.height, [], self.boxes, self.labels, self.tracks, [],
                      in_ports, out_ports, self.L, out_labels, [self.x_lab[c] for c in range(self.ncols - 1)])

    def _pos_x(self, p: int, end: bool) -> float:
        c = p // 2
        if p % 2 == 0:
            return self.x_right[c] if end else self.x_left[c]
        if c >= self.ncols - 1:
            return self.x_right[-1]
        return self.x_lab[c] if end else self.x_post[c]

    def emit_separators(self):
        """Dashed lines between the parts of a tuple (Abbott's notation), never between unrelated lanes.

        Two lanes side by side are parts of one tuple where they carry wires of one tuple value
        (a tuple input or result, the results of one box, one tuple argument of a call) or a
        copy and the lane it was copied from (a residual's skip path under its block).
        """
        groups = self._tuple_groups()
        cover: dict[tuple[int, int], _Seg] = {}
        for b in self.bands.values():
            for sg in b.segs:
                for p in range(sg.p0, sg.p1 + 1):
                    cover[(sg.lane.id, p)] = sg
        for m, l, p0, p1, _mb, _lt in self.ranges:
            good, pair = [], []
            for p in range(p0, p1 + 1):
                sm, sl = cover.get((m.id, p)), cover.get((l.id, p))
                good.append(None if sm is None or sl is None else _parts_of_a_tuple(sm, sl, groups))
                pair.append((sm, sl))
            for i, v in enumerate(good):  # a box between two stretches of the same tuple: go on past it
                if v is None:
                    good[i] = 0 < i < len(good) - 1 and good[i - 1] is True and good[i + 1] is True
            i = 0
            while i < len(good):
                if not good[i]:
                    i += 1
                    continue
                j = i
                while j + 1 < len(good) and good[j + 1]:
                    j += 1
                x0, x1 = self._pos_x(p0 + i, False), self._pos_x(p0 + j, True)
                ps = [p for p in range(p0 + i, p0 + j + 1) if p in m.prof and p in l.prof]
                mb = max((m.prof[p][1] for p in ps), default=0.0)
                lt = min((l.prof[p][0] for p in ps), default=0.0)
                y = (m.y + mb + l.y + lt) / 2
                # not when far apart (a dashed line in empty space separates nothing) or short;
                # data-wire: the parts it separates, those above first
                if x1 - x0 > 30 and ps and (l.y + lt) - (m.y + mb) <= LANE_GAP + 12:
                    parts = [sg for k in range(i, j + 1) for sg in pair[k] if sg is not None]
                    names = " ".join(dict.fromkeys(self.prefix + sg.band.wire for sg in
                                                   sorted(parts, key=lambda sg: sg.lane is not m)))
                    self.L[0].append(Path(_hline(x0, x1, y), "#a3acb8", 0.8, None, "4 3", "separator",
                                          (("wire", names),)))
                i = j + 1

    def _tuple_groups(self) -> dict[str, list[tuple[int, str, str]]]:
        """Wire -> the tuple values it is a part of: (number, where the tuple is, its box).

        A tuple is one only where it is whole: an input tuple where its parts come in, the
        results of a box where they leave it, a returned tuple or a call's tuple argument
        where its parts are read.
        """
        groups: dict[str, list[tuple[int, str, str]]] = {}
        count = 0

        def add(ws, where: str, box: str = ""):
            nonlocal count
            if len(set(ws)) > 1:
                for w in ws:
                    groups.setdefault(w, []).append((count, where, box))
                count += 1

        d = self.d
        for p in d.inputs:
            add(p.wires, "input")
        add(d.output.wires, "read")
        for b in d.boxes:
            add(b.outputs, "node", b.name)
            if b.body is not None:  # a call's arguments, as its circuit's parameters group them
                i = 0
                for p in b.body.inputs:
                    add(b.inputs[i:i + len(p.wires)], "read", b.name)
                    i += len(p.wires)
        return groups

    # ------------------------------------------------ what the shapes mean

    def _line(self, box) -> int | None:
        span = getattr(box, "span", None) if box is not None else None
        return span.line if span is not None else None

    def _wire_meta(self, b: _Band, axis: str) -> tuple:
        """A wire's meaning: its dotted path, the axis, the source line of the box that made it."""
        line = self._line(b.producer.box) if b.producer is not None else None
        meta = (("wire", self.prefix + b.wire),)
        if axis:
            meta += (("axis", axis),)
        return meta + ((("line", line),) if line is not None else ())

    def _tag_since(self, n: _Node):
        """Give the shapes drawn for node n since self._start the node's meaning."""
        for layer, start in zip(self.L, self._start):
            for k in range(start, len(layer)):
                layer[k] = self._with_meta(layer[k], n)
        self._start = [len(layer) for layer in self.L]

    def _with_meta(self, s, n: _Node):
        have = {k for k, _ in s.meta}
        add = []
        if s.role in ("box", "panel", "paren", "loop", "arrow", "title"):
            add.append(("class", f"op-{n.op}"))
        if "op" not in have:
            add.append(("op", n.op))
        if "box" not in have:
            add.append(("box", n.path))
        line = self._line(n.box)
        if "line" not in have and line is not None:
            add.append(("line", line))
        return replace(s, meta=s.meta + tuple(add))

    def _wire_style(self, dtype: str, axis: str) -> tuple[float, str | None]:
        if dtype != "float":
            return 1.4, "3 2"
        return (1.6, None) if axis else (1.2, "1.5 2")

    def emit_segment(self, b: _Band, s: _Seg, successors: list[_Seg]):
        wires, dots = self.L[1], self.L[3]
        ly = s.lane.y
        wpath = self.prefix + b.wire
        shift = self._fan_shifts(s, successors)
        for t, a in enumerate(b.axes):
            meta = self._wire_meta(b, a)
            y = ly + s.offs[t]
            color = self.ctx.color(a)
            width, dash = self._wire_style(b.dtype, a)
            pieces = []
            label_x = None
            if s.start == "input":
                x_h0 = self.x_right[s.col]
                label_x = self.x_post[s.col] + 3
            elif s.start == "node":
                n = b.producer
                spec = n.outs[b.out_index]
                c = n.col
                py = n.lane.y + spec.ports[t]
                xs = n.in_x if s.passing[t] else n.out_x
                if n.kind in ("panel", "repeat"):
                    if (b.out_index, a) in n.g["edge_out"]:
                        xs = n.x0 + n.width - n.g["side"]
                    reuse = n.g.get("out_labels", {}).get((b.out_index, a))
                    if reuse is not None and abs(py - y) < 0.01 and n.out_x - reuse[1] < 90 and s.labelled[t]:
                        s.labelled[t] = False
                        s.inherit[t] = ("label", reuse[0])
                if abs(py - y) > 0.01:
                    pieces.append(_hline(xs, self.x_right[c], py))
                    pieces.append(_fan_bend(self.x_right[c], py, self.x_post[c], y, spec.ports, s.offs, t))
                    x_h0 = self.x_post[c]
                else:
                    x_h0 = xs
                label_x = self.x_post[c] + 3
            else:  # a copy that branched off
                p = s.prev
                c = s.col
                py = p.lane.y + p.offs[t]
                pieces.append(_fan_bend(self.x_lab[c - 1] + self._branch_shift.get(id(s), 0.0), py, self.x_left[c], y,
                                        p.offs, s.offs, t))
                x_h0 = self.x_left[c]
                label_x = self.x_left[c] + 3
            x_h1 = x_h0
            branch: dict[float, int] = {}
            for r in s.reads:
                c = r.col
                ry = r.lane.y + r.ports[t]
                xe = r.node.in_x
                if r.node.kind in ("panel", "repeat") and (r.index, a) in r.node.g["edge_in"]:
                    xe = r.node.x0 + r.node.g["side"]
                xb = self.x_lab[c - 1]
                if r.in_lane and abs(ry - y) < 0.01:
                    x_h1 = max(x_h1, xe)
                    branch[xb] = branch.get(xb, 0)
                else:
                    xb += shift.get(id(r), 0.0)
                    pieces.append(_fan_bend(xb, y, self.x_left[c], ry, s.offs, r.ports, t))
                    if xe > self.x_left[c] + 0.01:
                        pieces.append(_hline(self.x_left[c], xe, ry))
                    x_h1 = max(x_h1, xb)
                    branch[xb] = branch.get(xb, 0) + 1
            for nxt in successors:
                xb = self.x_lab[nxt.col - 1] + shift.get(id(nxt), 0.0)
                x_h1 = max(x_h1, xb)
                branch[xb] = branch.get(xb, 0) + 1
            ended = not s.reads and not successors
            if ended:
                c = b.producer.col if s.start == "node" else s.col
                x_h1 = max(x_h0 + 8.0, self.x_lab[c] - 2.0 if c < self.ncols - 1 else x_h0 + 8.0)
            if x_h1 > x_h0 + 0.01:
                pieces.insert(0, _hline(x_h0, x_h1, y))
            if ended:
                pieces.append((("M", x_h1, y - 3.5), ("L", x_h1, y + 3.5)))
            if pieces:  # one path per track: its run and bends as subpaths
                wires.append(Path(tuple(c for cmds in pieces for c in cmds), color, width, None, dash, "wire", meta))
            for xb in sorted(branch):
                out = branch[xb] + (1 if x_h1 > xb + 0.5 else 0)
                if out >= 2:
                    dots.append(Circle(xb, y, 2.6, color, None, 1.0, "dot", meta))
            # the label
            lid = -1
            if a:
                if s.labelled[t]:
                    text = self.axis_label(s, a)  # the axis; on an input, its size too where the style says so
                    bx, by, bw, bh = _label_box(label_x, y - 3.0, text, LABEL_SIZE)
                    lid = len(self.labels)
                    self.labels.append(LabelGeom(text, "axis", bx, by, bw, bh, self.parent, wpath, a, y))
                    self.L[4].append(Text(label_x, y - 3.0, text, LABEL_SIZE, color, False, True, "start", "axis",
                                          meta))
                elif s.inherit[t] is not None:
                    src, j = s.inherit[t]
                    lid = j if src == "label" else src.label_ids[j]
            s.label_ids[t] = lid
            self.tracks.append(TrackGeom(wpath, a, lid, y, x_h0, x_h1, self.parent))
            if a and not self.nested and lid >= 0 and any(r.node.kind == "out" and r.in_lane for r in s.reads):
                self._label_output_end(a, y, x_h0, x_h1, lid, wpath, color, meta)

    def _label_output_end(self, a: str, y: float, x_start: float, x_end: float, lid: int, wpath: str, color: str,
                          meta):
        """An output wire named again at the right edge, as Abbott ends a figure, when its label is far back
        (and its own last run is long enough to hold the name clear of the box it leaves)."""
        w = text_width(a, LABEL_SIZE)
        if x_end - (self.labels[lid].x + self.labels[lid].w) < 160 or x_end - w - 3 < x_start + 24:
            return
        x = x_end - w - 3
        bx, by, bw, bh = _label_box(x, y - 3.0, a, LABEL_SIZE)
        if any(lb.x < bx + bw and bx < lb.x + lb.w and lb.y < by + bh and by < lb.y + lb.h for lb in self.labels):
            return  # something is written there already
        self.labels.append(LabelGeom(a, "axis", bx, by, bw, bh, self.parent, wpath, a, y))
        self.L[4].append(Text(x, y - 3.0, a, LABEL_SIZE, color, False, True, "start", "axis", meta))

    def _fan_shifts(self, s: _Seg, successors: list[_Seg]) -> dict[int, float]:
        """Where along the run each of several bends leaving one point starts (id -> dx).

        Bends that leave a run at one point and part ways all cross a wire just beside it
        at one place (three or more wires in one spot). They leave one after another
        instead, each at its own copy dot, the one going farthest first so that they
        do not cross each other.
        """
        y0 = s.lane.y + s.offs[0]
        leaves: dict[float, list[tuple[int, float, float]]] = {}
        for r in s.reads:
            dy = r.lane.y + r.ports[0] - y0
            if not (r.in_lane and abs(dy) < 0.01):
                leaves.setdefault(self.x_lab[r.col - 1], []).append((id(r), dy, self.x_left[r.col]))
        for nxt in successors:
            dy = nxt.lane.y + nxt.offs[0] - y0
            leaves.setdefault(self.x_lab[nxt.col - 1], []).append((id(nxt), dy, self.x_left[nxt.col]))
        out: dict[int, float] = {}
        for xb, items in leaves.items():
            if len(items) < 2:
                continue
            for side in ([it for it in items if it[1] > 0], [it for it in items if it[1] < 0]):
                side.sort(key=lambda it: -abs(it[1]))
                for i, (key, _dy, x_end) in enumerate(side):
                    out[key] = min(i * FAN_STEP, 0.4 * (x_end - xb))
        for nxt in successors:
            if id(nxt) in out:
                self._branch_shift[id(nxt)] = out[id(nxt)]
        return out

    def _box(self, n: _Node, kind: str, x: float, y: float, w: float, h: float):
        self.boxes.append(BoxGeom(n.path, n.op, kind, x, y, w, h, self.parent))

    def _text_in(self, cx: float, cy: float, n: _Node, anchor: str = "middle"):
        main, sup, bold = n.text
        if not main:
            return
        size = BOX_SIZE
        w_main = text_width(main, size, bold)
        w_sup = text_width(sup, SMALL) + 1 if sup else 0.0
        x = cx - (w_main + w_sup) / 2
        base = cy + size * 0.36
        self.L[4].append(Text(x, base, main, size, INK, bold, False, "start", "box"))
        if sup:
            self.L[4].append(Text(x + w_main + 1, base - size * 0.45, sup, SMALL, INK, False, True, "start", "box"))

    def emit_node(self, n: _Node):
        if n.kind == "in":
            if not self.nested:
                for w in n.outputs:
                    b = self.bands[w]
                    s = b.segs[0]
                    y = s.lane.y + s.offs[0] + 3.5
                    x = self.x_right[s.col] - 5
                    name = self.port_name(w)
                    bx, by, bw, bh = _label_box(x, y, name, LABEL_SIZE, anchor="end")
                    self.labels.append(LabelGeom(name, "port", bx, by, bw, bh, self.parent, self.prefix + w))
                    self.L[4].append(Text(x, y, name, LABEL_SIZE, "#444444", False, False, "end", "port",
                                          (("wire", self.prefix + w),)))
            return
        if n.kind == "out":
            return
        ly = n.lane.y
        g = n.g
        _back, wires, glyphs, dots, texts = self.L
        x0, w = n.x0, n.width
        kind = n.kind
        if kind in ("box", "reduce", "norm", "index", "soft", "bar", "call", "scan"):
            top, bot = ly + g["top"], ly + g["bot"]
            h = bot - top
            strided = n.op in ("conv", "conv_transpose") and any(v > 1 for v in (n.box.attr("stride", (1,)) or (1,)))
            if strided:  # a strided convolution shrinks its spatial wires: a trapezoid (a transposed one widens)
                inset = min(5.0, h / 4)
                left, right = (inset, 0.0) if n.op == "conv_transpose" else (0.0, inset)
                glyphs.append(_poly([(x0, top + left), (x0 + w, top + right), (x0 + w, bot - right), (x0, bot - left)],
                                    FILL["learned"], INK, 1.1, "box"))
                self._text_in(x0 + w / 2, (top + bot) / 2, n)
            elif kind == "box" or kind == "reduce":
                fill = FILL["learned"] if n.op in ("linear", "conv", "conv_transpose") else FILL["reduce"]
                glyphs.append(_rect(x0, top, w, h, 3.0, fill, INK, 1.1, "box"))
                self._text_in(x0 + w / 2, (top + bot) / 2, n)
            elif kind == "norm":  # Abbott's normalisation: a circle over the axes it normalises
                r = min(w, h) / 2
                cx, cy = x0 + w / 2, (top + bot) / 2
                if w > 2 * r + 0.5:  # wider than the circle: the covered wires run on up to it
                    stubs = []
                    for ys_, xa_, xb_ in ((n.in_ports.get(n.prim, []) if n.prim is not None else [], x0, cx),
                                          ([y for o in n.outs.values() for y in o.ports], cx, x0 + w)):
                        for yy in ys_:
                            y_abs = ly + yy
                            if top < y_abs < bot and abs(y_abs - cy) < r:
                                dx = (r * r - (y_abs - cy) ** 2) ** 0.5
                                xs_ = (xa_, cx - dx) if xa_ < cx else (cx + dx, xb_)
                                if xs_[1] - xs_[0] > 0.3:
                                    stubs.extend(_hline(xs_[0], xs_[1], y_abs))
                    if stubs:
                        glyphs.append(Path(tuple(stubs), INK, 1.2, None, None, "stub"))
                glyphs.append(Circle(cx, cy, r, FILL["norm"], INK, 2.0, "box"))  # a thick outline, as Abbott's
                letters = glyph_text(n.op, "norm")
                if letters:
                    size = min(SMALL, 1.5 * r / max(text_width(letters, 1.0), 0.1))
                    texts.append(Text(cx, cy + size * 0.36, letters, size, INK, False, True, "middle", "box"))
                self._text_in(cx, cy, n)
            elif kind == "index":
                pts = [(x0, top), (x0 + w - 7, top), (x0 + w, (top + bot) / 2), (x0 + w - 7, bot), (x0, bot)]
                fill = FILL["learned"] if n.op == "embed" else FILL["index"]
                glyphs.append(_poly(pts, fill, INK, 1.1, "box"))
                self._text_in(x0 + (w - 7) / 2 + 1, (top + bot) / 2, n)
            elif kind == "soft":
                # as Abbott draws it: the apex meets the incoming wire, the flat side faces the output
                pts = [(x0 + w, top), (x0, (top + bot) / 2), (x0 + w, bot)]
                glyphs.append(_poly(pts, FILL["soft"], INK, 1.3, "box"))
                if n.op == "log_softmax":  # written inside, near the base where the triangle is tall
                    texts.append(Text(x0 + w - 2.5, (top + bot) / 2 + 2.6, "log", 7.5, INK, False, False, "end",
                                      "box"))
            elif kind == "bar":
                glyphs.append(_rect(x0, top, w, h, 1.0, INK, None, 0.0, "box"))
            else:  # a collapsed sub-circuit or scan: a small prism with its name
                bx0, bw = (x0 + LOOP, w - 2 * LOOP) if kind == "scan" else (x0, w)
                d = 4.0
                glyphs.append(_poly([(bx0, top + d), (bx0 + d, top), (bx0 + bw, top), (bx0 + bw, bot - d),
                                     (bx0 + bw - d, bot), (bx0 + bw - d, top + d)], FILL["call_top"], INK, 1.0, "box"))
                glyphs.append(_rect(bx0, top + d, bw - d, h - d, 2.0, FILL["call"], INK, 1.1, "box"))
                lines = g["lines"]
                total = BOX_SIZE + (len(lines) - 1) * (SMALL + 3)
                base = top + d + (h - d - total) / 2 + BOX_SIZE * 0.8
                names = g.get("port_names") or {}
                left = max((text_width(t, PORT_NAME_SIZE) for t in names.values()), default=-8.0) + 8.0
                for i, name in sorted(names.items()):  # each input's name beside its port, inside the block
                    if n.in_ports.get(i):
                        texts.append(Text(bx0 + 4, ly + n.in_ports[i][0] + 3.2, name, PORT_NAME_SIZE, "#3d4f6e",
                                          False, True, "start", "box port-name"))
                for i, line in enumerate(lines):
                    size = BOX_SIZE if i == 0 else SMALL + 1
                    texts.append(Text(bx0 + left + (bw - d - left) / 2, base, line, size, INK, i == 0, i > 0, "middle",
                                      "box"))
                    base += SMALL + 3
                if kind == "scan":
                    self.emit_loop(n, top, bot)
            self._box(n, kind, x0, top, w, h)
            self.emit_annotation(n, x0 + w / 2, bot)
        elif kind == "scale":  # drawn by the contraction it scales, on its arrow
            host = g.get("host")
            at = host.g.get("scale_at") if host is not None else None
            x, y, w, h = at if at is not None else (n.in_x - 1, ly - 4, 2.0, 8.0)
            # drawn inside the contraction's glyph: that box is its parent
            self.boxes.append(BoxGeom(n.path, n.op, kind, x, y, w, h, host.path if host is not None else self.parent))
        elif kind == "mark":
            t0, t1 = g["tag"]
            cx = n.in_x
            tw = w - 2
            glyphs.append(_rect(cx - tw / 2, ly + t0, tw, t1 - t0, (t1 - t0) / 2, FILL["mark"], "#555555", 0.8, "box"))
            yc = ly + (t0 + t1) / 2
            for ax in (cx - tw / 2 + 4, cx + tw / 2 - 8.5):
                glyphs.append(_poly([(ax, yc - 2.5), (ax + 4.5, yc), (ax, yc + 2.5)], "#555555", None, 0.0, "box"))
            text = self._fold_text(n) or g["text"]
            size = _fit(text, SMALL + 1, tw - 20.0)
            texts.append(Text(cx, yc + size * 0.345, text, size, INK, False, False, "middle", "box"))
            self._box(n, kind, cx - tw / 2, ly + t0, tw, t1 - t0)
            self.emit_annotation(n, cx, ly + max(n.outs[0].ports, default=0.0) + 2)
        elif kind == "junction":
            cx = n.in_x
            sym = g["sym"]
            yc = ly + g["top_y"] - 9.5
            if n.op == "where":  # a selector: a diamond, with a constant branch written beside it
                self.emit_selector(n, cx, yc, w)
            elif len(sym) == 1:
                glyphs.append(Circle(cx, yc, 5.5, "#ffffff", INK, 0.9, "box"))
                texts.append(Text(cx, yc + 3.3, sym, 9.0, INK, True, False, "middle", "box"))
                self._box(n, kind, cx - 5.5, yc - 5.5, 11.0, 11.0)
            else:
                tw = w - 2
                glyphs.append(_rect(cx - tw / 2, yc - 5.5, tw, 11.0, 5.5, "#ffffff", INK, 0.9, "box"))
                texts.append(Text(cx, yc + 3.0, sym, SMALL + 1, INK, False, False, "middle", "box"))
                self._box(n, kind, cx - tw / 2, yc - 5.5, tw, 11.0)
            for d in g["dots"]:
                dots.append(Circle(cx, ly + d, 2.8, INK, None, 1.0, "dot"))
            self.emit_annotation(n, cx, ly + max(n.outs[0].ports) + 2)
        elif kind == "contract":
            xa, xm = n.in_x, n.out_x
            cap_w = g["cap_w"]
            ys = []
            owner = self._operand_wires(n)

            def wmeta(a, *yys):
                names = " ".join(dict.fromkeys(owner[(a, round(v, 3))] for v in yys if (a, round(v, 3)) in owner))
                return (("wire", names), ("axis", a)) if names else (("axis", a),)

            widest = max((yl for _, yl in g["caps"] if len(yl) == 2), key=lambda yl: yl[1] - yl[0], default=None)
            for a, yl in g["caps"]:
                color = self.ctx.color(a)
                ys.extend(yl)
                if len(yl) == 2:
                    y1, y2 = ly + yl[0], ly + yl[1]
                    k = (y2 - y1) / 2 * 4 / 3
                    wires.append(Path((("M", xa, y1), ("C", xa + k, y1, xa + k, y2, xa, y2)), color, 1.6, None,
                                      None, "wire", wmeta(a, *yl)))
                    if yl is widest:  # the flow out of the cap, as Abbott draws it: an arrow from its apex
                        self.emit_cap_arrow(xa + (y2 - y1) / 2, (y1 + y2) / 2, xa + cap_w + 3.0)
                        if g.get("scale"):  # the scale on the arrow (Abbott's ∗k^-1/2)
                            tx, ty = xa + (y2 - y1) / 2 + 2.0, (y1 + y2) / 2 - 3.5
                            m = g["scale_node"]
                            meta = (("class", f"op-{m.op}"), ("op", m.op), ("box", m.path))
                            line = self._line(m.box)
                            texts.append(Text(tx, ty, g["scale"], SMALL + 1, INK, False, True, "start", "box",
                                              meta + ((("line", line),) if line is not None else ())))
                            g["scale_at"] = (tx, ty - (SMALL + 1) * 0.93, text_width(g["scale"], SMALL + 1),
                                             (SMALL + 1) * 1.16)
                else:
                    xv = xa + 6
                    for yy in yl:
                        wires.append(Path(_hline(xa, xv, ly + yy), color, 1.6, None, None, "wire", wmeta(a, yy)))
                        dots.append(Circle(xv, ly + yy, 2.4, color, None, 1.0, "dot", wmeta(a, yy)))
                    wires.append(Path((("M", xv, ly + yl[0]), ("L", xv, ly + yl[-1])), color, 1.6, None, None, "wire",
                                      wmeta(a, *yl)))
            for a, yy in g["stubs"]:
                color = self.ctx.color(a)
                ys.append(yy)
                wires.append(Path(_hline(xa, xa + 5, ly + yy), color, 1.6, None, None, "wire", wmeta(a, yy)))
                wires.append(Path((("M", xa + 5, ly + yy - 3.5), ("L", xa + 5, ly + yy + 3.5)), color, 1.6, None,
                                  None, "wire", wmeta(a, yy)))
            for a, y_in, row, _ in g["merges"]:
                color = self.ctx.color(a)
                ys.extend([y_in, row])
                x1 = xa + cap_w
                wires.append(Path(_hline(xa, x1, ly + y_in), color, 1.6, None, None, "wire", wmeta(a, y_in)))
                if abs(row - y_in) > 0.01:
                    wires.append(Path(_bend(x1, ly + y_in, xm, ly + row), color, 1.6, None, None, "wire",
                                      wmeta(a, y_in)))
                else:
                    wires.append(Path(_hline(x1, xm, ly + row), color, 1.6, None, None, "wire", wmeta(a, y_in)))
            for d in g["dots"]:
                dots.append(Circle(xm, ly + d, 2.8, INK, None, 1.0, "dot"))
            ys.extend(n.in_ports[n.prim] if n.prim is not None else [])
            top, bot = ly + min(ys, default=0.0) - 3, ly + max(ys, default=0.0) + 3
            self._box(n, kind, xa, top, xm - xa, bot - top)
            self.emit_annotation(n, (xa + xm) / 2, bot + 4)
        elif kind == "source":
            top, bot = ly + g["top"], ly + g["bot"]
            if n.op == "const":
                r = g["r"]
                glyphs.append(Circle(x0 + r, ly, r, FILL["source"], INK, 1.0, "box"))
                texts.append(Text(x0 + r, ly + 3, n.text[0], SMALL + 1, INK, False, False, "middle", "box"))
                self._box(n, kind, x0, ly - r, 2 * r, 2 * r)
            elif n.op == "arange":
                pts = [(x0, top), (x0 + w - 7, top), (x0 + w, (top + bot) / 2), (x0 + w - 7, bot), (x0, bot)]
                glyphs.append(_poly(pts, FILL["index"], INK, 1.1, "box"))
                texts.append(Text(x0 + (w - 7) / 2, (top + bot) / 2 + 3.5, "arange", SMALL + 1, INK, False, False,
                                  "middle", "box"))
                self._box(n, kind, x0, top, w, bot - top)
            else:
                glyphs.append(_rect(x0, top, w, bot - top, 3.0, FILL["learned"], INK, 1.1, "box"))
                texts.append(Text(x0 + w / 2, (top + bot) / 2 + 3.6, n.text[0], BOX_SIZE - 1, INK, True, False,
                                  "middle", "box"))
                self._box(n, kind, x0, top, w, bot - top)
            self.emit_annotation(n, x0 + w / 2, bot)
        elif kind in ("panel", "repeat"):
            self.emit_panel(n)

    def _operand_wires(self, n: _Node) -> dict[tuple[str, float], str]:
        """(axis, port offset) -> the dotted path of the operand wire that enters there."""
        out: dict[tuple[str, float], str] = {}
        for i, w in enumerate(n.inputs):
            b = self.bands.get(w)
            if b is None:
                continue
            for a, y in zip(b.axes, n.in_ports.get(i, [])):
                out.setdefault((a, round(y, 3)), self.prefix + w)
        return out

    def emit_cap_arrow(self, x_apex: float, y: float, x_tip: float):
        """An arrowhead leaving a contraction's cap: the direction the contracted value flows."""
        x_tip = max(x_tip, x_apex + CAP_ARROW + 1.0)
        x_base = x_tip - CAP_ARROW
        if x_base > x_apex + 0.3:
            self.L[2].append(Path(_hline(x_apex, x_base + 0.5, y), INK, 1.1, None, None, "arrow"))
        self.L[2].append(_poly([(x_base, y - CAP_ARROW * 0.55), (x_tip, y), (x_base, y + CAP_ARROW * 0.55)],
                               INK, None, 0.0, "arrow"))

    def _folded(self, n: _Node) -> list[str | None]:
        """Per input of n's box: the text of the constant folded into it, None for a wire drawn."""
        box = n.box
        if box is None:
            return []
        consts = getattr(self, "_consts", None)
        if consts is None:
            consts = self._consts = {b.outputs[0]: b for b in self.d.boxes if b.op == "const" and b.outputs}
        drawn = set(n.inputs)
        return [None if w in drawn or w not in consts else _const_text(consts[w].attr("value", ("num", 0.0)))
                for w in box.inputs]

    def _fold_text(self, n: _Node) -> str:
        """What a mark with folded constants writes: `else 0` for where(c, x, 0), `×5` for 5 * x."""
        if not n.const_text or n.box is None:
            return ""
        folded = self._folded(n)
        if n.op == "where" and len(folded) == 3:
            return where_text(folded[1], folded[2])
        if n.op in COMMUTATIVE and len(folded) == 2 and folded[0] is not None and folded[1] is None:
            sym = BINARY_TEXT.get(n.op, n.op)
            return f"{sym}{folded[0]}" if len(sym) == 1 else f"{sym} {folded[0]}"
        return ""

    def emit_selector(self, n: _Node, cx: float, yc: float, w: float):
        """`where`: a diamond (a choice) over the junction, a constant branch written beside it."""
        glyphs, texts = self.L[2], self.L[4]
        text = self._fold_text(n) if n.const_text else ""
        r = SELECT_R
        size = SMALL
        if text:  # room as geometry.selector_width gives it
            room = w - 2 * r - 5.0
            size = _fit(text, SMALL, room)
            group = 2 * r + 2.0 + text_width(text, size)
            xd = cx - group / 2 + r
        else:
            xd = cx
        glyphs.append(_poly([(xd, yc - r), (xd + r, yc), (xd, yc + r), (xd - r, yc)], "#ffffff", INK, 0.9, "box"))
        texts.append(Text(xd, yc + 2.9, "?", 8.0, INK, True, False, "middle", "box"))
        x_left = xd - r
        if text:
            texts.append(Text(xd + r + 2.0, yc + size * 0.36, text, size, INK, False, False, "start", "box"))
        self._box(n, "junction", x_left, yc - r, (cx - x_left) * 2 if not text else group, 2 * r)

    def emit_annotation(self, n: _Node, cx: float, below: float):
        if not n.annotation:
            return
        y = below + SMALL + 1
        bx, by, bw, bh = _label_box(cx, y, n.annotation, SMALL, anchor="middle")
        self.labels.append(LabelGeom(n.annotation, "annotation", bx, by, bw, bh, self.parent))
        self.L[4].append(Text(cx, y, n.annotation, SMALL, "#5f6b7a", False, False, "middle", "annotation",
                              (("box", n.path),)))

    def emit_loop(self, n: _Node, top: float, bot: float):
        """A scan's carry: from its state output back over (or under) the block to its state input."""
        g = n.g
        states = g["states"]
        if not states:
            return
        ly = n.lane.y
        above = g["loop_above"]
        s_in = states[0] if above else states[-1]
        s_out = s_in
        if s_in not in n.in_ports or s_out not in n.outs:
            return
        yi = ly + (n.in_ports[s_in][0] if above else n.in_ports[s_in][-1])
        yo = ly + (n.outs[s_out].ports[0] if above else n.outs[s_out].ports[-1])
        if n.kind == "panel":
            el, er = n.x0 + g["side"], n.x0 + n.width - g["side"]
        else:
            el, er = n.in_x, n.out_x
        xr, xl = er + LOOP * 0.55, el - LOOP * 0.55
        yl = top - LOOP if above else bot + LOOP
        sg = -1.0 if above else 1.0
        r = 3.0
        cmds = (("M", n.out_x, yo), ("L", xr - r, yo), ("C", xr, yo, xr, yo, xr, yo + sg * r),
                ("L", xr, yl - sg * r), ("C", xr, yl, xr, yl, xr - r, yl), ("L", xl + r, yl),
                ("C", xl, yl, xl, yl, xl, yl - sg * r), ("L", xl, yi + sg * r),
                ("C", xl, yi, xl, yi, xl + r, yi), ("L", n.in_x - 1.5, yi))
        self.L[1].append(Path(cmds, "#6b7685", 1.2, None, "4 2.5", "loop"))
        ax = el - 1.5
        self.L[2].append(_poly([(ax - 5, yi - 3), (ax, yi), (ax - 5, yi + 3)], "#6b7685", None, 0.0, "loop"))
        self.L[3].append(Circle(n.out_x + 0.01, yo, 2.4, "#6b7685", None, 1.0, "dot"))

    def emit_panel(self, n: _Node):
        g = n.g
        ly = n.lane.y
        top, bot = ly + g["top"], ly + g["bot"]
        x0, w = n.x0, n.width
        back, _wires, glyphs, _dots, texts = self.L
        frame = n.frame
        fx, fy = n.in_x, ly + g["dy"]
        if n.kind == "repeat":
            pw = g["pw"]
            xl = x0 + g["side"]
            xr = n.out_x + PANEL_PAD + pw
            h = bot - top
            for xa, xb in ((xl + pw, xl + 1), (xr - pw, xr - 1)):
                glyphs.append(Path((("M", xa, top), ("C", xb, top + h * 0.3, xb, bot - h * 0.3, xa, bot)),
                                   FILL["repeat"], 1.6, None, None, "paren"))
            texts.append(Text(xr + 1, top + BOX_SIZE, g["title"], BOX_SIZE, INK, True, False, "start", "box"))
            self._box(n, "repeat", x0, top, w, bot - top)
        else:
            px0 = x0 + g["side"]
            pw_ = w - 2 * g["side"]
            back.append(_rect(px0, top, pw_, bot - top, 5.0, FILL["panel"], FILL["panel_edge"], 1.0, "panel"))
            texts.append(Text(px0 + 6, top + 11.5, g["title"], SMALL + 1, "#3d4f6e", True, False, "start", "title"))
            bx, by, bw, bh = _label_box(px0 + 6, top + 11.5, g["title"], SMALL + 1, True)
            self.labels.append(LabelGeom(g["title"], "title", bx, by, bw, bh, self.parent))
            self._box(n, "panel", px0, top, pw_, bot - top)
            if n.op == "scan":
                self.emit_loop(n, top, bot)
        self._tag_since(n)  # the panel's own shapes; the body's carry their own meaning
        # the body, moved into place
        for layer, shapes in zip(self.L, frame.layers):
            layer.extend(_shift(s, fx, fy) for s in shapes)
        self._start = [len(layer) for layer in self.L]
        base = len(self.labels)
        for lb in frame.labels:
            self.labels.append(LabelGeom(lb.text, lb.kind, lb.x + fx, lb.y + fy, lb.w, lb.h, lb.parent, lb.wire,
                                         lb.axis, lb.line_y + fy))
        for bx in frame.boxes:
            self.boxes.append(BoxGeom(bx.path, bx.op, bx.kind, bx.x + fx, bx.y + fy, bx.w, bx.h, bx.parent))
        for tr in frame.tracks:
            self.tracks.append(TrackGeom(tr.wire, tr.axis, tr.label + base if tr.label >= 0 else -1, tr.y + fy,
                                         tr.x0 + fx, tr.x1 + fx, tr.parent))
        g["out_labels"] = {(k, a): (lid + base, x + fx) for k, labs in enumerate(frame.out_labels)
                           for a, (lid, x) in labs.items()}
        self.emit_annotation(n, x0 + w / 2, bot)


FAN_STEP = 14.0  # between the starts of bends that leave one run at one place
CAP_ARROW = 6.0  # length of the arrowhead leaving a contraction's cap


def _fit(text: str, size: float, room: float, least: float = 6.5) -> float:
    """The font size (at most `size`, at least `least`) at which `text` fits in `room` px."""
    w = text_width(text, size)
    if w <= room or w <= 0:
        return size
    return max(least, size * room / w)


def _parts_of_a_tuple(a: _Seg, b: _Seg, groups: dict[str, list[tuple[int, str, str]]]) -> bool:
    """Whether two segments side by side are parts of one tuple (see emit_separators)."""
    if a.band.wire != b.band.wire:
        ga = {g for g, where, box in groups.get(a.band.wire, ()) if _whole(a, where, box)}
        if ga and any(g in ga for g, where, box in groups.get(b.band.wire, ()) if _whole(b, where, box)):
            return True
    for x, y in ((a, b), (b, a)):  # a copy and the lane it branched from
        if x.start == "branch" and x.prev is not None and x.prev.lane is y.lane:
            return True
    return False


def _whole(s: _Seg, where: str, box: str) -> bool:
    """Whether segment s is its wire where the tuple is whole (see _tuple_groups)."""
    if where == "input":
        return s.start == "input"
    if where == "node":
        return s.start == "node" and s.band.producer.box is not None and s.band.producer.box.name == box
    # read by the output (box "") or by the box
    return any((r.node.kind == "out") if not box else (r.node.box is not None and r.node.box.name == box)
               for r in s.reads)


def _fan_bend(x0: float, y0: float, x1: float, y1: float, src, dst, t: int) -> tuple:
    """Track t of a bundle bending from offsets `src` to `dst`.

    When the bend reorders the bundle, equal S-curves would all cross at one point (three
    wires reversed meet in the middle): each track then turns at its own place, so the
    crossings come apart. A bundle that keeps its order bends as one.
    """
    n = len(src)
    order_src = sorted(range(n), key=lambda i: (src[i], i))
    order_dst = sorted(range(n), key=lambda i: (dst[i], i))
    if n < 3 or order_src == order_dst:
        return _bend(x0, y0, x1, y1)
    rank = order_src.index(t)
    return _bend(x0, y0, x1, y1, 0.5 + (rank - (n - 1) / 2) * min(0.14, 0.5 / (n - 1)))
