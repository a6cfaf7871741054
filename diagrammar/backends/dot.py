"""Backend: the typed diagram as a graphviz dataflow view (DOT text; SVG/PNG through `dot`).

This is the plain engineering view next to the neural circuit diagram: one
node per box, one edge per wire use labelled with the wire's type, the
circuit's inputs and result as their own nodes. Sub-circuit calls, `repeat`
blocks and `scan` steps are single nodes (a `box3d` "prism", as Abbott draws a
collapsed block) until `depth` expands them into clusters.

Invariants the golden tests rely on:
- `to_dot` is a pure function of the IR: nodes, clusters and edges come out in
  the IR's own (topological) order, every attribute is written in a fixed
  order, and nothing depends on hashing, time or the installed graphviz.
- Node ids are the dotted box paths of `Diagram.weights()` (`repeat.x.ln`);
  box names never contain `.`, `>` or `<`, so ports are `path>name` (inputs)
  and `path<name` (result) and cannot collide with a box.
- Every edge is written once, at the top level, after all nodes: an edge
  written inside a cluster would pull its outer endpoint into that cluster.

Graphviz itself is needed only by `to_graphviz` and `render_dot`: they hand
the text to the `graphviz` Python package, whose `Source` runs the `dot`
program, shows itself in a notebook and writes any format `dot` knows.
`to_dot` imports neither.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import ops
from ..ir import Box, Diagram, Size, TupleType

if TYPE_CHECKING:
    import graphviz

__all__ = ["FORMATS", "GraphvizNotFound", "render_dot", "to_dot", "to_graphviz"]

FORMATS = ("svg", "png", "pdf")

INSTALL_HINT = (
    "laying out the DOT view needs graphviz's `dot` program, which is not on PATH. Install graphviz: "
    "`apt-get install graphviz` (Debian, Ubuntu), `brew install graphviz` (macOS), "
    "or see https://graphviz.org/download/. Without it, to_dot() still gives the DOT text, "
    "and render_svg() draws the circuit diagram in pure Python."
)
PACKAGE_HINT = (
    "laying out the DOT view needs the graphviz Python package, which is not installed: "
    "python3 -m pip install graphviz (to_dot() gives the DOT text without it)."
)

# ---------------------------------------------------------------- look

_GRAPH_ATTRS = (("rankdir", "LR"), ("newrank", "true"), ("fontname", "Helvetica"), ("fontsize", "12"),
                ("labelloc", "t"), ("nodesep", "0.25"), ("ranksep", "0.4"))
_NODE_ATTRS = (("shape", "box"), ("style", "rounded"), ("fontname", "Helvetica"), ("fontsize", "11"),
               ("height", "0.3"), ("margin", "0.08,0.04"), ("color", "#4a5568"))
_EDGE_ATTRS = (("fontname", "Helvetica"), ("fontsize", "9"), ("color", "#718096"),
               ("fontcolor", "#2d3748"), ("arrowsize", "0.6"))

_PORT = (("shape", "ellipse"), ("style", "filled"), ("fillcolor", "#e2e8f0"))
_INNER_PORT = (("shape", "ellipse"), ("style", "dashed"), ("fontsize", "10"))
_LEARNED = (("style", "rounded,filled"), ("fillcolor", "#fef3c7"))
_BLOCK = (("shape", "box3d"), ("style", "filled"), ("fillcolor", "#dbe7f6"))
_POINTWISE = (("shape", "circle"), ("width", "0.3"), ("margin", "0"))
_CONST = (("shape", "plaintext"),)
_CLUSTER = (("style", "rounded,filled"), ("color", "#94a3b8"), ("fillcolor", "#f1f5f9"))
_CARRY = (("style", "dashed"), ("color", "#2b6cb0"), ("fontcolor", "#2b6cb0"), ("constraint", "false"))



# ---------------------------------------------------------------- DOT text


def to_dot(diagram: Diagram, *, depth: int = 0) -> str:
    """The diagram as graphviz DOT text, deterministic byte for byte.

    Args:
        diagram: a checked diagram (`diagrammar.load(path)[name]`).
        depth: how many levels of sub-circuit calls, `repeat` blocks and
            `scan` steps to expand into clusters; deeper ones stay single
            nodes. A `repeat` whose body is one call (`repeat 4: x = Block(x)`)
            counts as one level, drawn as `Block ×4`.

    Returns:
        The DOT source of a left-to-right digraph.

    Example:
        >>> import diagrammar
        >>> program = diagrammar.parse('''
        ... axis d = 8
        ... circuit Scale(x: [d]) -> [d]:
        ...     param s: [d] = ones
        ...     return x * s
        ... ''')
        >>> text = to_dot(program["Scale"])
        >>> '"out" [label="*"' in text and 'label="[d]"' in text
        True
    """
    if depth < 0:
        raise ValueError(f"depth must be 0 or more, got {depth}")
    return _DotWriter().graph(diagram, depth)


def to_graphviz(diagram: Diagram, *, depth: int = 0) -> "graphviz.Source":
    """The DOT view as a `graphviz.Source`: it draws itself in a notebook, and ``.pipe(format=...)``,
    ``.render(...)`` or ``.view()`` lay it out with `dot` in any format graphviz knows.

    Args:
        diagram: the diagram to draw.
        depth: as for `to_dot`.

    Raises:
        GraphvizNotFound: the graphviz Python package is not installed.
    """
    try:
        import graphviz
    except ImportError:
        raise GraphvizNotFound(PACKAGE_HINT) from None
    return graphviz.Source(to_dot(diagram, depth=depth), engine="dot")


def render_dot(diagram: Diagram, fmt: str = "svg", depth: int = 0) -> bytes:
    """Lay the DOT view out with graphviz's `dot` and return the image bytes.

    Args:
        diagram: the diagram to draw.
        fmt: "svg", "png" or "pdf".
        depth: as for `to_dot`.

    Returns:
        The file contents `dot -T<fmt>` writes.

    Raises:
        GraphvizNotFound: `dot` or the graphviz package is not installed (the message says how to install it).
        ValueError: an unknown format.
        RuntimeError: `dot` failed (its message is included).
    """
    if fmt not in FORMATS:
        raise ValueError(f"render_dot makes {', '.join(FORMATS)}; got {fmt!r}")
    source = to_graphviz(diagram, depth=depth)
    import graphviz

    try:
        return source.pipe(format=fmt, quiet=True)
    except graphviz.ExecutableNotFound:
        raise GraphvizNotFound(INSTALL_HINT) from None
    except graphviz.CalledProcessError as e:
        detail = (e.stderr or b"").decode("utf-8", "replace").strip()
        raise RuntimeError(f"graphviz's dot failed (exit status {e.returncode}): {detail}") from None


class GraphvizNotFound(RuntimeError):
    """The `dot` program of graphviz, or the graphviz Python package, is not installed."""


# ---------------------------------------------------------------- the writer


class _DotWriter:
    """Accumulates node and cluster lines, and the edges that are written last."""

    def __init__(self):
        self.lines: list[str] = []
        self.edges: list[str] = []
        self.axes: dict[tuple[str, str], None] = {}  # (name, size) of every axis shown, in order

    def graph(self, d: Diagram, depth: int) -> str:
        self._diagram(d, "", depth, top=True, indent="  ")
        ins = ", ".join(f"{p.name}: {p.type}" for p in d.inputs)
        args = ", ".join(f"{k} = {v}" for k, v in d.axis_args)
        title = f"<B>{_esc(d.name)}</B>{_esc((f'[{args}]' if args else '') + f'({ins}) -> {d.output.type}')}"
        # an axis bound only at compile time has itself as its size: just its name
        legend = ", ".join(n if s == n else f"{n} = {s}" for n, s in self.axes)
        if legend:
            title += f'<BR/><FONT POINT-SIZE="10">{_esc(legend)}</FONT>'
        out = [f"digraph {_q(d.name)} {{"]
        out.append("  graph [" + _attrs(_GRAPH_ATTRS + (("label", f"<{title}>"),)) + "];")
        out.append("  node [" + _attrs(_NODE_ATTRS) + "];")
        out.append("  edge [" + _attrs(_EDGE_ATTRS) + "];")
        out.extend(self.lines)
        out.extend("  " + e for e in self.edges)
        out.append("}")
        return "\n".join(out) + "\n"

    def _node(self, indent: str, node_id: str, attrs) -> None:
        self.lines.append(f"{indent}{_q(node_id)} [{_attrs(attrs)}];")

    def _edge(self, src: str, dst: str, label: str, extra=()) -> None:
        self.edges.append(f"{_q(src)} -> {_q(dst)} [{_attrs((('label', _q(label)),) + tuple(extra))}];")

    def _diagram(self, d: Diagram, prefix: str, depth: int, *, top: bool, indent: str):
        """Write one diagram's nodes; returns its (input, result) nodes, one per wire.

        `prefix` is the dotted path of the enclosing boxes ("" at the top).
        """
        types = {w.name: w.type for w in d.wires}
        for w in d.wires:
            for a in w.type.axes:
                self.axes.setdefault((a.name, str(a.size)), None)
        producer: dict[str, str] = {}
        in_nodes: list[str] = []
        for port in d.inputs:
            for node_id, label, w in _port_nodes(f"{prefix}>", port):
                self._port(indent, node_id, label, types[w], top)
                producer[w] = node_id
                in_nodes.append(node_id)
        for b in d.boxes:
            slots_in, slots_out = self._box(b, prefix, depth, indent)
            for w, target in zip(b.inputs, slots_in):
                self._edge(producer[w], target, str(types[w]))
            for w, source in zip(b.outputs, slots_out):
                producer[w] = source
        out_nodes: list[str] = []
        for node_id, label, w in _port_nodes(f"{prefix}<", d.output):
            self._port(indent, node_id, label, types[w], top)
            self._edge(producer[w], node_id, str(types[w]))
            out_nodes.append(node_id)
        return in_nodes, out_nodes

    def _port(self, indent: str, node_id: str, label: str, wire_type, top: bool) -> None:
        if top:  # the circuit's own inputs and result say their type; inner ports leave it to the edges
            text = f"<<B>{_esc(label)}</B><BR/>{_esc(str(wire_type))}>"
            self._node(indent, node_id, (("label", text),) + _PORT)
        else:
            self._node(indent, node_id, (("label", _q(label)),) + _INNER_PORT)

    def _box(self, b: Box, prefix: str, depth: int, indent: str):
        """Write a box as a node or an expanded cluster; returns its (input, output) endpoints."""
        node_id = prefix + b.name
        label = LABELS.get(b.op, _PLAIN)
        if label.shape == "block" and b.body is not None:
            block = _block_view(b, prefix)
            if depth > 0:
                return self._cluster(b, block, depth, indent)
            self._node(indent, node_id, (("label", _block_label(b, block)),) + _BLOCK
                       + (("tooltip", _q(node_id)),))
            return [node_id] * len(b.inputs), [node_id] * len(b.outputs)
        if label.shape == "symbol":
            attrs = (("label", _q(label.text)),) + _POINTWISE
        elif label.shape == "const":
            attrs = (("label", _q(str(b.attr("label", "const")))),) + _CONST
        else:
            attrs = (("label", _box_label(b, prefix)),) + (_LEARNED if b.weights else ())
        self._node(indent, node_id, attrs + (("tooltip", _q(node_id)),))
        return [node_id] * len(b.inputs), [node_id] * len(b.outputs)

    def _cluster(self, b: Box, block: _Block, depth: int, indent: str):
        cluster_id = "cluster_" + block.prefix.rstrip(".")
        self.lines.append(f"{indent}subgraph {_q(cluster_id)} {{")
        inner = indent + "  "
        self.lines.append(f"{inner}graph [{_attrs((('label', _block_label(b, block)),) + _CLUSTER)}];")
        in_nodes, out_nodes = self._diagram(block.body, block.prefix, depth - 1, top=False, indent=inner)
        self.lines.append(f"{indent}}}")
        # the state a scan step or a repeated block hands to its next copy
        body_types = {w.name: w.type for w in block.body.wires}
        for i in range(block.carried):
            self._edge(out_nodes[i], in_nodes[i], str(body_types[block.body.output.wires[i]]), _CARRY)
        # the body's result wires are the box's outputs, slot for slot (a scan's ys gain its axis);
        # a dispatch's index, its last input, points at the expert's first input
        return in_nodes + in_nodes[:1] * (len(b.inputs) - len(in_nodes)), out_nodes


@dataclass(frozen=True)
class _Block:
    """What a call, repeat or scan box shows: the body drawn and how to name it."""

    body: Diagram
    prefix: str  # dotted path of the body's boxes
    title: str
    carried: int  # leading inputs fed back from the result (scan state, repeat carry)
    batch: tuple  # axes the call is broadcast over


def _block_view(b: Box, prefix: str) -> _Block:
    path = f"{prefix}{b.name}."
    batch = tuple(b.attr("batch", ()) or ())
    if b.op == "call":
        return _Block(b.body, path, _circuit_title(b), 0, batch)
    if b.op == "scan":
        title = f"scan {_circuit_title(b)} along {b.attr('along')}"
        return _Block(b.body, path, title, int(b.attr("n_state", 0)), batch)
    if b.op == "dispatch":
        return _Block(b.body, path, f"dispatch {_circuit_title(b)} among {b.attr('along')}", 0, batch)
    count = f" \u00d7{b.attr('count')}"
    carried = int(b.attr("carried", 0))
    body = b.body
    # `repeat N: x = Block(x)` is one level, not two: draw it as `Block ×N`
    if len(body.boxes) == 1 and body.boxes[0].op == "call" and body.boxes[0].body is not None:
        call = body.boxes[0]
        flat_in = tuple(w for p in body.inputs for w in p.wires)
        if call.inputs == flat_in and call.outputs == body.output.wires:
            return _Block(call.body, f"{path}{call.name}.", _circuit_title(call) + count, carried,
                          tuple(call.attr("batch", ()) or ()))
    return _Block(body, path, "repeat" + count, carried, batch)


def _circuit_title(b: Box) -> str:
    """`MLP[hidden = 256]`: the called circuit with the axis arguments it was instantiated with."""
    args = ", ".join(f"{k} = {v}" for k, v in b.body.axis_args)
    return str(b.attr("circuit", b.body.name)) + (f"[{args}]" if args else "")


def _block_label(b: Box, block: _Block) -> str:
    rows = [f"<B>{_esc(block.title)}</B>"]
    small = []
    if block.batch:
        small.append("batched over " + ", ".join(block.batch))
    n_weights = sum(1 for _ in b.body.weights())
    if n_weights:
        params = _block_params(b)
        small.append(f"{n_weights} weight{'s' if n_weights != 1 else ''}"
                     + {"repeat": " per copy", "dispatch": " per expert"}.get(b.op, "")
                     + f", {params} parameters")
    rows.extend(f'<FONT POINT-SIZE="9">{_esc(s)}</FONT>' for s in small)
    return "<" + "<BR/>".join(rows) + ">"


def _block_params(b: Box) -> str:
    total = b.body.parameter_count()
    if b.op in ("repeat", "dispatch"):
        count = b.attr("count")
        total = total * (count if isinstance(count, Size) else Size.of(int(count)))
    return f"{total.value:,}" if total.is_const else str(total)


def _box_label(b: Box, prefix: str) -> str:
    head = f"<B>{_esc(b.op)}</B>" if b.weights else _esc(b.op)
    summary = _summary(b)
    if summary:
        head += " " + _esc(summary)
    rows = [head]
    for w in b.weights:
        name = prefix + b.name + (f".{w.name}" if w.name else "")
        extra = f" = {w.init}" if b.op == "param" else ""
        rows.append(f'<FONT POINT-SIZE="9">{_esc(f"{name} {w.type}{extra}")}</FONT>')
    return "<" + "<BR/>".join(rows) + ">"


def _summary(b: Box) -> str:
    """The arguments worth reading on a box, written as in the source language."""
    text = LABELS.get(b.op, _PLAIN).text
    return text(b) if callable(text) else ""


# ---------------------------------------------------------------- what each operation's node says


@dataclass(frozen=True)
class _Label:
    """How one operation's node looks: its shape, and its symbol or the summary after its name."""

    shape: str  # symbol (a small circle), const (plain text), block (call, repeat, scan) or box
    text: Callable[[Box], str] | str = ""  # a symbol's text, or a box's summary of its arguments


