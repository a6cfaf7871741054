"""Backends, svg: the figure's vocabulary: sizes, text metrics, shapes, the index of what they mean, and
how each operation looks (its kind and the text in its glyph). Pure data and small helpers; no layout."""
from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from ... import ops
from ...ir import Diagram, const_label

# ---------------------------------------------------------------- dimensions (px)

PITCH = 14.0        # between parallel wires of one bundle
TOP_PAD = 13.0      # room above a bundle's first wire: its labels and marks
BOT_PAD = 4.0
LANE_GAP = 5.0      # between the reaches of two lanes (a dashed line runs here)
STACK = BOT_PAD + LANE_GAP + TOP_PAD   # first wire of a bundle stacked under another's last
BOX_PAD = 7.5       # a box reaches this far beyond the wires it covers
CLEAR = 6.0         # least distance from a passing wire to a box it runs past
LABEL_SIZE = 10.0   # axis labels
BOX_SIZE = 11.0     # text in boxes
SMALL = 8.0         # superscripts, annotations, small marks
PORT_NAME_SIZE = 9.0  # the names of a collapsed block's inputs, written inside it
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
FILL = {  # normalisation's circle and softmax's triangle are open (white), as Abbott draws them
    "learned": "#fdf6c3", "norm": "#ffffff", "soft": "#ffffff", "index": "#c9c3e3", "reduce": "#c9dcbf",
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
    "⁰": (821, 897), "¹": (821, 897), "⁴": (821, 897), "⁵": (821, 897), "⁶": (821, 897), "⁷": (821, 897),
    "⁸": (821, 897), "⁹": (821, 897), "∞": (1706, 1706),
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
    meta: tuple = ()  # what it means: ((key, value), ...), written as class and data- attributes


@dataclass(frozen=True)
class Circle:
    cx: float
    cy: float
    r: float
    fill: str | None = INK
    stroke: str | None = None
    width: float = 1.0
    role: str = "dot"
    meta: tuple = ()


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
    meta: tuple = ()


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
    cuts: list = field(default_factory=list)  # x where every wire runs straight: a row may end there
    pages: list = field(default_factory=list)  # a figure too tall for one page: the pages after this one


def _label_box(x: float, baseline: float, text: str, size: float, bold: bool = False, anchor: str = "start"):
    w = text_width(text, size, bold)
    if anchor == "middle":
        x -= w / 2
    elif anchor == "end":
        x -= w
    return x, baseline - ASCENT * size, w, (ASCENT + DESCENT) * size


# ---------------------------------------------------------------- what each operation looks like


@dataclass(frozen=True)
class Glyph:
    """How a figure draws one operation: the kind of shape, and what is written on or in it.

    `kind` picks the shape (see glyphs.py): box, index (a box with a pointed
    end), norm (a circle over the normalised axes), soft (a triangle), reduce,
    mark (a tag on the wire), junction (where operands meet), contract, bar
    (moves axes), source, call, scan, repeat. `text` is the symbol on a mark or
    junction, the letters of a reduction or index box, the letters inside a
    norm's circle or a soft triangle's; `label`, where the text depends on the
    box's attributes, gives (main text, superscript, bold) for a box.
    """

    kind: str
    text: str = ""
    label: Callable | None = None


def _sup(box) -> str:
    return "" if _auto_name(box) else box.name


def _conv_label(box) -> tuple[str, str, bool]:
    k = tuple(box.attr("kernel", ()))
    star = "∗ᵀ" if box.op == "conv_transpose" else "∗"
    core = f"{star}{k[0]}{_sup_digits(len(k))}" if k and len(set(k)) == 1 else star + "×".join(map(str, k))
    core += "+" if box.attr("bias", True) else ""
    # v1's arguments, written only when given: a v0 conv keeps its label
    extra = []
    if box.attr("causal"):
        extra.append("causal")
    if box.attr("dilation"):
        extra.append("d" + "×".join(map(str, dict.fromkeys(box.attr("dilation")))))
    if box.attr("groups"):
        extra.append(f"g{box.attr('groups')}")
    return " ".join([core] + extra), _sup(box), True


def _pad_label(box) -> tuple[str, str, bool]:
    pairs = tuple(box.attr("padding", ()))
    if len(set(pairs)) == 1 and pairs[0][0] == pairs[0][1]:
        return f"pad {pairs[0][0]}", "", False
    return "pad", "", False


def _slice_text(box) -> str:
    """`[rk:rk+ds]`: the positions a slice reads, its length named by the new axis; a start that is
    not one name or number is written once, `[rk+ds:+ds]` ("ds positions from rk+ds")."""
    start = box.attr("start", ("num", 0))
    first = _const_text(start)
    if start == ("num", 0):
        return f"[:{box.attr('dst')}]"
    plain = _atomic(start) or start[0] == "neg" and _atomic(start[1])
    if plain:
        return f"[{first}:{first}+{box.attr('dst')}]"
    return f"[{first.replace(' ', '')}:+{box.attr('dst')}]"  # a long start once: "n from there"


def _pool_label(box) -> tuple[str, str, bool]:
    w = tuple(box.attr("window", ()))
    core = f"{w[0]}{_sup_digits(len(w))}" if w and len(set(w)) == 1 else "×".join(map(str, w))
    return f"{core} {box.attr('op', 'max')}", "", False


# The glyph of every operation, by name (ops.py is the catalogue; tests/test_catalogue.py checks this covers it).
GLYPHS: dict[str, Glyph] = {
    # where operands meet: the operator's symbol
    **{op: Glyph("junction", sym) for op, sym in (
        ("add", "+"), ("sub", "−"), ("mul", "×"), ("div", "÷"), ("lt", "<"), ("le", "≤"), ("gt", ">"),
        ("ge", "≥"), ("eq", "="), ("where", "?"), ("maximum", "max"), ("minimum", "min"), ("floordiv", "//"),
        ("mod", "%"))},
    # a tag on the wire
    **{op: Glyph("mark", text) for op, text in (
        ("relu", "R"), ("silu", "S"), ("sigmoid", "σ"), ("tanh", "tanh"), ("softplus", "sp"),
        ("exp", "exp"), ("log", "log"), ("sqrt", "√"), ("abs", "abs"), ("square", "x²"), ("neg", "−"),
        ("dropout", "drop"), ("causal", "mask"), ("erf", "erf"), ("sin", "sin"), ("cos", "cos"),
        ("int", "int"), ("float", "float"), ("bool", "bool"))},
    # a box over the axes it folds away
    **{op: Glyph("reduce", text) for op, text in (
        ("sum", "Σ"), ("mean", "mean"), ("max", "max"), ("min", "min"), ("logsumexp", "lse"), ("argmax", "argmax"))},
    # gelu's tanh form is G, as in v0; the exact (erf) form says so
    "gelu": Glyph("mark", "G", label=lambda box: ("G" if box.attr("approximate", True) else "G erf", "", False)),
    "linear": Glyph("box", label=lambda box: ("L+" if box.attr("bias", True) else "L", _sup(box), True)),
    "conv": Glyph("box", label=_conv_label),
    "pool": Glyph("box", label=_pool_label),
    "conv_transpose": Glyph("box", label=_conv_label),
    "pad": Glyph("box", label=_pad_label),
    "batchnorm": Glyph("norm", "BN"),
    "layernorm": Glyph("norm", "μσ"), "rmsnorm": Glyph("norm", "rms"),
    "softmax": Glyph("soft"), "log_softmax": Glyph("soft", "log"),
    "embed": Glyph("index", label=lambda box: ("E", _sup(box), True)),
    "take": Glyph("index", label=lambda box: (f"[{box.attr('index', 0)}]", "", False)),
    "slice": Glyph("index", label=lambda box: (_slice_text(box), "", False)),
    "gather": Glyph("index", "gather"), "onehot": Glyph("index", "onehot"),
    "scatter_add": Glyph("index", "scatter+"), "topk": Glyph("index", "top-k"),
    **{op: Glyph("bar") for op in ("rename", "merge", "split", "stack", "concat")},
    "dot": Glyph("contract"), "einsum": Glyph("contract"),
    "param": Glyph("source", label=lambda box: (box.name, "", True)),
    "const": Glyph("source", label=lambda box: (_const_text(box.attr("value", ("num", 0.0))), "", False)),
    "arange": Glyph("source", "arange"),
    "full": Glyph("source", label=lambda box: ("full " + _const_text(box.attr("value", ("num", 0.0))), "", False)),
    "call": Glyph("call"), "scan": Glyph("scan"), "repeat": Glyph("repeat"), "dispatch": Glyph("call"),
}

# Operations that never reach this backend (see tests/test_catalogue.py).
NOT_SUPPORTED: dict[str, str] = {}

# a registered operation brings its (shape, text): a mark or a box
ops.bind_table(GLYPHS, lambda op: Glyph(*op.glyph))


def glyph_label(op: str, box) -> str:
    """The text a mark writes for this box, where it depends on the box's attributes (else "")."""
    g = GLYPHS.get(op)
    return g.label(box)[0] if g is not None and g.kind == "mark" and g.label is not None and box is not None else ""


def glyph_text(op: str, kind: str, default: str = "") -> str:
    """The text of `op`'s glyph when its glyph is of this kind, else `default`."""
    g = GLYPHS.get(op)
    return g.text if g is not None and g.kind == kind else default


class _Kinds(Mapping):
    """Operation -> the kind of its glyph: a view of GLYPHS (operations registered later included)."""

    def __getitem__(self, op: str) -> str:
        return GLYPHS[op].kind

    def get(self, op: str, default=None):
        g = GLYPHS.get(op)
        return default if g is None else g.kind

    def __iter__(self):
        return iter(GLYPHS)

    def __len__(self) -> int:
        return len(GLYPHS)


KIND = _Kinds()
# a binary operation with a constant operand is drawn as a mark with the constant written on it
BINARY_TEXT = {op: g.text for op, g in GLYPHS.items() if g.kind == "junction" and op != "where"}
FOLDABLE = set(BINARY_TEXT)  # a constant operand of these is written on the mark
COMMUTATIVE = {o.name for o in ops.CATALOGUE.values() if o.commutative}  # a constant on the left is written on the right


def _lab(color: str) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of a #rrggbb colour, for telling how far apart two colours look."""
    rgb = [int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    x = (0.4124 * lin[0] + 0.3576 * lin[1] + 0.1805 * lin[2]) / 0.95047
    y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    z = (0.0193 * lin[0] + 0.1192 * lin[1] + 0.9505 * lin[2]) / 1.08883
    f = [t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in (x, y, z)]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def _color_distance(a: str, b: str) -> float:
    """How different two colours look (CIE76 delta E)."""
    la, lb = _lab(a), _lab(b)
    return ((la[0] - lb[0]) ** 2 + (la[1] - lb[1]) ** 2 + (la[2] - lb[2]) ** 2) ** 0.5


def drawn_diagrams(diagram: Diagram, depth: int | None = None) -> list[Diagram]:
    """The diagram and the bodies a figure of it draws: `repeat` bodies always, calls and scans `depth`
    levels deep (every level when depth is None), each once."""
    out: list[Diagram] = []
    seen: set[int] = set()

    def visit(d: Diagram, dep):
        if id(d) in seen:
            return
        seen.add(id(d))
        out.append(d)
        for b in d.boxes:
            if b.body is None:
                continue
            if b.op == "repeat":
                visit(b.body, dep)
            elif dep is None or dep > 0:
                visit(b.body, None if dep is None else dep - 1)

    visit(diagram, depth)
    return out


def axis_colors(diagram: Diagram, depth: int | None = None, palette: tuple = PALETTE) -> dict[str, str]:
    """A colour for every axis a figure of `diagram` draws (see `drawn_diagrams`), deterministic.

    Axes drawn in one figure get different colours as long as the palette has enough; axes drawn
    next to each other get colours that look the most different. Closeness of two axes: tracks
    side by side in one bundle (4), in one bundle (3), at one box (2), in one diagram (1). Axes are
    coloured in the order they first appear, each taking a colour no neighbour has (else the one
    whose neighbours are the least close), unused before used, and among those the least like its
    neighbours' colours, weighted by closeness. Ties go to the palette's order.

    >>> import diagrammar
    >>> d = diagrammar.parse("axis a = 2, b = 3\\ncircuit F(x: [a, b]) -> [a, b]:\\n    return relu(x)\\n")["F"]
    >>> c = axis_colors(d); c["a"] != c["b"]
    True
    """
    palette = tuple(palette) or PALETTE
    order: dict[str, None] = {}
    close: dict[tuple[str, str], int] = {}

    def near(a: str, b: str, w: int):
        if a != b:
            k = (a, b) if a < b else (b, a)
            if close.get(k, 0) < w:
                close[k] = w

    for d in drawn_diagrams(diagram, depth):
        level: dict[str, None] = {}
        for p in d.inputs:  # inputs first: the figure is read from the left
            for w in p.wires:
                level.update(dict.fromkeys(d.wire(w).type.names))
        types = {w.name: w.type for w in d.wires}
        for w in d.wires:
            names = w.type.names
            level.update(dict.fromkeys(names))
            for i, a in enumerate(names):
                for j in range(i + 1, len(names)):
                    near(a, names[j], 4 if j == i + 1 else 3)
        for b in d.boxes:
            at = list(dict.fromkeys(a for w in b.inputs + b.outputs if w in types for a in types[w].names))
            for i, a in enumerate(at):
                for c in at[i + 1:]:
                    near(a, c, 2)
        names = list(level)
        for i, a in enumerate(names):
            for c in names[i + 1:]:
                near(a, c, 1)
        order.update(level)
    neighbours: dict[str, list[tuple[str, int]]] = {}
    for (a, b), w in close.items():
        neighbours.setdefault(a, []).append((b, w))
        neighbours.setdefault(b, []).append((a, w))
    dist = {(x, y): _color_distance(x, y) for x in palette for y in palette}
    out: dict[str, str] = {}
    used: dict[str, int] = {}
    for a in order:
        best, best_key = palette[0], None
        for i, c in enumerate(palette):
            same, like = 0, 0.0
            for b, w in neighbours.get(a, ()):
                cb = out.get(b)
                if cb == c:
                    same += w  # the very colour of a neighbour: avoided first
                elif cb is not None:
                    like += w / (1.0 + dist[(c, cb)] / 12.0)  # a similar one: the less alike the better
            key = (same, used.get(c, 0), round(like, 9), i)
            if best_key is None or key < best_key:
                best, best_key = c, key
        out[a] = best
        used[best] = used.get(best, 0) + 1
    return out


def _auto_name(box) -> bool:
    """True when the checker made the box's name up from its operation (linear_2, x:relu...)."""
    n = box.name
    if ":" in n or "@" in n or n == box.op:
        return True
    head, _, tail = n.rpartition("_")
    # the checker numbers a repeated name from 2 (linear, linear_2, ...): `linear_1` is the user's own name
    return head == box.op and tail.isdigit() and int(tail) >= 2


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_CONST_SYM = {"add": " + ", "sub": " − ", "mul": "·", "div": "/"}


def compact_number(v: float) -> str:
    """A number as a figure writes it: `0`, `2.5`, `10⁻⁶`, `3·10⁻⁵`, `−∞`.

    >>> [compact_number(v) for v in (0.0, 1.0, -2.5, 1e-06, 3e-05, 1e6, float("-inf"))]
    ['0', '1', '−2.5', '10⁻⁶', '3·10⁻⁵', '10⁶', '−∞']
    """
    if math.isnan(v):
        return "NaN"
    sign = "−" if v < 0 else ""
    v = abs(v)
    if v == float("inf"):
        return sign + "∞"
    text = f"{v:g}"
    if "e" in text:
        mant, exp = text.split("e")
        power = "10" + str(int(exp)).translate(_SUPERSCRIPT)
        text = power if mant == "1" else f"{mant}·{power}"
    return sign + text


def _const_text(tree) -> str:
    """A folded constant as the figure writes it: compact numbers, `√dk`, `−∞`.

    >>> _const_text(("fn", "sqrt", ("axis", "dk", None))), _const_text(("neg", ("num", float("inf"))))
    ('√dk', '−∞')
    """
    kind = tree[0]
    if kind == "num":
        return compact_number(tree[1])
    if kind == "axis":
        return tree[1]
    if kind == "neg":
        inner = _const_text(tree[1])
        return inner[1:] if inner.startswith("−") else "−" + inner
    if kind == "fn":
        inner = _const_text(tree[2])
        if tree[1] == "sqrt":
            return "√" + (inner if _atomic(tree[2]) else f"({inner})")
        return f"{tree[1]}({inner})"
    if kind in _CONST_SYM:
        a, b = (_const_text(t) if _atomic(t) or kind in ("add", "sub") else f"({_const_text(t)})"
                for t in tree[1:3])
        return a + _CONST_SYM[kind] + b
    return const_label(tree)


def _atomic(tree) -> bool:
    return tree[0] in ("num", "axis") or (tree[0] == "fn" and tree[1] == "sqrt")


SELECT_R = 6.0  # half the diagonal of the diamond that draws `where` (a selector)


def selector_width(text: str) -> float:
    """Width of a `where` junction: its diamond, and the constant branch written beside it.

    >>> selector_width(""), round(selector_width("else 0"), 2)
    (14.0, 40.87)
    """
    return 14.0 if not text else 2 * SELECT_R + 5.0 + text_width(text, SMALL)


def where_text(when_true: str | None, when_false: str | None) -> str:
    """What a `where` writes beside its selector for the branches given as constants (None: a wire).

    >>> where_text(None, "0"), where_text("1", None), where_text("0", "0")
    ('else 0', 'then 1', 'then 0 else 0')
    """
    parts = []
    if when_true is not None:
        parts.append(f"then {when_true}")
    if when_false is not None:
        parts.append(f"else {when_false}")
    return " ".join(parts)


def _sup_digits(n: int) -> str:
    return {1: "", 2: "²", 3: "³"}.get(n, f"^{n}")


def _box_text(box, op: str) -> tuple[str, str, bool]:
    """(main text, superscript, bold) written in a box."""
    g = GLYPHS.get(op)
    if g is None:
        return "", "", False
    if g.label is not None:
        return g.label(box)
    if g.kind in ("box", "reduce", "index", "soft", "source"):
        return g.text, "", False
    return "", "", False


def _bend(x0: float, y0: float, x1: float, y1: float, turn: float = 0.5) -> tuple:
    """An S-curve from (x0, y0) to (x1, y1) leaving and arriving horizontally, turning `turn` of the way across."""
    xm = (x0 + x1) / 2 if turn == 0.5 else x0 + (x1 - x0) * turn
    return (("M", x0, y0), ("C", xm, y0, xm, y1, x1, y1))


def _bend_width(dy: float) -> float:
    dy = abs(dy)
    if dy < 0.01:
        return 0.0
    return min(46.0, max(16.0, 10.0 + 0.45 * dy))


def _hline(x0: float, x1: float, y: float) -> tuple:
    return (("M", x0, y), ("L", x1, y))


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
    """The shape moved by (dx, dy), everything else (role, meaning) kept."""
    if isinstance(s, Path):
        cmds = []
        for c in s.cmds:
            if c[0] == "Z":
                cmds.append(c)
            else:
                vals = c[1:]
                cmds.append((c[0],) + tuple(v + (dx if j % 2 == 0 else dy) for j, v in enumerate(vals)))
        return replace(s, cmds=tuple(cmds))
    if isinstance(s, Circle):
        return replace(s, cx=s.cx + dx, cy=s.cy + dy)
    return replace(s, x=s.x + dx, y=s.y + dy)



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


def call_title(box) -> str:
    """A call as its block and its definition name it: the circuit and its size arguments (``MLP[hidden=256]``).

    The axes a generic circuit's name parameters are bound to (``DoubleConv[h=h2, ...]``) are left out:
    the wires at the block's ports already say them, and every binding of one generic circuit shares
    one definition, drawn for its first call.
    """
    args = ", ".join(f"{k}={v}" for k, v in box.body.axis_args if not isinstance(v, str))
    return box.attr("circuit", box.name) + (f"[{args}]" if args else "")
