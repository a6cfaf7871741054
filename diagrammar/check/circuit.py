"""Front end, checker: one circuit body, its expressions and the calls it makes.

`_CircuitChecker` walks a body once per set of axis arguments. Its helpers
read operands, axis names and constants for the typing rules; a call finds
its rule by the operation's name in `rules.TYPING` (see ops.py for the
catalogue). Statements (assignments, param, return, repeat) are in
statements.py.
"""
from __future__ import annotations

import math
from typing import Any

from .. import ops
from .. import syntax as S
from ..bounds import over_budget
from ..errors import (
    DuplicateDefinition,
    InvalidArgument,
    ShapeMismatch,
    SizeConflict,
    SizeTooLarge,
    Span,
    UnknownName,
    WrongArity,
)
from ..ir import Axis, Size, TensorType, TupleType, const_label
from ..limits import MAX_CALL_DEPTH, MAX_INDEX, MAX_LOOP_DEPTH
from ..ops import REQUIRED
from .consts import check_float, check_float32, check_int32, folded
from .hints import _did_you_mean, type_table
from .rules import TYPING
from .sizes import eval_size
from .statements import INITIALISERS, _Statements
from .values import (
    C,
    T,
    Tup,
    _BoxB,
    _Builder,
    _has_free,
    _is_integral,
    _is_whole,
    _Poison,
    _Skip,
)


_CALLS = ("call", "scan", "dispatch")  # boxes whose body is another circuit
_LOOPS = ("repeat", "scan", "dispatch")  # boxes whose body runs as a loop (lax.scan, vmap)


