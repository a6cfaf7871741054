"""Front end, checker: circuits generic over axis names (`circuit Block[axis h, axis c](...)`).

A call binds each name parameter to an axis (`Block[h = h2, c = c64](x)`), and
the callee is checked again with the parameters replaced by those axes (the
instantiation that the call runs). Substitution may merge two axes that the
text keeps apart: `Outer[a = d, b = d]` makes `x * y` of `x: [a]` and `y: [b]`
an element-wise product where the text means an outer one. So every
instantiation is first checked with each parameter as an axis of its own,
sized as the axis bound to it (what the text means for distinct axes), and
that diagram is searched for an operation or a type where the binding would
put two of its axes together: an AxisCapture.
"""
from __future__ import annotations

from .. import ops
from .. import syntax as S
from ..errors import AxisCapture, CircuitError
from ..ir import Axis, Diagram, TupleType

# operations that match the axes of different operands by name
_MATCH_ACROSS = frozenset({"dot", "einsum", "gather", "concat", "stack", "scatter_add", "dispatch"})


def matches_across(op: str) -> bool:
    o = ops.CATALOGUE.get(op)
    return op in _MATCH_ACROSS or (o is not None and o.family == "binary")


def header(node: S.CircuitDef) -> str:
    """`Block[axis h, axis c, hidden = 4 * c]`: a circuit's name and parameters as written."""
    parts = [f"axis {p.name}" if isinstance(p, S.NameParam) else
             p.name + (f" = {S.size_text(p.size)}" if p.size is not None else "") for p in node.axis_params]
    return node.name + (f"[{', '.join(parts)}]" if parts else "")


def is_generic(node: S.CircuitDef) -> bool:
    return any(isinstance(p, S.NameParam) for p in node.axis_params)


def binding_text(name: str, args: dict) -> str:
    """`Attention[q = seq, k = key]`: an instantiation as a call writes it."""
    shown = ", ".join(f"{k} = {v.name if isinstance(v, Axis) else v}" for k, v in args.items())
    return f"{name}[{shown}]" if shown else name


def captures(distinct: Diagram, node: S.CircuitDef, bound: dict[str, Axis]) -> list[CircuitError]:
    """The places where binding the name parameters as `bound` says puts two axes of `distinct` (the
    callee checked with each parameter an axis of its own) together; one AxisCapture per place."""
    rho = {p: a.name for p, a in bound.items()}
    found: list[CircuitError] = []

    def clash(names) -> tuple[str, str, str] | None:
        seen: dict[str, str] = {}
        for n in names:
            target = rho.get(n, n)
            if target in seen and seen[target] != n:
                return seen[target], n, target
            seen.setdefault(target, n)
        return None

    def why(a: str, b: str, target: str) -> str:
        if a in rho and b in rho:
            return f"{a} and {b} are both bound to {target}"
        param = a if a in rho else b
        return f"{param} is bound to {target}, an axis {node.name} also names itself"

    hint = "bind the parameters to distinct axes (declare another of the same size: axis d2 = d)"
    for port, param in zip(distinct.inputs, node.params):
        for t in _flat(port.type):
            c = clash(t.names)
            if c:
                found.append(AxisCapture(f"{why(*c)}, so the input {port.name}: {t} would have {c[2]} twice",
                                         param.span, hint=hint))
    for t in _flat(distinct.output.type):
        c = clash(t.names)
        if c:
            found.append(AxisCapture(f"{why(*c)}, so the result type {t} would have {c[2]} twice",
                                     node.returns.span, hint=hint))

    def walk(d: Diagram):
        for b in d.boxes:
            c = None
            if matches_across(b.op):
                names: list[str] = []
                for w in b.inputs:
                    names.extend(dict.fromkeys(d.wire(w).type.names))
                c = clash(names)
                if c:
                    o = ops.CATALOGUE.get(b.op)
                    what = f"`{o.symbol}`" if o is not None and o.symbol else b.op
                    found.append(AxisCapture(
                        f"{why(*c)}, so {what} would match them by name; for distinct axes this text keeps "
                        f"them apart", b.span, hint=hint))
                    continue
            for w in b.outputs:
                c = clash(d.wire(w).type.names)
                if c:
                    found.append(AxisCapture(f"{why(*c)}, so this value would have {c[2]} twice",
                                             b.span, hint=hint))
                    break
            if b.op == "repeat" and b.body is not None:  # the same text; calls and scans are instantiations of their own
                walk(b.body)

    walk(distinct)
    return found


def _flat(t):
    return t.flat() if isinstance(t, TupleType) else [t]


