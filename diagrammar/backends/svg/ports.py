"""Backends, svg: where each kind of node puts its ports and how big its glyph is (one method per kind)."""
from __future__ import annotations

from .geometry import (
    BOT_PAD,
    BOX_PAD,
    BOX_SIZE,
    CLEAR,
    LOOP,
    PANEL_PAD,
    PITCH,
    PORT_NAME_SIZE,
    SMALL,
    STACK,
    TITLE_H,
    TOP_PAD,
    _bend_width,
    _box_text,
    call_title,
    glyph_label,
    glyph_text,
    selector_width,
    text_width,
)
from .nodes import _axes_of, _Node, _Out


class _PortsMixin:

    def ports(self, n: _Node, reads):
        kind = n.kind
        if kind == "mark":
            self.ports_mark(n, reads)
        elif kind == "scale":  # written on the contraction's arrow: here only the wires running on
            self.ports_mark(n, reads)
            n.width = 2.0
        elif kind == "junction":
            self.ports_junction(n, reads)
        elif kind == "contract":
            self.ports_contract(n, reads)
        elif kind == "source":
            self.ports_source(n)
        elif kind in ("panel", "repeat"):
            self.ports_panel(n, reads)
        else:
            self.ports_box(n, reads)
        n.span = n.width
        if n.annotation:
            n.bottom += SMALL * 1.4
            n.span = max(n.width, text_width(n.annotation, SMALL) + 6)

    def _by_height(self, n: _Node, reads) -> list[int]:
        """Inputs other than the primary one, top to bottom as their lanes run: no crossings."""
        return sorted((i for i in range(len(n.inputs)) if i != n.prim),
                      key=lambda i: (reads[i][2].lane.key, i))

    def _main_tracks(self, n: _Node, reads) -> list[tuple[str, float]]:
        """The primary input's tracks with their offsets in the node's lane."""
        if n.prim is None:
            return []
        _, b, seg = reads[n.prim]
        if n.main is None:  # it comes over from another lane, into this one's first rows
            return [(a, j * PITCH) for j, a in enumerate(b.axes)]
        return list(zip(b.axes, seg.offs))

    def _batch(self, n: _Node) -> set[str]:
        return set(n.box.attr("batch", ()) or ()) if n.box is not None else set()

    def _covered_in(self, n: _Node, axes: list[str], out0: list[str]) -> set[str]:
        """Tracks of the main input that end in the box (the rest run past)."""
        if axes == [""]:
            return {""}
        if n.kind in ("call", "scan", "panel", "repeat"):
            batch = self._batch(n)
            return {a for a in axes if a not in batch}
        if n.op in ("stack", "concat"):
            return set(axes)
        roles = dict(n.box.roles)
        covered = {a for a in axes if roles.get(a) in ("consumed", "replaced") or a not in out0}
        if not covered and n.kind == "norm":  # batchnorm over the batch alone: its circle sits on the features
            return set(axes)
        return covered

    def _produced(self, n: _Node, k: int, main_axes: list[str], passing: list[str]) -> list[str]:
        t = n.types[k]
        if not t.names:
            return [""]
        if n.kind in ("call", "scan", "panel", "repeat"):
            batch = self._batch(n)
            if k != n.out_order[0]:
                return list(t.names)
            return [a for a in t.names if a not in batch or a not in passing]
        if k != n.out_order[0]:
            return list(t.names)
        return [a for a in t.names if a not in passing]

    def _text_size(self, n: _Node) -> tuple[float, float]:
        """Width and least height of the text a box shows."""
        main, sup, bold = n.text
        w = text_width(main, BOX_SIZE, bold) + (text_width(sup, SMALL) + 1 if sup else 0)
        return w, BOX_SIZE + 4

    def _scan_states(self, n: _Node) -> list[int]:
        """The inputs (and outputs) of a scan that are its carried state: the first n_state of them."""
        return list(range(n.box.attr("n_state", 1)))

    def ports_box(self, n: _Node, reads, tracks=None):
        kind = n.kind
        block = kind in ("call", "scan", "panel", "repeat")
        if n.box is not None:
            n.text = _box_text(n.box, n.op)
        if kind in ("call", "scan"):
            title = call_title(n.box) if n.box.body is not None else n.box.attr("circuit", n.op)
            name = n.box.attr("circuit", n.op)
            lines = [name] + ([title[len(name):]] if title != name else [])
            if kind == "scan":
                lines.append(f"scan over {n.box.attr('along', '')}")
            if n.op == "dispatch":
                lines.append(f"among {n.box.attr('along', '')}")
            n.g["lines"] = lines
            n.g["port_names"] = self._port_names(n, reads)
        if kind == "scan":
            states = self._scan_states(n)
            main_is_state = n.prim in states
            n.sec_order = self._by_height(n, reads)  # a block's ports are free: in the order its wires come
            if not main_is_state:
                n.out_order = [len(states)] + states if len(n.outputs) > len(states) else states
            n.g["loop_above"] = main_is_state
            n.g["states"] = states
        tracks = self._main_tracks(n, reads) if tracks is None else tracks
        tracks = sorted(tracks, key=lambda t: t[1])  # top to bottom: a band's axes need not be in height order
        main_axes = [a for a, _ in tracks]
        out0 = n.out_order[0] if n.outputs else None
        out0_axes = _axes_of(n.types[out0]) if out0 is not None else []
        cov = self._covered_in(n, main_axes, out0_axes) if tracks else set()
        passing = [a for a in main_axes if a not in cov and a in out0_axes and a != ""]
        cov = {a for a in main_axes if a not in passing}
        if block:
            order = [t for t in tracks if t[0] in passing] + [t for t in tracks if t[0] not in passing]
        else:
            idx = [i for i, t in enumerate(tracks) if t[0] in cov]
            if idx and idx != list(range(idx[0], idx[-1] + 1)):
                first = idx[0]
                order = tracks[:first] + [tracks[i] for i in idx] + [t for t in tracks[first:] if t[0] not in cov]
            else:
                order = list(tracks)
        slots = [o for _, o in tracks]
        port = {a: s for (a, _), s in zip(order, slots)}
        seen_cov = False
        above, cov_order, below = [], [], []
        for a, _ in order:
            if a in cov:
                seen_cov = True
                cov_order.append(a)
            elif seen_cov:
                below.append(a)
            else:
                above.append(a)
        if n.prim is not None:
            n.in_ports[n.prim] = [port[a] for a in reads[n.prim][1].axes]
        cov_slots = [port[a] for a in cov_order]
        # the first output: passing tracks stay, produced ones take the covered slots
        prod0 = self._produced(n, out0, main_axes, passing) if out0 is not None else []
        if cov_slots:
            start = cov_slots[0]
        elif above:
            start = port[above[-1]] + PITCH
        else:
            start = 0.0
        prod_slots: list[float] = []
        for j in range(len(prod0)):
            if j < len(cov_slots):
                prod_slots.append(cov_slots[j])
            else:
                prod_slots.append(prod_slots[-1] + PITCH if prod_slots else start)
        extra = max(0, len(prod0) - len(cov_slots)) * PITCH
        # inputs other than the main one enter the box stacked under it
        used = list(port.values()) + prod_slots
        low = max(used) if used else -STACK
        sec = n.sec_order if n.sec_order is not None else self._by_height(n, reads)
        sec_ports: list[float] = []
        for i in sec:
            b = reads[i][1]
            base = low + STACK
            n.in_ports[i] = [base + j * PITCH for j in range(len(b.axes))]
            sec_ports.extend(n.in_ports[i])
            low = n.in_ports[i][-1]
        # outputs after the first, stacked under it on the right
        out_low = max([port[a] for a in above] + prod_slots + [port[a] + extra for a in below], default=-STACK)
        extra_outs: dict[int, list[float]] = {}
        for k in n.out_order[1:]:
            axes = _axes_of(n.types[k])
            base = out_low + STACK
            extra_outs[k] = [base + j * PITCH for j in range(len(axes))]
            out_low = extra_outs[k][-1]
        # the glyph's extent
        cov_ys = cov_slots + prod_slots + sec_ports + [y for ys in extra_outs.values() for y in ys]
        if not cov_ys:
            cov_ys = [start]
        pad = 6.0 if kind == "bar" else BOX_PAD
        g_top, g_bot = min(cov_ys) - pad, max(cov_ys) + pad
        need = self._need_height(n)
        if g_bot - g_top < need:
            grow = need - (g_bot - g_top)
            if below or not above:
                g_top -= grow / 2
                g_bot += grow / 2
            else:
                g_bot += grow
        shift = 0.0
        if above:
            top_needed = g_top - (LOOP + 4 if kind == "scan" and n.g["loop_above"] else 0.0)
            lim = max(port[a] for a in above) + CLEAR
            if top_needed < lim:
                shift = lim - top_needed
        # apply the shift to everything the box covers (passing tracks stay)
        g_top += shift
        g_bot += shift
        in_cov = {a: port[a] + shift for a in cov_order}
        if n.prim is not None:
            b = reads[n.prim][1]
            n.in_ports[n.prim] = [in_cov.get(a, port[a]) for a in b.axes]
        for i in sec:
            n.in_ports[i] = [y + shift for y in n.in_ports[i]]
        prod_ports = [y + shift for y in prod_slots]
        for k in extra_outs:
            extra_outs[k] = [y + shift for y in extra_outs[k]]
        below_shift = 0.0
        if below:
            lim = g_bot + CLEAR
            first_below = min(port[a] for a in below)
            if first_below < lim:
                below_shift = lim - first_below
        if below_shift and n.prim is not None:
            b = reads[n.prim][1]
            n.in_ports[n.prim] = [p + below_shift if a in below else p for a, p in zip(b.axes, n.in_ports[n.prim])]
        # record outputs
        if out0 is not None:
            axes0 = above + prod0 + below
            ports0 = [port[a] for a in above] + prod_ports + [port[a] + below_shift for a in below]
            band0 = [port[a] for a in above] + prod_slots + [port[a] + extra + below_shift for a in below]
            n.outs[out0] = _Out(axes0, ports0, band0, set(above) | set(below))
        for k, ports_k in extra_outs.items():
            n.outs[k] = _Out(_axes_of(n.types[k]), ports_k, None, set())
        n.g["top"], n.g["bot"] = g_top, g_bot
        n.g["cov"] = (min(cov_ys) + shift, max(cov_ys) + shift)
        all_ports = [y for ys in n.in_ports.values() for y in ys] + \
            [y for o in n.outs.values() for y in o.ports]
        n.top = min([g_top] + [y - TOP_PAD for y in all_ports])
        n.bottom = max([g_bot] + [y + BOT_PAD for y in all_ports])
        if kind == "scan":
            if n.g["loop_above"]:
                n.top = min(n.top, g_top - LOOP - 4)
            else:
                n.bottom = max(n.bottom, g_bot + LOOP + 4)
        n.width = self._box_width(n)

    def _need_height(self, n: _Node) -> float:
        if n.kind in ("call", "scan"):
            return len(n.g.get("lines", [""])) * (BOX_SIZE + 2) + 8
        if n.kind in ("bar", "soft"):
            return 14.0
        return BOX_SIZE + 5

    def _box_width(self, n: _Node) -> float:
        kind = n.kind
        tw, _ = self._text_size(n)
        if kind == "bar":
            return 5.0
        if kind == "soft":
            return 30.0 if n.op == "log_softmax" else 16.0
        if kind == "index":
            return max(24.0, tw + 18.0)
        if kind == "norm":
            return max(n.g["bot"] - n.g["top"], tw + 12.0)
        if kind in ("call", "scan"):
            w = max(text_width(line, BOX_SIZE if i == 0 else SMALL + 1, i == 0)
                    for i, line in enumerate(n.g["lines"]))
            names = n.g.get("port_names") or {}
            if names:  # the inputs' names down the left side, the block's name beside them
                w += max(text_width(t, PORT_NAME_SIZE, False) for t in names.values()) + 8.0
            return w + 20.0 + (2 * LOOP if kind == "scan" else 0.0)
        return max(22.0, tw + 12.0)

    def _port_names(self, n: _Node, reads) -> dict[int, str]:
        """Input -> the callee's name for it, written inside a collapsed block where the wires coming in
        would otherwise be told apart only by their axes (``n``, ``n``, ``n``): the name the callee
        unpacks it as (``h``, ``c``), else its parameter's name (``x``; ``state.1`` for a tuple's part)."""
        body = n.box.body if n.box is not None else None
        if body is None:
            return {}
        params = [(p.name, w, len(p.wires)) for p in body.inputs for w in p.wires]
        if len(params) != len(n.inputs):
            return {}
        signatures = [tuple(reads[i][1].axes) for i in range(len(n.inputs))]
        if len(n.inputs) < 3 and len(set(signatures)) == len(signatures):
            return {}  # one or two inputs of different axes: plain enough
        aliases = dict(body.aliases)
        out = {}
        for i, (name, wire, parts) in enumerate(params):
            out[i] = aliases.get(wire, name if parts == 1 else wire)
        return out

    def ports_mark(self, n: _Node, reads):
        tracks = self._main_tracks(n, reads)
        if n.prim is None:  # its lane was taken: it sits on a lane of its own
            b = reads[0][1]
            tracks = [(a, j * PITCH) for j, a in enumerate(b.axes)]
            n.in_ports[0] = [o for _, o in tracks]
        else:
            n.in_ports[n.prim] = [o for _, o in tracks]
        out_axes = _axes_of(n.types[0])
        offs = {a: o for a, o in tracks}
        ports = [offs.get(a, 0.0) for a in out_axes]
        n.outs[0] = _Out(out_axes, ports, list(ports), set(out_axes))
        text = n.const_text or glyph_label(n.op, n.box) or glyph_text(n.op, "mark", n.op)
        if n.op == "dropout" and n.box is not None:
            text = f"drop {n.box.attr('rate', 0):g}"
        n.g["text"] = text
        n.width = text_width(text, SMALL + 1) + 22.0
        top = min(ports) if ports else 0.0
        n.g["tag"] = (top - 5.0 - 11.0, top - 5.0)
        n.top = top - TOP_PAD - 1.0
        n.bottom = (max(ports) if ports else 0.0) + BOT_PAD

    def ports_junction(self, n: _Node, reads):
        if n.prim is not None:
            tracks = self._main_tracks(n, reads)
        else:
            b = reads[0][1]
            tracks = [(a, j * PITCH) for j, a in enumerate(b.axes)]
        out_axes = _axes_of(n.types[0])
        pos = {a: o for a, o in tracks if a in out_axes}
        low = max(pos.values(), default=-PITCH)
        for a in out_axes:
            if a not in pos:
                low += PITCH
                pos[a] = low
        order = sorted(out_axes, key=lambda a: pos[a])
        top_y = min(pos.values())
        merge_count = {a: 0 for a in order}
        for i, b, seg in reads:
            ports = []
            for a in b.axes:
                ports.append(pos.get(a, top_y))
                if a in merge_count:
                    merge_count[a] += 1
            n.in_ports[i] = ports
        main_axes = [a for a, _ in tracks] if n.prim is not None else []
        n.outs[0] = _Out(order, [pos[a] for a in order], [pos[a] for a in order], set(main_axes))
        sym = n.const_text or glyph_text(n.op, "junction", n.op)
        n.g["sym"] = sym
        n.g["dots"] = [pos[a] for a in order if merge_count[a] >= 2]
        n.g["top_y"] = top_y
        if n.op == "where":  # a diamond, and the constant branch written beside it
            n.width = selector_width(n.const_text)
        else:
            n.width = text_width(sym, SMALL + 1) + 10.0 if len(sym) > 1 else 14.0
        n.top = top_y - TOP_PAD
        n.bottom = max(pos.values()) + BOT_PAD

    def ports_contract(self, n: _Node, reads):
        out_axes = _axes_of(n.types[0])  # a full contraction gives a scalar: one unnamed track
        result = set(out_axes)
        # operands top to bottom: the main one first, then the others in order
        order_idx = ([n.prim] if n.prim is not None else []) + self._by_height(n, reads)
        operand_axes = [reads[i][1].axes for i in order_idx]
        count: dict[str, int] = {}
        for axes in operand_axes:
            for a in set(axes):
                count[a] = count.get(a, 0) + 1
        contracted_a: list[str] = []
        rows: dict[str, float] = {}
        ports_all: list[float] = []
        low = -STACK
        row_order: list[str] = []
        for rank, i in enumerate(order_idx):
            b = reads[i][1]
            if rank == 0 and n.prim is not None:
                tracks = self._main_tracks(n, reads)
                slots = [o for _, o in tracks]
                axes = [a for a, _ in tracks]
                kept = [a for a in axes if a in result and count.get(a, 0) == 1]
                shared = [a for a in axes if a in result and count.get(a, 0) > 1]
                contr = [a for a in axes if a not in result]
                arranged = kept + shared + contr
                contracted_a = contr
                port = dict(zip(arranged, slots))
                n.in_ports[i] = [port[a] for a in b.axes]
                for a in kept + shared:
                    rows[a] = port[a]
                    row_order.append(a)
                low = max(slots)
            else:
                axes = list(b.axes)
                contr = [a for a in reversed(contracted_a) if a in axes] + \
                    [a for a in axes if a not in result and a not in contracted_a]
                shared = [a for a in row_order if a in axes and a in result]
                kept = [a for a in axes if a not in contr and a not in shared]
                arranged = contr + shared + kept
                base = low + STACK
                port = {a: base + j * PITCH for j, a in enumerate(arranged)}
                n.in_ports[i] = [port[a] for a in b.axes]
                low = base + (len(arranged) - 1) * PITCH
                contracted_a = contracted_a + [a for a in contr if a not in contracted_a]
            ports_all.extend(n.in_ports[i])
        # rows for result axes not on the main operand, after its last result row
        last = max(rows.values(), default=-PITCH)
        for a in out_axes:
            if a not in rows:
                last += PITCH
                rows[a] = last
                row_order.append(a)
        order = sorted(out_axes, key=lambda a: rows[a])
        # geometry: caps join the contracted wires, curves bring the others to their rows
        caps, merges, stubs = [], [], []
        by_axis: dict[str, list[float]] = {}
        for rank, i in enumerate(order_idx):
            b = reads[i][1]
            for a, y in zip(b.axes, n.in_ports[i]):
                by_axis.setdefault(a, []).append(y)
        r_max = 0.0
        for a in sorted(by_axis, key=lambda a: min(by_axis[a])):
            ys = sorted(by_axis[a])
            if a in result:
                continue
            if len(ys) == 1:
                stubs.append((a, ys[0]))
            else:
                caps.append((a, ys))
                r_max = max(r_max, (ys[-1] - ys[0]) / 2)
        main_axes = set(reads[n.prim][1].axes) if n.prim is not None else set()
        bend = 0.0
        for rank, i in enumerate(order_idx):
            if rank == 0 and n.prim is not None:
                continue
            b = reads[i][1]
            for a, y in zip(b.axes, n.in_ports[i]):
                if a in result:
                    merges.append((a, y, rows[a], a in main_axes or rows[a] != y))
                    bend = max(bend, _bend_width(rows[a] - y))
        cap_w = max(r_max, 4.0 if stubs else 0.0) + (12.0 if caps else 6.0)  # room for the cap's arrow
        if caps and n.g.get("scale"):  # and for the scale written over it
            cap_w = max(cap_w, r_max + text_width(n.g["scale"], SMALL + 1) + 10.0)
        n.g.update(caps=caps, merges=merges, stubs=stubs, cap_w=cap_w, bend=bend,
                   dots=[rows[a] for a in order if sum(1 for m in merges if m[0] == a) + (a in main_axes) >= 2])
        n.width = cap_w + max(bend, 8.0) + 4.0
        n.outs[0] = _Out(order, [rows[a] for a in order], [rows[a] for a in order],
                         {a for a in order if a in main_axes})
        ys = ports_all + list(rows.values())
        n.top = min(ys) - TOP_PAD
        n.bottom = max(ys) + BOT_PAD

    def ports_source(self, n: _Node):
        n.text = _box_text(n.box, n.op)
        axes = _axes_of(n.types[0])
        offs = [j * PITCH for j in range(len(axes))]
        n.outs[0] = _Out(axes, offs, offs, set())
        pad = BOX_PAD
        g_top, g_bot = -pad, offs[-1] + pad
        if n.op == "const":
            r = max(8.0, text_width(n.text[0], SMALL + 1) / 2 + 3)
            n.g.update(r=r)
            g_top, g_bot = min(g_top, -r), max(g_bot, r)
            n.width = 2 * r
        else:
            n.width = self._box_width(n) if n.op != "param" else text_width(n.text[0], BOX_SIZE - 1, True) + 12
        n.g["top"], n.g["bot"] = g_top, g_bot
        n.top = min(g_top, -TOP_PAD)
        n.bottom = g_bot + BOT_PAD

    # ------------------------------------------------ expanded sub-circuits

    def ports_panel(self, n: _Node, reads):
        box = n.box
        is_scan = box.op == "scan"
        is_repeat = box.op == "repeat"
        n.sec_order = self._by_height(n, reads)  # a block's ports are free: in the order its wires come
        if is_scan:
            n.g["states"] = self._scan_states(n)
        in_order = ([n.prim] if n.prim is not None else []) + n.sec_order
        n_body = sum(len(p.wires) for p in box.body.inputs)
        in_order = [i for i in in_order if i < n_body]  # a dispatch's index ends at the panel's edge
        depth = self.depth if is_repeat else self.depth - 1
        from .lanes import _Builder  # the body is one more level of the same sweep

        frame = _Builder(box.body, depth, self.ctx, prefix=self.prefix + box.name + ".", nested=True,
                         in_order=in_order).run()
        n.frame = frame
        # outputs leave in the order the body puts them, top to bottom: no crossings at the edge
        n.out_order = sorted(range(len(n.outputs)),
                             key=lambda k: (min(frame.out_ports[k].values(), default=1e9)
                                            if k < len(frame.out_ports) else 1e9, k))
        if is_repeat:
            n.g["title"] = f"×{box.attr('count', 1)}"
        elif is_scan:
            n.g["title"] = f"scan {box.attr('circuit', '')} over {box.attr('along', '')}"
        elif box.op == "dispatch":
            n.g["title"] = f"{box.attr('circuit', '')} chosen among {box.attr('along', '')}"
        else:
            n.g["title"] = call_title(box)
        title_h = 4.0 if is_repeat else TITLE_H
        tracks = self._main_tracks(n, reads)
        main_axes = [a for a, _ in tracks]
        batch = self._batch(n)
        out0 = n.out_order[0] if n.outputs else None
        out0_axes = _axes_of(n.types[out0]) if out0 is not None else []
        passing = [a for a in main_axes if a in batch and a in out0_axes]
        cov = [a for a in main_axes if a not in passing]
        slots = [o for _, o in tracks]
        port = dict(zip(passing + cov, slots))

        def fy(i, a):
            ports = frame.in_ports[i] if i < len(frame.in_ports) else {}
            return ports.get(a)

        dy = None
        if n.prim is not None:
            for a in cov:
                y = fy(n.prim, a)
                if y is not None:
                    dy = port[a] - y
                    break
        if dy is None:
            first = [y for ports in frame.in_ports for y in ports.values()]
            base = (max(port.values()) + STACK) if port else 0.0
            dy = base - (min(first) if first else 0.0)
        if passing:
            lim = max(port[a] for a in passing) + CLEAR
            top = dy - PANEL_PAD - title_h
            if top < lim:
                dy += lim - top
        # input ports: passing tracks run past; the others enter the body where it starts them;
        # an axis the body never sees (the scanned one) ends at the panel's edge
        edge_in, edge_out, joins = set(), set(), set()
        extra_low = max((y + dy for ports in frame.in_ports for y in ports.values()), default=dy)
        for i, w in enumerate(n.inputs):
            b = reads[i][1]
            ports = []
            for a in b.axes:
                if i == n.prim and a in passing:
                    ports.append(port[a])
                    continue
                y = fy(i, a)
                if y is not None:
                    ports.append(y + dy)
                    continue
                if a in passing and a in batch:
                    # broadcast over an axis the first input carries past the panel: it joins that
                    # wire at a dot before the call (Abbott's shared head index), not inside the panel
                    joins.add((i, a))
                    ports.append(port[a])
                    continue
                edge_in.add((i, a))
                if i == n.prim:
                    ports.append(port[a])
                else:
                    extra_low += PITCH
                    ports.append(extra_low)
            n.in_ports[i] = ports
        n.g["joins"] = joins
        out_low = max((y + dy for ports in frame.out_ports for y in ports.values()), default=dy)
        for rank, k in enumerate(n.out_order):
            axes = _axes_of(n.types[k])
            fports = frame.out_ports[k] if k < len(frame.out_ports) else {}
            own = [a for a in axes if not (rank == 0 and a in passing)]
            with_port = sorted([a for a in own if a in fports], key=lambda a: fports[a])
            without = [a for a in own if a not in fports]
            ports = {a: fports[a] + dy for a in with_port}
            for a in without:
                edge_out.add((k, a))
                out_low += PITCH
                ports[a] = out_low
            if rank == 0:
                order = passing + with_port + without
                vals = [port[a] for a in passing] + [ports[a] for a in with_port + without]
                n.outs[k] = _Out(order, vals, list(vals), set(passing))
            else:
                order = with_port + without
                n.outs[k] = _Out(order, [ports[a] for a in order], None, set())
        n.g["edge_in"], n.g["edge_out"] = edge_in, edge_out
        pw = 12.0 if is_repeat else 0.0
        side = LOOP if is_scan else 0.0
        inner_w = frame.width
        if not is_repeat:
            inner_w = max(inner_w, text_width(n.g["title"], SMALL + 1, True) + 12 - 2 * PANEL_PAD)
        g_top = dy - PANEL_PAD - title_h
        g_bot = dy + frame.height + PANEL_PAD
        all_ports = [y for ys in n.in_ports.values() for y in ys] + [y for o in n.outs.values() for y in o.ports]
        # the frame holds the ports of the wires it consumes; the wires broadcast over run past it
        passing_ys = {port[a] for a in passing}
        own = [y for y in all_ports if all(abs(y - p) > 0.01 for p in passing_ys)]
        g_top = min([g_top] + [y - 10 for y in own])
        g_bot = max([g_bot] + [y + 10 for y in own])
        n.g.update(top=g_top, bot=g_bot, dy=dy, pw=pw, side=side)
        n.g["frame_x"] = side + pw + PANEL_PAD + (inner_w - frame.width) / 2
        n.width = inner_w + 2 * PANEL_PAD + 2 * pw + 2 * side
        if is_repeat:
            n.width += text_width(n.g["title"], BOX_SIZE, True) + 2
        n.top = min([g_top - (BOX_SIZE if is_repeat else 0.0)] + [y - TOP_PAD for y in all_ports])
        n.bottom = max([g_bot] + [y + BOT_PAD for y in all_ports])
        if is_scan:
            n.g["loop_above"] = self._loop_above(n)
            if n.g["loop_above"]:
                n.top -= LOOP + 4
            else:
                n.bottom += LOOP + 4

    def _loop_above(self, n: _Node) -> bool:
        """Route a scan's carry over the block when fewer wires are in the way there."""
        states = n.g.get("states") or []
        if not states or states[0] not in n.in_ports or states[0] not in n.outs:
            return False
        yi0, yo0 = n.in_ports[states[0]][0], n.outs[states[0]].ports[0]
        yi1, yo1 = n.in_ports[states[-1]][-1], n.outs[states[-1]].ports[-1]
        ins = [y for ys in n.in_ports.values() for y in ys]
        outs = [y for o in n.outs.values() for y in o.ports]
        above = sum(1 for y in ins if y < yi0 - 0.01) + sum(1 for y in outs if y < yo0 - 0.01)
        below = sum(1 for y in ins if y > yi1 + 0.01) + sum(1 for y in outs if y > yo1 + 0.01)
        return above < below
