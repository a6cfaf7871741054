"""Backends, svg: the records the lane sweep keeps (lanes, bands and their segments, reads, nodes)."""
from __future__ import annotations

from typing import Any

from ...ir import TensorType
from .geometry import SCALAR, Layout

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
                 "text", "annotation", "x0", "in_x", "out_x", "const_text", "span", "unused")

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
        self.unused: set[int] = set()  # outputs of a collapsed block that nothing reads: a port, no wire


# ---------------------------------------------------------------- the builder


class _Ctx:
    """What every nesting level shares: colours, annotations, and laid-out bodies."""

    def __init__(self, colors: dict[str, str], annotations: dict[str, str], sizes: dict[str, str] | None = None):
        self.colors = colors
        self.annotations = annotations
        self.sizes = sizes or {}  # axis -> its size, written on input wires ("x = 28") by the paper style
        self.mesh_axes: dict[str, str] = {}  # axis -> the mesh axis it is split over ("heads / model")
        self.frames: dict[tuple, Layout] = {}
        self.keep: list = []  # keeps memoised bodies alive so their ids stay unique

    def color(self, axis: str) -> str:
        return self.colors.get(axis, SCALAR) if axis else SCALAR

    def input_label(self, axis: str) -> str:
        """An input wire's axis label: its name, and its size where the style writes sizes."""
        size = self.sizes.get(axis)
        return f"{axis} = {size}" if size else axis


def _axes_of(t: TensorType) -> list[str]:
    return list(t.names) if t.names else [""]