def unresolved(node: S.CircuitDef, global_axes, circuits) -> list[CircuitError]:
    """UnknownName for each name of a generic circuit's text that refers to nothing: an axis in a type or
    a size, a called circuit or operation, or a value. (A generic circuit nothing calls is not typed, but
    its names are resolved.) A bare name given to a keyword argument may be a word (`padding = same`)."""
    from ..errors import UnknownName
    from .hints import _did_you_mean
    from .statements import INITIALISERS

    axes = set(global_axes) | {p.name for p in node.axis_params}
    values = {p.name for p in node.params} | set(_assigned(node.body))
    callables = set(ops.callable_names()) | set(circuits) | INITIALISERS
    found: list[CircuitError] = []

    def unknown(what: str, name: str, span, options):
        found.append(UnknownName(f"unknown {what} {name!r}", span, hint=_did_you_mean(name, options)))

    def size(n):
        if isinstance(n, S.SizeName):
            if n.name not in axes:
                unknown("axis", n.name, n.span, axes)
        elif isinstance(n, S.SizeBin):
            size(n.left)
            size(n.right)

    def typ(t):
        if isinstance(t, S.TupleTypeNode):
            for x in t.items:
                typ(x)
        elif isinstance(t, S.TensorTypeNode):
            for name, sp in t.axes:
                if name not in axes:
                    unknown("axis", name, sp, axes)

    def expr(e):
        if isinstance(e, S.Name):
            if e.id not in values and e.id not in axes and e.id != "inf" and e.id not in INITIALISERS:
                unknown("name", e.id, e.span, values | axes)
        elif isinstance(e, (S.Call, S.CircuitRef)):
            name = e.func if isinstance(e, S.Call) else e.name
            if name not in callables:
                unknown("operation or circuit", name, e.func_span if isinstance(e, S.Call) else e.name_span,
                        callables)
            for item in e.sizes:
                if item.size is not None:
                    size(item.size)
            for a in getattr(e, "args", ()):
                if isinstance(a, S.Keyword) and isinstance(a.value, S.Name):
                    continue  # a word, an axis or a value: the operation decides
                expr(a)
        elif isinstance(e, S.Keyword):
            expr(e.value)
        elif isinstance(e, (S.Mapping,)):
            expr(e.src)
            expr(e.dst)
        elif isinstance(e, S.ResultSpec):
            expr(e.value)
        elif isinstance(e, (S.TupleExpr, S.AxisList)):
            for x in e.items:
                expr(x)
        elif isinstance(e, S.BinOp):
            expr(e.left)
            expr(e.right)
        elif isinstance(e, S.Neg) or hasattr(e, "operand"):  # a negation or a cast
            expr(e.operand)

    def block(stmts):
        for st in stmts:
            if isinstance(st, S.Assign):
                expr(st.value)
            elif isinstance(st, S.Return):
                for v in st.values:
                    expr(v)
            elif isinstance(st, S.ParamStmt):
                typ(st.type)
                if st.init is not None:
                    expr(st.init)
            elif isinstance(st, S.Repeat):
                size(st.count)
                block(st.body)
            elif isinstance(st, S.Require):
                size(st.left)
                size(st.right)

    for p in node.axis_params:
        if isinstance(p, S.AxisItem) and p.size is not None:
            size(p.size)
    for p in node.params:
        typ(p.type)
    typ(node.returns)
    block(node.body)
    return found


def _assigned(stmts):
    for st in stmts:
        if isinstance(st, S.Assign):
            yield from (n for n, _ in st.targets)
        elif isinstance(st, S.ParamStmt):
            yield st.name
        elif isinstance(st, S.Repeat):
            yield from _assigned(st.body)


def merged_by(node: S.CircuitDef, bound: dict[str, Axis]) -> str:
    """How a binding merges axes the text keeps apart, in words: `a and b are both bound to d`,
    `a is bound to d, which Outer also names`."""
    written = set(_names(node))
    for p, a in bound.items():
        for q, b in bound.items():
            if q != p and a.name == b.name:
                return f"{p} and {q} are both bound to {a.name}"
    for p, a in bound.items():
        if a.name in written and a.name != p:
            return f"{p} is bound to {a.name}, an axis {node.name} also names itself"
    return "this binding merges two of its axes"


def _names(x):
    import dataclasses

    if isinstance(x, S.Name):
        yield x.id
    elif isinstance(x, S.SizeName):
        yield x.name
    elif isinstance(x, S.TensorTypeNode):
        yield from (n for n, _ in x.axes)
    if isinstance(x, (tuple, list)):
        for y in x:
            yield from _names(y)
    elif dataclasses.is_dataclass(x):
        for f in dataclasses.fields(x):
            if f.name != "span":
                yield from _names(getattr(x, f.name))