class _CircuitChecker(_Statements):
    """Checks one circuit body with its axis parameters bound."""

    def __init__(self, checker, src, axis_args: dict[str, Size], bound: dict[str, Axis] | None = None):
        self.checker = checker  # the program's Checker: files, circuits, the error sink
        self.src = src
        self.node = src.node
        # a generic circuit's name parameter stands for the axis its call bound it to (substitution):
        # where the text says `q`, the diagram has the axis `seq`
        self.renames = {p: a.name for p, a in (bound or {}).items()}
        self.requires: list = []  # `require`s of the body that wait for free sizes (ir.Requirement)
        axes = dict(checker.global_axes)
        axes.update(axis_args)
        if bound:
            axes.update({a.name: a.size for a in bound.values()})
            axis_args = {ap.name: self.renames.get(ap.name) or axis_args[ap.name] for ap in src.node.axis_params}
        self.axis_args = axis_args
        self.b = _Builder(src.node.name, axes)
        self.stmt_boxes: list[_BoxB] = []

    # ---------------------------------------------------- helpers

    def err(self, cls, msg, span, **kw):
        raise cls(msg, span, **kw)

    def real(self, name: str) -> str:
        """The axis a name written in the text stands for: a name parameter's bound axis, else the name."""
        return self.renames.get(name, name)

    def axis_size(self, name: str, span: Span, *types: TensorType) -> Size:
        """The size of an axis of the diagram (a name `axis_names` gave, already substituted)."""
        for t in types:
            if isinstance(t, TensorType):
                a = t.axis(name)
                if a is not None:
                    return a.size
        if name in self.b.axes:
            return self.b.axes[name]
        self.err(UnknownName, f"unknown axis {name!r}", span,
                 hint=_did_you_mean(name, list(self.b.axes)) or f"declare it: axis {name} = ...")

    def axis(self, name: str, span: Span, *types) -> Axis:
        size = self.axis_size(name, span, *types)
        if size.is_const and size.value > MAX_INDEX:
            self.err(SizeTooLarge, f"axis {name} has size {size.value:,}, over the limit of {MAX_INDEX:,} "
                     "(limits.MAX_INDEX)", span, hint="positions along an axis are int32 indices")
        return Axis(name, size)

    def resolve_type(self, node):
        if isinstance(node, S.TupleTypeNode):
            return TupleType(tuple(self.resolve_type(t) for t in node.items))
        seen = set()
        axes = []
        for name, span in node.axes:
            name = self.real(name)
            if name in seen:
                self.err(ShapeMismatch, f"axis {name} appears twice in one type", span,
                         hint="a tensor has each named axis once; declare a second axis (axis key = seq)")
            seen.add(name)
            axes.append(self.axis(name, span))
        return TensorType(tuple(axes), node.dtype)

    def add_box(self, op, inputs, out_types, span, attrs=None, weights=(), roles=None, body=None, label=None):
        if body is not None:
            self.check_nesting(op, body, span)
        outs = [self.b.new_wire(t) for t in out_types]
        box = _BoxB(op, list(inputs), outs, dict(attrs or {}), list(weights), dict(roles or {}), span, body,
                    label_hint=label)
        for w in weights:
            n = w.type.numel()
            what = n.is_const and over_budget(n.value, 1, self.checker.max_weight_elements)
            if what:
                self.err(SizeTooLarge, f"{op} weight {w.name or 'param'} {w.type} has {what}, over the budget of "
                         f"{self.checker.max_weight_elements:,}", span,
                         hint="check the sizes, or raise max_weight_elements")
        self.b.boxes.append(box)
        self.stmt_boxes.append(box)
        return [T(o, t) for o, t in zip(outs, out_types)]

    def check_nesting(self, op: str, body, span: Span):
        """Refuse a box that nests its body too deep: a chain of calls over limits.MAX_CALL_DEPTH circuits,
        or loops over limits.MAX_LOOP_DEPTH (each backend walks nested diagrams recursively)."""
        calls, loops = self.checker.nested(body)
        calls, loops = calls + (op in _CALLS), loops + (op in _LOOPS)
        if calls + 1 > MAX_CALL_DEPTH:
            self.err(InvalidArgument, f"this {op} makes a chain of {calls + 1} circuits, each calling the next; the "
                     f"limit is {MAX_CALL_DEPTH} (limits.MAX_CALL_DEPTH)", span,
                     hint="call the parts one after another from one circuit")
        if loops > MAX_LOOP_DEPTH:
            self.err(InvalidArgument, f"this {op} nests {loops} loops (repeat, scan, dispatch) in one another; the "
                     f"limit is {MAX_LOOP_DEPTH} (limits.MAX_LOOP_DEPTH)", span,
                     hint="run the loops one after another, or merge their counts")

    def budget_of_copies(self, body, count: Size, span: Span, what: str):
        """Refuse, as compile would, a weight of `body` whose `count` copies (a repeat's, or a dispatch's
        experts) go over the per-weight budget, when the sizes are known (bounds.over_budget)."""
        budget = self.checker.max_weight_elements
        for dotted, w, copies in body.weights():
            per, inner, n = w.type.numel(), copies, copies * count
            if not (per.is_const and n.is_const) or over_budget(per.value, inner.value, budget):
                continue  # unknown until compile time, or already refused where it is made
            found = over_budget(per.value, n.value, budget)
            if found:
                self.err(SizeTooLarge, f"{what} makes {n.value:,} copies of its weight {dotted} {w.type}: {found}, "
                         f"over the budget of {budget:,}", span, hint="check the sizes and the count, or raise "
                         "max_weight_elements")

    def tensor(self, v, span, what="this operand") -> T:
        if isinstance(v, _Poison):
            raise _Skip()
        if isinstance(v, C):
            return self.materialise(v, span)
        if isinstance(v, Tup):
            self.err(ShapeMismatch, f"{what} is a tuple of {len(v.items)} bundles; a single bundle is needed",
                     span, hint="unpack it first: a, b = ...")
        return v

    def materialise(self, c: C, span, dtype: str = "float") -> T:
        if dtype == "int":
            check_int32(self, c.tree, span)
        else:
            check_float(self, c.tree, span)
        return self.add_box("const", [], [TensorType((), dtype)], span,
                            attrs={"value": c.tree, "label": const_label(c.tree)})[0]

    def constant_for(self, c: C, want, span) -> T:
        """A constant where a value of type `want` is expected: int where `want` is int (the
        constant must then be whole: `3`, `size(a) // 2`, not `2.5`), else float as in v0."""
        if isinstance(want, TensorType) and want.dtype == "int":
            if not _is_whole(c.tree):
                self.err(ShapeMismatch, f"{const_label(c.tree)} is a float constant, but an int is wanted here",
                         span, hint="a whole number is written without '.' (3, not 3.0), or made with int(x)")
            return self.materialise(c, span, "int")
        return self.materialise(c, span)

    def operands(self, values: list, spans: list, what: str = "this operand") -> list[T]:
        """Tensors for an element-wise operation. A whole-number constant next to
        int operands stays int (`arange(n) - 1` is int); other constants are float."""
        tensors = [v for v in values if isinstance(v, T)]
        int_context = bool(tensors) and all(t.type.dtype == "int" for t in tensors)
        out = []
        for v, sp in zip(values, spans):
            if isinstance(v, C):
                dtype = "int" if int_context and (_is_integral(v.tree) or _is_whole(v.tree)) else "float"
                out.append(self.materialise(v, sp, dtype))
            else:
                out.append(self.tensor(v, sp, what))
        return out

    def float_tensor(self, v, span, what="the input") -> T:
        t = self.tensor(v, span, what)
        if t.type.dtype != "float":
            self.err(ShapeMismatch, f"{what} is {t.type}, but this operation needs a float bundle", span,
                     hint="int indices become floats through onehot(i, axis) or embed(i, vocab -> d)")
        return t

    def axis_names(self, node, what="axes") -> list[tuple[str, Span]]:
        if isinstance(node, S.Name):
            return [(self.real(node.id), node.span)]
        if isinstance(node, (S.TupleExpr, S.AxisList)):
            out = []
            for it in node.items:
                if not isinstance(it, S.Name):
                    self.err(InvalidArgument, f"expected an axis name in {what}", it.span)
                out.append((self.real(it.id), it.span))
            return out
        self.err(InvalidArgument, f"expected an axis name or a tuple of axis names for {what}",
                 getattr(node, "span", None))

    def mapping(self, node, what) -> tuple[list, list]:
        if not isinstance(node, S.Mapping):
            self.err(InvalidArgument, f"{what} needs a mapping `from -> to`", node.span,
                     hint="for example: d -> hidden, or (heads, dk) -> d")
        return self.axis_names(node.src, what), self.axis_names(node.dst, what)

    def const_number(self, node, what, finite: bool = True) -> float:
        """The value of a constant argument; an InvalidArgument where it has none, and (unless
        `finite` is False) where it is an infinity."""
        v = self.expr(node)
        if not isinstance(v, C):
            self.err(InvalidArgument, f"{what} must be a number known when checking", node.span)
        if _has_free(v.tree):
            self.err(InvalidArgument, f"{what} must not depend on a size bound at compile time", node.span)
        x = folded(v.tree, node.span, finite=finite, what=what)
        check_float32(x, v.tree, node.span)
        return x

    def int_tuple(self, node, what) -> tuple[int, ...]:
        items = node.items if isinstance(node, S.TupleExpr) else (node,)
        out = []
        for it in items:
            x = self.const_number(it, what)
            if x != int(x) or x < 1:
                self.err(InvalidArgument, f"{what} must be positive integers", it.span)
            if x > MAX_INDEX:
                self.err(InvalidArgument, f"{what}: {int(x):,} is over the limit of {MAX_INDEX:,} (limits.MAX_INDEX)",
                         it.span, hint="sizes, counts and indices are int32")
            out.append(int(x))
        return tuple(out)

    def word(self, node, what, choices) -> str:
        if isinstance(node, S.Name) and node.id in choices:
            return node.id
        got = node.id if isinstance(node, S.Name) else "an expression"
        self.err(InvalidArgument, f"{what} must be one of {', '.join(choices)}; got {got}", node.span)

    def flag(self, node, what) -> bool:
        return self.word(node, what, ("true", "false")) == "true"

    def bind_args(self, call: S.Call, positional: list[str], keywords: dict) -> dict:
        out: dict[str, Any] = {}
        pos_i = 0
        for a in call.args:
            if isinstance(a, S.Keyword):
                if a.name in out:
                    self.err(DuplicateDefinition, f"argument {a.name} given twice", a.span)
                if a.name not in keywords and a.name not in positional:
                    allowed = positional + list(keywords)
                    self.err(InvalidArgument, f"{call.func} has no argument {a.name!r}", a.span,
                             hint=_did_you_mean(a.name, allowed) or f"arguments: {', '.join(allowed)}")
                out[a.name] = a.value
            elif isinstance(a, S.ResultSpec):
                self.err(InvalidArgument, f"{call.func} takes no `-> result` argument", a.span)
            else:
                if pos_i >= len(positional):
                    self.err(WrongArity, f"{call.func} takes {len(positional)} positional argument"
                             f"{'s' if len(positional) != 1 else ''}, got more", a.span,
                             hint=f"{call.func}({', '.join(positional)}" +
                             "".join(f", {k} = ..." for k in keywords) + ")")
                out[positional[pos_i]] = a
                pos_i += 1
        for p in positional:
            if p not in out:
                self.err(WrongArity, f"{call.func} needs its argument {p!r}", call.span,
                         hint=f"{call.func}({', '.join(positional)}" +
                         "".join(f", {k} = ..." for k, v in keywords.items() if v is REQUIRED) + ")")
        for k, v in keywords.items():
            if k not in out:
                if v is REQUIRED:
                    self.err(WrongArity, f"{call.func} needs the keyword argument {k} = ...", call.span)
                out[k] = None
        return out

    def no_dupes(self, names, what):
        seen = set()
        for n, sp in names:
            if n in seen:
                self.err(ShapeMismatch, f"axis {n} appears twice in {what}", sp)
            seen.add(n)

    def eval_size_here(self, node) -> Size:
        return eval_size(node, self.size_lookup)

    def size_lookup(self, n: str, sp: Span) -> Size:
        """The size of an axis named in a size expression of the body."""
        n = self.real(n)
        if n in self.b.axes:
            return self.b.axes[n]
        self.b.lookup(n)  # as a name, it may be captured from an enclosing repeat
        self.err(UnknownName, f"unknown axis {n!r} in a size", sp,
                 hint=_did_you_mean(n, list(self.b.axes)))

    # ---------------------------------------------------- expressions

    def expr(self, node):
        if isinstance(node, S.Name):
            return self.name(node)
        if isinstance(node, S.Number):  # a whole-number literal (`3`) keeps an int; `3.0`, `1e3` are floats
            return C(("num", int(node.text) if node.text.isdigit() else node.value))
        if isinstance(node, S.Cast):
            return TYPING[node.dtype](self, node.dtype, node, {"x": node.operand})
        if isinstance(node, S.BinOp):
            return TYPING[node.op](self, node.op, node, {"a": node.left, "b": node.right})
        if isinstance(node, S.Neg):
            return TYPING["neg"](self, "neg", node, {"x": node.operand})
        if isinstance(node, S.TupleExpr):
            return Tup(tuple(self.expr(i) for i in node.items))
        if isinstance(node, S.Call):
            return self.call(node)
        if isinstance(node, S.AxisList):
            self.err(InvalidArgument, "an axis list [a, b] is a type, not a value", node.span,
                     hint="axis lists appear in einsum(..., -> [a, b]) and in signatures")
        if isinstance(node, S.CircuitRef):
            if node.name not in self.checker.circuits:
                self.err(UnknownName, f"unknown circuit {node.name!r}", node.name_span,
                         hint=_did_you_mean(node.name, self.checker.circuits) or "brackets after a name bind a "
                         "circuit's parameters; there is no indexing: take(), gather() or slice() pick positions")
            self.err(InvalidArgument, f"{node.name}[...] names a circuit without calling it; call it: "
                     f"{node.name}[...](...)", node.span,
                     hint="a circuit is named without a call only as the first argument of scan or dispatch")
        if isinstance(node, (S.Mapping, S.ResultSpec, S.Keyword)):
            self.err(InvalidArgument, "a mapping `a -> b` is only an argument of an operation", node.span)
        self.err(InvalidArgument, "unexpected expression", node.span)

    def name(self, node: S.Name):
        v = self.b.lookup(node.id)
        if v is not None:
            return v
        axis = self.real(node.id)
        if axis in self.b.axes:
            return C(("axis", axis, self.b.axes[axis]))
        if node.id == "inf":
            return C(("num", math.inf))
        if node.id in self.checker.circuits:
            self.err(InvalidArgument, f"{node.id} is a circuit; call it: {node.id}(...)", node.span)
        options = list(self.b.values) + list(self.b.axes)
        self.err(UnknownName, f"unknown name {node.id!r}", node.span, hint=_did_you_mean(node.id, options))

    def broadcast(self, ts: list[T], span, what) -> TensorType:
        axes: dict[str, Axis] = {}
        for t in ts:
            for a in t.type.axes:
                prev = axes.get(a.name)
                if prev is None:
                    axes[a.name] = a
                elif prev.size != a.size:
                    self.err(SizeConflict, f"{what}: axis {a.name} has size {prev.size} on one side and "
                             f"{a.size} on the other", span,
                             table=type_table(ts[0].type, ts[-1].type, "left", "right"))
        return TensorType(tuple(axes.values()), "float")

    def call(self, node: S.Call):
        """A call: of a circuit by its name, or of an operation, whose typing rule TYPING holds."""
        f = node.func
        if f in self.checker.circuits:
            return TYPING["call"](self, "call", node, None)
        if node.sizes:
            self.err(InvalidArgument, f"{f} is an operation; only circuits take [axis = size] arguments",
                     node.span)
        op = ops.CATALOGUE.get(f)
        if f in INITIALISERS and op is None:
            self.err(InvalidArgument, f"{f}(...) is an initialiser; it only appears in `param name: [axes] = {f}(...)`",
                     node.span)
        if op is None or not op.callable:
            names = ops.callable_names()
            self.err(UnknownName, f"unknown operation or circuit {f!r}", node.func_span,
                     hint=_did_you_mean(f, names + list(self.checker.circuits)) or "operations: " + ", ".join(names))
        args = None if op.variadic else self.bind_args(node, list(op.params), op.keyword_dict)
        return TYPING[f](self, f, node, args)
