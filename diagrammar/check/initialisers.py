"""Front end, checker: initialiser expressions (`param A_log: [di, ds] = log(arange(ds) + 1)`).

An initialiser that is not one of v0's (`zeros ones normal uniform lecun
glorot`, which keep their meaning as the whole initialiser) is a constant
expression: numbers, axis sizes, `arange`, `full`, casts, element-wise
operations and functions. It is checked into a diagram of its own, with no
inputs, that the backend runs once when the module is built (in float32)
and broadcasts to the param's axes. It may not read the circuit's inputs, its
values or params, or draw at random.
"""
from __future__ import annotations

from .. import ops
from .. import syntax as S
from ..errors import InvalidArgument, ShapeMismatch, Span
from ..ir import Init, Port, TensorType
from .consts import folded
from .circuit import _CircuitChecker
from .hints import type_table
from .statements import INITIALISERS
from .values import C, _Builder, _has_free

_V0 = "initialisers: zeros, ones, normal(std), uniform(lo, hi), lecun, glorot, or a constant expression"
# what an initialiser expression may call, besides element-wise operations and functions
_SOURCES = frozenset({"arange", "full", "size"})


def init_expression(ck: _CircuitChecker, node, ptype: TensorType) -> Init:
    """The `Init` of `param name: ptype = node` for an expression that is not a v0 initialiser."""
    if isinstance(node, S.Name) and _unknown_word(ck, node.id) or \
            isinstance(node, S.Call) and node.func not in ops.CATALOGUE and node.func not in ck.checker.circuits \
            and node.func not in INITIALISERS:
        ck.err(InvalidArgument, "unknown initialiser", node.span, hint=_V0)  # as in v0
    inner = _InitChecker.inside(ck)
    v = inner.expr(node)
    t = inner.materialise(v, node.span) if isinstance(v, C) else inner.tensor(v, node.span, "the initialiser")
    extra = [a.name for a in t.type.axes if ptype.axis(a.name) is None]
    if extra:
        ck.err(ShapeMismatch, f"the initialiser gives {t.type}, but the param is {ptype}: "
               f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not among its axes", node.span,
               table=type_table(ptype, TensorType(t.type.axes), "param", "initialiser"),
               hint="an initialiser is broadcast to the param's axes; it cannot have others")
    for box in inner.b.boxes:  # it runs when the module is built: a constant without a value is found now
        tree = box.attrs.get("value")
        if box.op == "const" and not _has_free(tree):
            folded(tree, box.span)  # an InvalidArgument where it has none
    items = [t]
    inner.finish_statement(["init"], items)
    (t,) = items
    body = inner.b.freeze((), Port("init", t.type, (t.wire,)), (), node.span)
    return Init("expr", expr=body, text=_source(ck, node.span))


def _unknown_word(ck, name: str) -> bool:
    return (ck.real(name) not in ck.b.axes and name != "inf" and name not in INITIALISERS
            and _reads(ck, name) is None and name not in ck.checker.circuits)


def _reads(ck, name: str) -> str | None:
    """What the name is in the circuit body, if it is a value there ("the input x", ...), else None."""
    b = ck.b
    while b is not None:
        if name in b.values:
            if any(p.name == name for p in ck.node.params):
                return f"the input {name}"
            if name in _param_names(ck.node.body):
                return f"the param {name}"
            return f"the value {name}"
        b = b.parent
    return None


def _param_names(stmts) -> set[str]:
    out = set()
    for st in stmts:
        if isinstance(st, S.ParamStmt):
            out.add(st.name)
        elif isinstance(st, S.Repeat):
            out |= _param_names(st.body)
    return out


def _source(ck, span: Span) -> str:
    """The initialiser as written (for figures and `str(Init)`)."""
    lines = (ck.checker.sources.get(span.file) or "").splitlines()
    if not span.line or span.end_line > len(lines):
        return "expression"
    if span.line == span.end_line:
        return lines[span.line - 1][span.column - 1:span.end_column - 1]
    parts = [lines[span.line - 1][span.column - 1:]] + lines[span.line:span.end_line - 1] + \
        [lines[span.end_line - 1][:span.end_column - 1]]
    return " ".join(p.strip() for p in parts)


class _InitChecker(_CircuitChecker):
    """Checks an initialiser expression in a scope of its own: axis sizes, no values."""

    @classmethod
    def inside(cls, ck: _CircuitChecker) -> _InitChecker:
        inner = cls.__new__(cls)
        inner.__dict__.update(ck.__dict__)  # the circuit's checker state (axis bindings, ...), with a scope of its own
        inner.axis_args = {}
        inner.b = _Builder("init", ck.b.axes)
        inner.stmt_boxes = []
        inner.outer = ck
        return inner

    def name(self, node: S.Name):
        what = _reads(self.outer, node.id)
        if what is not None:
            self.err(InvalidArgument, f"an initialiser cannot read {what}: it is computed once, when the "
                     "module is built, from numbers and sizes alone", node.span,
                     hint="set the weight from Python after compiling, or compute the value in the body")
        if node.id in INITIALISERS:
            self.err(InvalidArgument, f"{node.id} is an initialiser only on its own (param p: [d] = {node.id})",
                     node.span, hint="inside an expression, write the number or full([axes], value)")
        return super().name(node)

    def call(self, node: S.Call):
        f = node.func
        if f in INITIALISERS and f not in ops.CATALOGUE:
            self.err(InvalidArgument, f"{f}(...) draws at random; a random initialiser is only ever the whole "
                     "initialiser, never part of an expression", node.span,
                     hint="set such a weight from Python after compiling")
        if f in self.checker.circuits:
            self.err(InvalidArgument, f"an initialiser cannot call the circuit {f}", node.func_span,
                     hint="initialisers are numbers, sizes, arange, full, casts and element-wise functions")
        op = ops.CATALOGUE.get(f)
        if op is not None and op.callable and op.family not in ("unary", "binary") and f not in _SOURCES:
            self.err(InvalidArgument, f"{f} cannot appear in an initialiser", node.func_span,
                     hint="initialisers are numbers, sizes, arange, full, casts and element-wise functions")
        return super().call(node)
