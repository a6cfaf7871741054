"""Backends, svg stage 1: the geometry of a neural circuit diagram (no SVG text).

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
import contextlib
import gc
from dataclasses import dataclass, field
from typing import Any

from ...ir import Diagram, Size, TensorType, const_label

__all__ = ["layout", "Layout", "Path", "Circle", "Text", "BoxGeom", "LabelGeom", "TrackGeom",
           "text_width", "axis_colors", "PALETTE"]

# ---------------------------------------------------------------- dimensions (px)

PITCH = 16.0        # between parallel wires of one bundle
TOP_PAD = 16.0      # room above a bundle's first wire: its labels and marks
BOT_PAD = 6.0
LANE_GAP = 8.0      # between the reaches of two lanes (a dashed line runs here)
STACK = BOT_PAD + LANE_GAP + TOP_PAD   # first wire of a bundle stacked under another's last
BOX_PAD = 7.5       # a box reaches this far beyond the wires it covers
CLEAR = 7.0         # least distance from a passing wire to a box it runs past
LABEL_SIZE = 10.0   # axis labels
BOX_SIZE = 11.0     # text in boxes
SMALL = 8.0         # superscripts, annotations, small marks
PANEL_PAD = 8.0
TITLE_H = 15.0      # a panel's title strip
LOOP = 9.0          # room for a scan's carry loop
MIN_LABEL_GAP = 10.0
RELABEL_COLUMNS = 12  # a wire that runs straight on is labelled again after this many columns
MARGIN = 14.0

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#e6820e", "#17a2b8", "#8c564b", "#d6408f",
           "#6b8e23", "#4b4fb0", "#b8860b", "#2f4f4f")
SCALAR = "#8a8a8a"
INK = "#222222"
FILL = {
    "learned": "#fdf6c3", "norm": "#cce7cf", "soft": "#dccbe6", "index": "#c9c3e3", "reduce": "#c9dcbf",
    "call": "#dbe5f3", "call_top": "#bfcfe8", "panel": "#f3f6fb", "panel_edge": "#aab8cf",
    "source": "#f2f2f2", "mark": "#ffffff", "repeat": "#555555",
}

# ---------------------------------------------------------------- text metrics

_FIRST = 32
_BOOK = (
    651, 821, 942, 1716, 1303, 1946, 1597, 563, 799, 799, 1024, 1716, 651, 739, 651, 690, 1303, 1303,
    1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 690, 690, 1716, 1716, 1716, 1087, 2048, 1401, 1405,
    1430, 1577, 1294, 1178, 1587, 1540, 604, 604, 1343, 1141, 1767, 1532, 1612, 1235, 1612, 1423, 1300,
    1251, 1499, 1401, 2025, 1403, 1251, 1403, 799, 690, 799, 1716, 1024, 1024, 1255, 1300, 1126, 1300,
    1260, 721, 1300, 1298, 569, 569, 1186, 569, 1995, 1298, 1253, 1300, 1300, 842, 1067, 803, 1298,
    1212, 1675, 1212, 1212, 1075, 1303, 690, 1303, 1716,
)
_BOLD = (
    713, 934, 1067, 1716, 1425, 2052, 1786, 627, 936, 936, 1071, 1716, 778, 850, 778, 748, 1425, 1425,
    1425, 1425, 1425, 1425, 1425, 1425, 1425, 1425, 819, 819, 1716, 1716, 1716, 1188, 2048, 1585, 1561,
    1503, 1700, 1399, 1399, 1681, 1714, 762, 762, 1587, 1305, 2038, 1714, 1741, 1501, 1741, 1577, 1475,
    1397, 1663, 1585, 2259, 1579, 1483, 1485, 936, 748, 936, 1716, 1024, 1024, 1382, 1466, 1214, 1466,
    1389, 891, 1466, 1458, 702, 702, 1362, 702, 2134, 1458, 1407, 1466, 1466, 1010, 1219, 979, 1458,
    1335, 1892, 1321, 1335, 1192, 1458, 748, 1458, 1716,
)
# symbols outside ASCII: (book, bold)
_EXTRA = {
    "×": (1716, 1716), "÷": (1716, 1716), "Σ": (1294, 1399), "μ": (1303, 1507), "σ": (1298, 1595),
    "√": (1305, 1366), "·": (651, 778), "−": (1716, 1716), "∗": (1716, 1716), "²": (821, 897),
    "³": (821, 897), "⁻": (1081, 1081), "½": (1985, 2120), "…": (2048, 2048), "→": (1716, 1716),
    "≤": (1716, 1716), "≥": (1716, 1716), "θ": (1253, 1407),
}
ASCENT = 1901 / 2048
DESCENT = 483 / 2048


def text_width(text: str, size: float, bold: bool = False) -> float:
    """Width in px of `text` set in DejaVu Sans at `size` px.

    >>> round(text_width("d", 10), 2)
    6.35
    """
    table = _BOLD if bold else _BOOK
    total = 0
    for ch in text:
        code = ord(ch) - _FIRST
        if 0 <= code < len(table):
            total += table[code]
        else:
            total += _EXTRA.get(ch, (2048, 2048))[1 if bold else 0]
    return total * size / 2048


# ---------------------------------------------------------------- shapes (what renderers draw)


@dataclass(frozen=True)
class Path:
    """An open or closed path: ("M", x, y), ("L", x, y), ("C", x1, y1, x2, y2, x, y), ("Z",)."""
    cmds: tuple
    stroke: str | None = INK
    width: float = 1.0
    fill: str | None = None
    dash: str | None = None
    role: str = "wire"


@dataclass(frozen=True)
class Circle:
    cx: float
    cy: float
    r: float
    fill: str | None = INK
    stroke: str | None = None
    width: float = 1.0
    role: str = "dot"


@dataclass(frozen=True)
class Text:
    """One line of text; `y` is the baseline, `anchor` is start, middle or end."""
    x: float
    y: float
    text: str
    size: float = LABEL_SIZE
    color: str = INK
    bold: bool = False
    italic: bool = False
    anchor: str = "start"
    role: str = "label"


# ---------------------------------------------------------------- what the shapes mean


@dataclass(frozen=True)
class BoxGeom:
    """A drawn box of the IR: its dotted path (as Diagram.walk names it) and extent."""
    path: str
    op: str
    kind: str
    x: float
    y: float
    w: float
    h: float
    parent: str = ""  # dotted path of the expanded box this one is drawn in ("" at top level)


@dataclass(frozen=True)
class LabelGeom:
    """A text placed in the figure, with its bounding box."""
    text: str
    kind: str  # axis | port | annotation | title | legend
    x: float
    y: float
    w: float
    h: float
    parent: str = ""
    wire: str = ""
    axis: str = ""
    line_y: float = 0.0  # for axis labels: the wire the label sits on


@dataclass(frozen=True)
class TrackGeom:
    """One horizontal run of one axis of one IR wire, and the label naming it."""
    wire: str  # dotted path of the wire
    axis: str  # "" for a scalar
    label: int  # index into Layout.labels, -1 for a scalar
    y: float
    x0: float
    x1: float
    parent: str = ""


@dataclass
class Layout:
    """A positioned figure: shapes in paint order plus the index of boxes, labels and tracks."""
    name: str
    width: float
    height: float
    shapes: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    tracks: list = field(default_factory=list)
    legend: list = field(default_factory=list)  # (axis, text, colour)
    # for a nested frame: where its inputs enter and its outputs leave, per wire of the port
    in_ports: list = field(default_factory=list)
    out_ports: list = field(default_factory=list)
    layers: tuple = ()
    out_labels: list = field(default_factory=list)  # per output wire: axis -> (label index, label x)


def _label_box(x: float, baseline: float, text: str, size: float, bold: bool = False, anchor: str = "start"):
    w = text_width(text, size, bold)
    if anchor == "middle":
        x -= w / 2
    elif anchor == "end":
        x -= w
    return x, baseline - ASCENT * size, w, (ASCENT + DESCENT) * size


# ---------------------------------------------------------------- what each operation looks like

JUNCTION_SYMBOL = {"add": "+", "sub": "−", "mul": "×", "div": "÷", "lt": "<", "le": "≤", "gt": ">",
                   "ge": "≥", "eq": "=", "where": "?", "maximum": "max", "minimum": "min"}
BINARY_TEXT = {"add": "+", "sub": "−", "mul": "×", "div": "÷", "lt": "<", "le": "≤", "gt": ">",
               "ge": "≥", "eq": "=", "maximum": "max", "minimum": "min"}
MARK_TEXT = {"relu": "R", "gelu": "G", "silu": "S", "sigmoid": "σ", "tanh": "tanh", "softplus": "sp",
             "exp": "exp", "log": "log", "sqrt": "√", "abs": "abs", "square": "x²", "neg": "−",
             "dropout": "drop", "causal": "mask"}
REDUCE_TEXT = {"sum": "Σ", "mean": "mean", "max": "max", "min": "min", "logsumexp": "lse",
               "argmax": "argmax"}
KIND = {"linear": "box", "conv": "box", "pool": "box", "layernorm": "norm", "rmsnorm": "norm",
        "softmax": "soft", "log_softmax": "soft", "embed": "index", "take": "index", "gather": "index",
        "onehot": "index", "rename": "bar", "merge": "bar", "split": "bar", "stack": "bar",
        "concat": "bar", "dot": "contract", "einsum": "contract", "param": "source", "const": "source",
        "arange": "source", "call": "call", "scan": "scan", "repeat": "repeat"}
for _op in REDUCE_TEXT:
    KIND[_op] = "reduce"
for _op in JUNCTION_SYMBOL:
    KIND[_op] = "junction"
for _op in MARK_TEXT:
    KIND[_op] = "mark"
FOLDABLE = set(BINARY_TEXT)  # a constant operand of these is written on the mark


def axis_colors(diagram: Diagram) -> dict[str, str]:
    """One colour per axis name across the figure and every nested body, by sorted name."""
    names: set[str] = set()

    def visit(d: Diagram, seen: set[int]):
        if id(d) in seen:
            return
        seen.add(id(d))
        for w in d.wires:
            names.update(w.type.names)
        for b in d.boxes:
            if b.body is not None:
                visit(b.body, seen)

    visit(diagram, set())
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(sorted(names))}


def _auto_name(box) -> bool:
    """True when the checker made the box's name up from its operation (linear_2, x:relu...)."""
    n = box.name
    if ":" in n or "@" in n or n == box.op:
        return True
    head, _, tail = n.rpartition("_")
    return head == box.op and tail.isdigit()