def _over(b: Box) -> str:
    over = b.attr("over")
    return "over " + (", ".join(over) if over else "all")


def _reshape(b: Box) -> str:
    return f"{_axes(b.attr('src'))} -> {_axes(b.attr('dst'))}"


def _concat(b: Box) -> str:
    along = tuple(dict.fromkeys(b.attr("along", ())))  # one source axis per operand, usually the same
    return f"along {_axes(along)} -> {b.attr('dst')}"


def _window(b: Box) -> str:
    op, a = b.op, b.attr
    over, out_over = tuple(a("over", ())), tuple(a("out_over", ()))
    if op == "pad":
        return f"over {_axes(over)} -> {_axes(out_over)} {_pad_text(a('padding'))}" + (
            f" value {a('value'):g}" if a("value") else "")
    conv_like = op in ("conv", "conv_transpose")
    size = tuple(a("kernel") if conv_like else a("window") or ())
    text = ("" if conv_like else f"{a('op')} ") + "x".join(str(k) for k in size)
    text += f" over {_axes(over)}" + (f" -> {_axes(out_over)}" if out_over and out_over != over else "")
    stride = a("stride")
    stride = tuple(stride) if isinstance(stride, (tuple, list)) else (stride,) * len(size)
    default = size if op == "pool" else (1,) * len(size)
    if stride != default and None not in stride:
        text += " stride " + "x".join(str(k) for k in stride)
    padding = a("padding")
    if a("causal"):
        text += " causal"
    elif isinstance(padding, tuple) and any(lo or hi for lo, hi in padding):
        text += " " + _pad_text(padding)
    if a("dilation"):
        text += " dilation " + "x".join(str(k) for k in a("dilation"))
    if a("groups"):
        text += f" groups {a('groups')}"
    if op == "conv_transpose" and any(a("output_padding")):
        text += " output_padding " + "x".join(str(k) for k in a("output_padding"))
    if conv_like:
        text += f", {a('cin')} -> {a('cout')}"
    return text