def _const_text(tree) -> str:
    text = const_label(tree)
    if text.startswith("sqrt(") and text.endswith(")") and "(" not in text[5:-1]:
        return "√" + text[5:-1]
    return text


def _sup_digits(n: int) -> str:
    return {1: "", 2: "²", 3: "³"}.get(n, f"^{n}")


def _box_text(box, op: str) -> tuple[str, str, bool]:
    """(main text, superscript, bold) written in a box."""
    sup = "" if _auto_name(box) else box.name
    if op == "linear":
        return ("L+" if box.attr("bias", True) else "L"), sup, True
    if op == "embed":
        return "E", sup, True
    if op == "conv":
        k = tuple(box.attr("kernel", ()))
        core = f"∗{k[0]}{_sup_digits(len(k))}" if k and len(set(k)) == 1 else "∗" + "×".join(map(str, k))
        return core + ("+" if box.attr("bias", True) else ""), sup, True
    if op == "pool":
        w = tuple(box.attr("window", ()))
        core = f"{w[0]}{_sup_digits(len(w))}" if w and len(set(w)) == 1 else "×".join(map(str, w))
        return f"{core} {box.attr('op', 'max')}", "", False
    if op == "layernorm":
        return "LN", sup, True
    if op == "rmsnorm":
        return "RMS", sup, True
    if op in REDUCE_TEXT:
        return REDUCE_TEXT[op], "", False
    if op == "take":
        return f"[{box.attr('index', 0)}]", "", False
    if op in ("gather", "onehot", "arange"):
        return op, "", False
    if op == "param":
        return box.name, "", True
    if op == "const":
        return _const_text(box.attr("value", ("num", 0.0))), "", False
    if op == "log_softmax":
        return "log", "", False
    return "", "", False


def _bend(x0: float, y0: float, x1: float, y1: float) -> tuple:
    """An S-curve from (x0, y0) to (x1, y1) leaving and arriving horizontally."""
    xm = (x0 + x1) / 2
    return (("M", x0, y0), ("C", xm, y0, xm, y1, x1, y1))


def _bend_width(dy: float) -> float:
    dy = abs(dy)
    if dy < 0.01:
        return 0.0
    return min(46.0, max(16.0, 10.0 + 0.45 * dy))


def _hline(x0: float, x1: float, y: float) -> tuple:
    return (("M", x0, y), ("L", x1, y))


# ---------------------------------------------------------------- the sweep's records


class _Lane:
    __slots__ = ("id", "parent", "prof", "y", "next", "tail", "rank", "key")

    def __init__(self, lid: int, parent: "_Lane | None"):
        self.id = lid
        self.parent = parent
        self.prof: dict[int, list[float]] = {}  # position -> [top, bottom] relative to the lane's line
        self.y = 0.0
        self.next: _Lane | None = None
        self.tail: _Lane = self
        self.rank = 0
        self.key = 0.0  # grows down the list; only a hint (ties are possible), the list is the truth

    def reach(self, pos: int, top: float, bottom: float):
        r = self.prof.get(pos)
        if r is None:
            self.prof[pos] = [top, bottom]
        else:
            if top < r[0]:
                r[0] = top
            if bottom > r[1]:
                r[1] = bottom


class _Band:
    """An IR wire drawn as parallel tracks, in one or more segments (lanes)."""
    __slots__ = ("wire", "type", "axes", "dtype", "producer", "out_index", "consumers", "last_col", "segs")

    def __init__(self, wire: str, ttype: TensorType, axes: list[str], producer, out_index: int):
        self.wire = wire
        self.type = ttype
        self.axes = axes  # track order, top to bottom; [""] for a scalar
        self.dtype = ttype.dtype
        self.producer = producer
        self.out_index = out_index
        self.consumers: list = []
        self.last_col = -1
        self.segs: list[_Seg] = []

    def seg_at(self, pos: int) -> "_Seg":
        for s in reversed(self.segs):
            if s.p0 <= pos:
                return s
        return self.segs[0]


class _Seg:
    __slots__ = ("band", "lane", "offs", "p0", "p1", "start", "col", "prev", "reads", "labelled",
                 "inherit", "label_ids", "label_col", "passing")

    def __init__(self, band: _Band, lane: _Lane, offs: list[float], p0: int, start: str, col: int,
                 prev: "_Seg | None" = None):
        self.band = band
        self.lane = lane
        self.offs = offs
        self.p0 = p0
        self.p1 = p0
        self.start = start  # input | node | branch
        self.col = col      # column where the segment starts
        self.prev = prev    # for a branch: the segment it was copied from
        self.reads: list[_Read] = []
        n = len(band.axes)
        self.labelled = [True] * n
        self.inherit: list = [None] * n   # (segment, track) whose label this track shows
        self.label_ids = [-1] * n
        self.label_col = [col] * n
        self.passing = [False] * n


class _Read:
    __slots__ = ("node", "index", "col", "seg", "lane", "ports", "in_lane")

    def __init__(self, node, index: int, col: int, seg: _Seg, lane: _Lane, ports: list[float], in_lane: bool):
        self.node = node
        self.index = index
        self.col = col
        self.seg = seg
        self.lane = lane    # the lane the port offsets are relative to
        self.ports = ports  # one offset per track of the band
        self.in_lane = in_lane