def _pad_text(pairs) -> str:
    """`pad 1` when every pair is (1, 1), else the pairs."""
    if len(set(pairs)) == 1 and pairs[0][0] == pairs[0][1]:
        return f"pad {pairs[0][0]}"
    return "pad " + ", ".join(f"({lo}, {hi})" for lo, hi in pairs)


_PLAIN = _Label("box")
_OVER_LABEL = _Label("box", _over)

# The node of every operation, by name (ops.py is the catalogue; tests/test_catalogue.py checks this covers it).
LABELS: dict[str, _Label] = {
    **{op: _Label("symbol", sym) for op, sym in (
        ("add", "+"), ("sub", "-"), ("mul", "*"), ("div", "/"), ("neg", "-x"),
        ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="), ("eq", "=="), ("floordiv", "//"), ("mod", "%"))},
    **{op: _PLAIN for op in ("relu", "abs", "square", "silu", "tanh", "sigmoid", "softplus", "exp", "log",
                             "sqrt", "maximum", "minimum", "where", "param", "erf", "sin", "cos",
                             "int", "float", "bool")},
    "gelu": _Label("box", lambda b: "" if b.attr("approximate", True) else "exact"),
    "slice": _Label("box", lambda b: f"{b.attr('axis')} -> {b.attr('dst')} from {b.attr('label')}"),
    "full": _Label("box", lambda b: f"[{', '.join(b.attr('axes'))}] = {b.attr('label')}"),
    **{op: _OVER_LABEL for op in ("sum", "mean", "max", "min", "logsumexp", "argmax", "softmax", "log_softmax",
                                  "layernorm", "rmsnorm", "dot")},
    "const": _Label("const"),
    "call": _Label("block"), "repeat": _Label("block"), "scan": _Label("block"), "dispatch": _Label("block"),
    "linear": _Label("box", lambda b: f"{_axes(b.attr('in_axes'))} -> {_axes(b.attr('out_axes'))}"),
    "embed": _Label("box", lambda b: f"{b.attr('vocab')} -> {_axes(b.attr('out_axes'))}"),
    "einsum": _Label("box", lambda b: "-> [" + ", ".join(b.attr("result", ())) + "]"),
    "causal": _Label("box", lambda b: f"{b.attr('q')}, {b.attr('k')}"),
    "onehot": _Label("box", lambda b: str(b.attr("axis"))),
    "arange": _Label("box", lambda b: str(b.attr("axis"))),
    "gather": _Label("box", lambda b: f"along {b.attr('along')}"),
    "scatter_add": _Label("box", lambda b: f"along {_axes(b.attr('along'))} -> {b.attr('into')}"),
    "topk": _Label("box", lambda b: f"over {b.attr('over')} -> {b.attr('k')}"),
    "stack": _Label("box", lambda b: f"along {b.attr('along')}"),
    "take": _Label("box", lambda b: f"{b.attr('axis')}[{b.attr('index')}]"),
    "rename": _Label("box", _reshape), "merge": _Label("box", _reshape), "split": _Label("box", _reshape),
    "concat": _Label("box", _concat),
    "dropout": _Label("box", lambda b: f"{b.attr('rate'):g}"),
    "conv": _Label("box", _window), "pool": _Label("box", _window),
    "conv_transpose": _Label("box", _window), "pad": _Label("box", _window),
    "batchnorm": _Label("box", lambda b: "over " + ", ".join(("batch",) + tuple(b.attr("over")))),
}

# Operations that never reach this backend (see tests/test_catalogue.py).
NOT_SUPPORTED: dict[str, str] = {}

# a registered operation is a box with its name
ops.bind_table(LABELS, lambda op: _PLAIN)


# ---------------------------------------------------------------- small helpers


def _port_nodes(prefix: str, port):
    """(node id, label, wire) for a port: one node, or one per item of a tuple."""
    if len(port.wires) == 1 and not isinstance(port.type, TupleType):
        return [(prefix + port.name, port.name, port.wires[0])]
    return [(f"{prefix}{port.name}.{i}", f"{port.name}.{i}", w) for i, w in enumerate(port.wires)]


def _axes(names) -> str:
    if isinstance(names, str):
        return names
    names = tuple(names or ())
    return names[0] if len(names) == 1 else "(" + ", ".join(names) + ")"


def _q(text: str) -> str:
    """A DOT quoted string."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _esc(text: str) -> str:
    """Text for a graphviz HTML-like label."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _attrs(pairs) -> str:
    return ", ".join(f"{k}={v if v.startswith(('<', chr(34))) else _q(v) if _needs_quotes(v) else v}"
                     for k, v in pairs)


def _needs_quotes(v: str) -> bool:
    return not v.replace(".", "").replace("_", "").isalnum()