class _Out:
    """How a node's output leaves it: track order, port offsets (node lane), band offsets."""
    __slots__ = ("axes", "ports", "band", "passing")

    def __init__(self, axes, ports, band, passing):
        self.axes = axes
        self.ports = ports
        self.band = band        # offsets in the node's lane, or None for a lane of its own
        self.passing = passing  # tracks that run on from the input at the same height


class _Node:
    __slots__ = ("idx", "kind", "op", "box", "path", "inputs", "outputs", "types", "col", "lane", "main", "prim",
                 "in_ports", "outs", "out_order", "sec_order", "top", "bottom", "width", "g", "frame",
                 "text", "annotation", "x0", "in_x", "out_x", "const_text", "span")

    def __init__(self, idx: int, kind: str, op: str, box, path: str, inputs: list[str], outputs: list[str]):
        self.idx = idx
        self.kind = kind
        self.op = op
        self.box = box
        self.path = path
        self.inputs = inputs
        self.outputs = outputs
        self.types: list[TensorType] = []
        self.col = 0
        self.lane: _Lane | None = None
        self.main: int | None = None   # the input whose lane this node continues
        self.prim: int | None = None   # the input laid out as the main one (main, or the first input)
        self.in_ports: dict[int, list[float]] = {}
        self.outs: dict[int, _Out] = {}
        self.out_order = list(range(len(outputs)))
        self.sec_order: list[int] | None = None
        self.top = 0.0
        self.bottom = 0.0
        self.width = 0.0
        self.g: dict[str, Any] = {}
        self.frame: Layout | None = None
        self.text = ("", "", False)
        self.annotation = ""
        self.x0 = 0.0
        self.in_x = 0.0
        self.out_x = 0.0
        self.const_text = ""
        self.span = 0.0  # width the column needs for this node (its glyph, or a wider annotation)


# ---------------------------------------------------------------- the builder


class _Ctx:
    """What every nesting level shares: colours, annotations, and laid-out bodies."""

    def __init__(self, colors: dict[str, str], annotations: dict[str, str]):
        self.colors = colors
        self.annotations = annotations
        self.frames: dict[tuple, Layout] = {}
        self.keep: list = []  # keeps memoised bodies alive so their ids stay unique

    def color(self, axis: str) -> str:
        return self.colors.get(axis, SCALAR) if axis else SCALAR


def _axes_of(t: TensorType) -> list[str]:
    return list(t.names) if t.names else [""]


class _Builder:
    def __init__(self, diagram: Diagram, depth: int, ctx: _Ctx, prefix: str = "", nested: bool = False,
                 in_order: list[int] | None = None, origin_y: float = 0.0):
        self.origin_y = origin_y  # where the frame's top lands (the top level leaves room for a title)
        self.d = diagram
        self.depth = depth
        self.ctx = ctx
        self.prefix = prefix
        self.nested = nested
        n_in = sum(len(p.wires) for p in diagram.inputs)
        self.in_order = in_order if in_order is not None else list(range(n_in))
        self.types = {w.name: w.type for w in diagram.wires}
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
                a_, b_ = (folded.get(w, "·") for w in b.inputs[1:])
                const_text = f"? {a_} : {b_}"
                if len(inputs) == 1:
                    kind = "mark"
            elif kind == "junction" and len(inputs) == 1 and len(b.inputs) == 2:
                kind = "mark"
                sym = BINARY_TEXT[b.op]
                if b.inputs[0] in folded:
                    const_text = f"{folded[b.inputs[0]]} {sym} ·"
                else:
                    const_text = f"{sym}{folded[b.inputs[1]]}" if len(sym) == 1 else f"{sym} {folded[b.inputs[1]]}"
            if kind in ("call", "scan") and self.depth > 0 and b.body is not None:
                kind = "panel"
            node = _Node(len(nodes), kind, b.op, b, self.prefix + b.name, inputs, list(b.outputs))
            node.const_text = const_text
            node.types = [self.types[w] for w in b.outputs]
            node.annotation = self.ctx.annotations.get(self.prefix + b.name, "")
            nodes.append(node)
        self.out_node = _Node(len(nodes), "out", "out", None, "", list(d.output.wires), [])
        nodes.append(self.out_node)
        self.nodes = nodes

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
            seg = _Seg(b, lane, [i * PITCH for i in range(len(axes))], 0, "input", 0)
            b.segs.append(seg)
        n.lane = self.lanes[0] if self.lanes else None

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
        prev_lane = lane
        main_seg = reads[main][2] if main is not None else None
        for rank, k in enumerate(n.out_order):
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
                        if straight and c - main_seg.label_col[j] < RELABEL_COLUMNS:
                            seg.labelled[t] = False
                            seg.inherit[t] = (main_seg, j)
                            seg.label_col[t] = main_seg.label_col[j]

    # ------------------------------------------------ ports, per kind of node

    def ports(self, n: _Node, reads):
        kind = n.kind
        if kind == "mark":
            self.ports_mark(n, reads)
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
        return {a for a in axes if roles.get(a) in ("consumed", "replaced") or a not in out0}

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

    def _scan_orders(self, n: _Node):
        b = n.box
        ns, nx, nc = b.attr("n_state", 1), b.attr("n_xs", 0), b.attr("n_const", 0)
        states = list(range(ns))
        xs = list(range(ns, ns + nx))
        consts = list(range(ns + nx, ns + nx + nc))
        return states, xs, consts

    def ports_box(self, n: _Node, reads, tracks=None):
        kind = n.kind
        block = kind in ("call", "scan", "panel", "repeat")
        if n.box is not None:
            n.text = _box_text(n.box, n.op)
        if kind in ("call", "scan"):
            args = ", ".join(f"{k}={v}" for k, v in (n.box.body.axis_args if n.box.body is not None else ()))
            lines = [n.box.attr("circuit", n.op)]
            if args:
                lines.append(f"[{args}]")
            if kind == "scan":
                lines.append(f"scan over {n.box.attr('along', '')}")
            n.g["lines"] = lines
        if kind == "scan":
            states, xs, consts = self._scan_orders(n)
            main_is_state = n.prim in states
            n.sec_order = [i for i in xs + consts + states if i != n.prim]
            if not main_is_state:
                n.out_order = [len(states)] + states if len(n.outputs) > len(states) else states
            n.g["loop_above"] = main_is_state
            n.g["states"] = states
        tracks = self._main_tracks(n, reads) if tracks is None else tracks
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
            return w + 20.0 + (2 * LOOP if kind == "scan" else 0.0)
        return max(22.0, tw + 12.0)

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
        text = n.const_text or MARK_TEXT.get(n.op, n.op)
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
        sym = n.const_text or JUNCTION_SYMBOL.get(n.op, n.op)
        n.g["sym"] = sym
        n.g["dots"] = [pos[a] for a in order if merge_count[a] >= 2]
        n.g["top_y"] = top_y
        wide = len(sym) > 1
        n.width = text_width(sym, SMALL + 1) + 10.0 if wide else 14.0
        n.top = top_y - TOP_PAD
        n.bottom = max(pos.values()) + BOT_PAD

    def ports_contract(self, n: _Node, reads):
        out_axes = list(n.types[0].names)
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
        cap_w = max(r_max, 4.0 if stubs else 0.0) + 6.0
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
        if is_scan:
            states, xs, consts = self._scan_orders(n)
            n.sec_order = [i for i in xs + consts + states if i != n.prim]
            n.g["states"] = states
        else:
            n.sec_order = self._by_height(n, reads)
        in_order = ([n.prim] if n.prim is not None else []) + n.sec_order
        depth = self.depth if is_repeat else self.depth - 1
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
        else:
            args = ", ".join(f"{k}={v}" for k, v in box.body.axis_args)
            n.g["title"] = box.attr("circuit", box.name) + (f"[{args}]" if args else "")
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
        edge_in, edge_out = set(), set()
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
                edge_in.add((i, a))
                if i == n.prim:
                    ports.append(port[a])
                else:
                    extra_low += PITCH
                    ports.append(extra_low)
            n.in_ports[i] = ports
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
        g_top = min([g_top] + [y - 10 for y in all_ports])
        g_bot = max([g_bot] + [y + 10 for y in all_ports])
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
            names = [text_width(w, LABEL_SIZE) for w in self.in_node.outputs]
            colw[0] = max(colw[0], max(names, default=0.0) + 8.0)
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
                widths = [text_width(a, LABEL_SIZE) + 6.0 for a, on in zip(b.axes, s.labelled) if on and a]
                wmax = max(widths, default=0.0)
                if s.start == "branch":
                    colw[s.col] = max(colw[s.col], wmax + 4.0)
                else:
                    c = b.producer.col if s.start == "node" else 0
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
        self.place_lanes()
        self.place_columns()
        return self.emit()

    def emit(self) -> Layout:
        back, wires, glyphs, dots, texts = [], [], [], [], []
        self.L = (back, wires, glyphs, dots, texts)
        self.boxes: list[BoxGeom] = []
        self.labels: list[LabelGeom] = []
        self.tracks: list[TrackGeom] = []
        self.parent = self.prefix[:-1] if self.prefix else ""
        self.emit_separators()
        for n in self.nodes:
            self.emit_node(n)
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
        out_ports = [dict() for _ in self.out_node.inputs]
        out_labels = [dict() for _ in self.out_node.inputs]
        for r in self.out_reads:
            b = r.seg.band
            out_ports[r.index] = {a: r.lane.y + o for a, o in zip(b.axes, r.ports)}
            for t, a in enumerate(b.axes):
                lid = r.seg.label_ids[t]
                if lid >= 0 and r.in_lane:
                    out_labels[r.index][a] = (lid, self.labels[lid].x)
        return Layout(self.d.name, self.width, self.height, [], self.boxes, self.labels, self.tracks, [],
                      in_ports, out_ports, self.L, out_labels)

    def _pos_x(self, p: int, end: bool) -> float:
        c = p // 2
        if p % 2 == 0:
            return self.x_right[c] if end else self.x_left[c]
        if c >= self.ncols - 1:
            return self.x_right[-1]
        return self.x_lab[c] if end else self.x_post[c]

    def emit_separators(self):
        for m, l, p0, p1, mb, lt in self.ranges:
            if (l.y + lt) - (m.y + mb) > LANE_GAP + 12:
                continue  # far apart: a dashed line in empty space would separate nothing
            y = (m.y + mb + l.y + lt) / 2
            x0, x1 = self._pos_x(p0, False), self._pos_x(p1, True)
            if x1 - x0 > 30:
                self.L[0].append(Path(_hline(x0, x1, y), "#a3acb8", 0.8, None, "4 3", "separator"))

    def _wire_style(self, dtype: str, axis: str) -> tuple[float, str | None]:
        if dtype != "float":
            return 1.4, "3 2"
        return (1.6, None) if axis else (1.2, "1.5 2")

    def emit_segment(self, b: _Band, s: _Seg, successors: list[_Seg]):
        wires, dots = self.L[1], self.L[3]
        ly = s.lane.y
        wpath = self.prefix + b.wire
        for t, a in enumerate(b.axes):
            y = ly + s.offs[t]
            color = self.ctx.color(a)
            width, dash = self._wire_style(b.dtype, a)
            pieces = []
            label_x = None
            if s.start == "input":
                x_h0 = self.x_right[0]
                label_x = self.x_post[0] + 3
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
                    pieces.append(_bend(self.x_right[c], py, self.x_post[c], y))
                    x_h0 = self.x_post[c]
                else:
                    x_h0 = xs
                label_x = self.x_post[c] + 3
            else:  # a copy that branched off
                p = s.prev
                c = s.col
                py = p.lane.y + p.offs[t]
                pieces.append(_bend(self.x_lab[c - 1], py, self.x_left[c], y))
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
                    pieces.append(_bend(xb, y, self.x_left[c], ry))
                    if xe > self.x_left[c] + 0.01:
                        pieces.append(_hline(self.x_left[c], xe, ry))
                    x_h1 = max(x_h1, xb)
                    branch[xb] = branch.get(xb, 0) + 1
            for nxt in successors:
                xb = self.x_lab[nxt.col - 1]
                x_h1 = max(x_h1, xb)
                branch[xb] = branch.get(xb, 0) + 1
            ended = not s.reads and not successors
            if ended:
                c = b.producer.col if s.start == "node" else 0
                x_h1 = max(x_h0 + 8.0, self.x_lab[c] - 2.0 if c < self.ncols - 1 else x_h0 + 8.0)
            if x_h1 > x_h0 + 0.01:
                pieces.insert(0, _hline(x_h0, x_h1, y))
            if ended:
                pieces.append((("M", x_h1, y - 3.5), ("L", x_h1, y + 3.5)))
            if pieces:  # one path per track: its run and bends as subpaths
                wires.append(Path(tuple(c for cmds in pieces for c in cmds), color, width, None, dash, "wire"))
            for xb in sorted(branch):
                out = branch[xb] + (1 if x_h1 > xb + 0.5 else 0)
                if out >= 2:
                    dots.append(Circle(xb, y, 2.6, color, None, 1.0, "dot"))
            # the label
            lid = -1
            if a:
                if s.labelled[t]:
                    bx, by, bw, bh = _label_box(label_x, y - 3.0, a, LABEL_SIZE)
                    lid = len(self.labels)
                    self.labels.append(LabelGeom(a, "axis", bx, by, bw, bh, self.parent, wpath, a, y))
                    self.L[4].append(Text(label_x, y - 3.0, a, LABEL_SIZE, color, False, True, "start", "axis"))
                elif s.inherit[t] is not None:
                    src, j = s.inherit[t]
                    lid = j if src == "label" else src.label_ids[j]
            s.label_ids[t] = lid
            self.tracks.append(TrackGeom(wpath, a, lid, y, x_h0, x_h1, self.parent))

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
                    x = self.x_right[0] - 5
                    bx, by, bw, bh = _label_box(x, y, w, LABEL_SIZE, anchor="end")
                    self.labels.append(LabelGeom(w, "port", bx, by, bw, bh, self.parent))
                    self.L[4].append(Text(x, y, w, LABEL_SIZE, "#444444", False, False, "end", "port"))
            return
        if n.kind == "out":
            return
        ly = n.lane.y
        g = n.g
        back, wires, glyphs, dots, texts = self.L
        x0, w = n.x0, n.width
        kind = n.kind
        if kind in ("box", "reduce", "norm", "index", "soft", "bar", "call", "scan"):
            top, bot = ly + g["top"], ly + g["bot"]
            h = bot - top
            strided = n.op == "conv" and any(v > 1 for v in (n.box.attr("stride", (1,)) or (1,)))
            if strided:  # a strided convolution shrinks its spatial wires: a trapezoid
                inset = min(5.0, h / 4)
                glyphs.append(_poly([(x0, top), (x0 + w, top + inset), (x0 + w, bot - inset), (x0, bot)],
                                    FILL["learned"], INK, 1.1, "box"))
                self._text_in(x0 + w / 2, (top + bot) / 2, n)
            elif kind == "box" or kind == "reduce":
                fill = FILL["learned"] if n.op in ("linear", "conv") else FILL["reduce"]
                glyphs.append(_rect(x0, top, w, h, 3.0, fill, INK, 1.1, "box"))
                self._text_in(x0 + w / 2, (top + bot) / 2, n)
            elif kind == "norm":
                glyphs.append(_rect(x0, top, w, h, min(h, w) / 2, FILL["norm"], INK, 1.1, "box"))
                self._text_in(x0 + w / 2, (top + bot) / 2, n)
            elif kind == "index":
                pts = [(x0, top), (x0 + w - 7, top), (x0 + w, (top + bot) / 2), (x0 + w - 7, bot), (x0, bot)]
                fill = FILL["learned"] if n.op == "embed" else FILL["index"]
                glyphs.append(_poly(pts, fill, INK, 1.1, "box"))
                self._text_in(x0 + (w - 7) / 2 + 1, (top + bot) / 2, n)
            elif kind == "soft":
                pts = [(x0, top), (x0 + w, (top + bot) / 2), (x0, bot)]
                glyphs.append(_poly(pts, FILL["soft"], INK, 1.1, "box"))
                if n.op == "log_softmax":  # written inside, near the base where the triangle is tall
                    texts.append(Text(x0 + 2.5, (top + bot) / 2 + 2.6, "log", 7.5, INK, False, False, "start",
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
                for i, line in enumerate(lines):
                    size = BOX_SIZE if i == 0 else SMALL + 1
                    texts.append(Text(bx0 + (bw - d) / 2, base, line, size, INK, i == 0, i > 0, "middle", "box"))
                    base += SMALL + 3
                if kind == "scan":
                    self.emit_loop(n, top, bot)
            self._box(n, kind, x0, top, w, h)
            self.emit_annotation(n, x0 + w / 2, bot)
        elif kind == "mark":
            t0, t1 = g["tag"]
            cx = n.in_x
            tw = w - 2
            glyphs.append(_rect(cx - tw / 2, ly + t0, tw, t1 - t0, (t1 - t0) / 2, FILL["mark"], "#555555", 0.8, "box"))
            yc = ly + (t0 + t1) / 2
            for ax in (cx - tw / 2 + 4, cx + tw / 2 - 8.5):
                glyphs.append(_poly([(ax, yc - 2.5), (ax + 4.5, yc), (ax, yc + 2.5)], "#555555", None, 0.0, "box"))
            texts.append(Text(cx, yc + 3.1, g["text"], SMALL + 1, INK, False, False, "middle", "box"))
            self._box(n, kind, cx - tw / 2, ly + t0, tw, t1 - t0)
            self.emit_annotation(n, cx, ly + max(n.outs[0].ports, default=0.0) + 2)
        elif kind == "junction":
            cx = n.in_x
            sym = g["sym"]
            yc = ly + g["top_y"] - 9.5
            if len(sym) == 1:
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
            for a, yl in g["caps"]:
                color = self.ctx.color(a)
                ys.extend(yl)
                if len(yl) == 2:
                    y1, y2 = ly + yl[0], ly + yl[1]
                    k = (y2 - y1) / 2 * 4 / 3
                    wires.append(Path((("M", xa, y1), ("C", xa + k, y1, xa + k, y2, xa, y2)), color, 1.6, None,
                                      None, "wire"))
                else:
                    xv = xa + 6
                    for yy in yl:
                        wires.append(Path(_hline(xa, xv, ly + yy), color, 1.6, None, None, "wire"))
                        dots.append(Circle(xv, ly + yy, 2.4, color, None, 1.0, "dot"))
                    wires.append(Path((("M", xv, ly + yl[0]), ("L", xv, ly + yl[-1])), color, 1.6, None, None, "wire"))
            for a, yy in g["stubs"]:
                color = self.ctx.color(a)
                ys.append(yy)
                wires.append(Path(_hline(xa, xa + 5, ly + yy), color, 1.6, None, None, "wire"))
                wires.append(Path((("M", xa + 5, ly + yy - 3.5), ("L", xa + 5, ly + yy + 3.5)), color, 1.6, None,
                                  None, "wire"))
            for a, y_in, row, _ in g["merges"]:
                color = self.ctx.color(a)
                ys.extend([y_in, row])
                x1 = xa + cap_w
                wires.append(Path(_hline(xa, x1, ly + y_in), color, 1.6, None, None, "wire"))
                if abs(row - y_in) > 0.01:
                    wires.append(Path(_bend(x1, ly + y_in, xm, ly + row), color, 1.6, None, None, "wire"))
                else:
                    wires.append(Path(_hline(x1, xm, ly + row), color, 1.6, None, None, "wire"))
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

    def emit_annotation(self, n: _Node, cx: float, below: float):
        if not n.annotation:
            return
        y = below + SMALL + 1
        bx, by, bw, bh = _label_box(cx, y, n.annotation, SMALL, anchor="middle")
        self.labels.append(LabelGeom(n.annotation, "annotation", bx, by, bw, bh, self.parent))
        self.L[4].append(Text(cx, y, n.annotation, SMALL, "#5f6b7a", False, False, "middle", "annotation"))

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
        back, wires, glyphs, dots, texts = self.L
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
        # the body, moved into place
        for layer, shapes in zip(self.L, frame.layers):
            layer.extend(_shift(s, fx, fy) for s in shapes)
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


def _rect(x: float, y: float, w: float, h: float, r: float, fill, stroke, width: float, role: str) -> Path:
    r = max(0.0, min(r, w / 2, h / 2))
    if r < 0.01:
        cmds = (("M", x, y), ("L", x + w, y), ("L", x + w, y + h), ("L", x, y + h), ("Z",))
    else:
        k = r * 0.4477  # 1 - 0.5523: a quarter circle as one cubic
        cmds = (("M", x + r, y), ("L", x + w - r, y), ("C", x + w - k, y, x + w, y + k, x + w, y + r),
                ("L", x + w, y + h - r), ("C", x + w, y + h - k, x + w - k, y + h, x + w - r, y + h),
                ("L", x + r, y + h), ("C", x + k, y + h, x, y + h - k, x, y + h - r),
                ("L", x, y + r), ("C", x, y + k, x + k, y, x + r, y), ("Z",))
    return Path(cmds, stroke, width, fill, None, role)


def _poly(pts, fill, stroke, width: float, role: str) -> Path:
    cmds = (("M",) + tuple(pts[0]),) + tuple(("L",) + tuple(p) for p in pts[1:]) + (("Z",),)
    return Path(cmds, stroke, width, fill, None, role)


def _shift(s, dx: float, dy: float):
    if isinstance(s, Path):
        cmds = []
        for c in s.cmds:
            if c[0] == "Z":
                cmds.append(c)
            else:
                vals = c[1:]
                cmds.append((c[0],) + tuple(v + (dx if j % 2 == 0 else dy) for j, v in enumerate(vals)))
        return Path(tuple(cmds), s.stroke, s.width, s.fill, s.dash, s.role)
    if isinstance(s, Circle):
        return Circle(s.cx + dx, s.cy + dy, s.r, s.fill, s.stroke, s.width, s.role)
    return Text(s.x + dx, s.y + dy, s.text, s.size, s.color, s.bold, s.italic, s.anchor, s.role)


# ---------------------------------------------------------------- the figure


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


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while building many small objects.

    Its passes scan every live object, so left on it makes a linear-time
    layout grow quadratically with the figure (measured: 3x per doubling).
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def layout(diagram: Diagram, depth: int = 0, annotations: dict[str, str] | None = None,
           axis_formulas: dict[str, str] | None = None) -> Layout:
    """Place a diagram: boxes, wires, labels, panels, a title and a legend of axis sizes.

    Args:
        diagram: the typed diagram (``diagrammar.load(path)[name]``).
        depth: how many levels of sub-circuit calls to expand into panels
            (0 draws every call as a named block; `repeat` bodies are always drawn once).
        annotations: dotted box path (as ``Diagram.walk`` names it) -> text written under the box.
        axis_formulas: axis name -> how its size was declared (``"d // heads"``), for the legend.

    Returns:
        A Layout: shapes in paint order and an index of boxes, labels and tracks.

    Example:
        >>> import diagrammar
        >>> d = diagrammar.parse("axis d = 4\\ncircuit F(x: [d]) -> [d]:\\n    return relu(x)\\n")["F"]
        >>> fig = layout(d)
        >>> [t.axis for t in fig.tracks]
        ['d', 'd']
    """
    with gc_paused():
        return _layout(diagram, depth, annotations, axis_formulas)


def _layout(diagram, depth, annotations, axis_formulas) -> Layout:
    ctx = _Ctx(axis_colors(diagram), dict(annotations or {}))
    title_lines = _signature(diagram)
    title_y = MARGIN + 12
    top = title_y + 14 + (len(title_lines) - 1) * 16
    body = _Builder(diagram, max(0, int(depth)), ctx, origin_y=top).run()
    formulas = dict(axis_formulas or {})
    shapes_title, title_labels = [], []
    bw = 0.0
    for i, line in enumerate(title_lines):
        y = title_y + 16 * i
        shapes_title.append(Text(MARGIN, y, line, TITLE_SIZE, INK, True, False, "start", "title"))
        lx, ly_, lw, lh = _label_box(MARGIN, y, line, TITLE_SIZE, True)
        title_labels.append(LabelGeom(line, "title", lx, ly_, lw, lh))
        bw = max(bw, lw)
    # legend
    entries = []
    for name, size in sorted(_legend_axes(diagram, depth).items()):
        f = formulas.get(name)
        if str(size) == name:
            text = f"{name}: set when compiled"
        elif f and f.replace(" ", "") != str(size).replace(" ", ""):
            text = f"{name} = {f} = {size}" if size.is_const else f"{name} = {f}"
        else:
            text = f"{name} = {size}"
        entries.append((name, text, ctx.color(name)))
    width = max(body.width + MARGIN, bw + 2 * MARGIN, 220.0)
    leg_shapes, leg_labels, leg_h = _legend(entries, top + body.height + 18, width)
    height = top + body.height + 18 + leg_h + MARGIN
    back, wires, glyphs, dots, texts = body.layers
    shapes = back + wires + glyphs + dots + texts + shapes_title + leg_shapes
    labels = body.labels + title_labels + leg_labels
    boxes, tracks = body.boxes, body.tracks
    shapes, labels, tracks = _drop_repeated_labels(shapes, labels, tracks, boxes)
    return Layout(diagram.name, round(width, 2), round(height, 2), shapes, boxes, labels, tracks, entries)


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


def _legend(entries, y0: float, width: float):
    """A box listing every axis with its size, in as many columns as fit."""
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
    x0 = MARGIN
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
