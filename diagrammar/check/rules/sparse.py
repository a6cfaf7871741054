"""Front end, typing rules: sparse routing (topk, dispatch of each position to its chosen expert, scatter_add).

`topk` picks the k largest entries along an axis and says where they were;
`dispatch` runs each position through the copy of an expert circuit its int
index names; `scatter_add` sums entries into the positions int indices name
(the transpose of `gather`). Together they build a mixture of experts that
runs only the chosen experts, and message passing on an edge list.
"""
from __future__ import annotations

from ... import syntax as S
from ...errors import (
    DuplicateDefinition,
    InvalidArgument,
    ShapeMismatch,
    SizeConflict,
    WrongArity,
)
from ...ir import TensorType, flat_types
from ..hints import _did_you_mean
from ..values import T, Tup, _passing, _rebuild, _Skip, _snake
from . import typing_rule
from .calls import _body_roles, _check_outer_sizes, call_sizes, match_args
from .index import _int_tensor


@typing_rule("topk")
def topk(ck, op, node, args):
    x = ck.tensor(ck.expr(args["x"]), args["x"].span, "topk's input")
    if x.type.dtype == "bool":
        ck.err(ShapeMismatch, f"topk ranks float or int entries, got {x.type}", args["x"].span,
               hint="turn the booleans into numbers first, e.g. where(b, 1, 0)")
    src, dst = ck.mapping(args["over"], "topk")
    if len(src) != 1 or len(dst) != 1:
        ck.err(InvalidArgument, "topk ranks along one axis into one: topk(x, over = a -> k)", args["over"].span)
    (a_name, a_span), (k_name, k_span) = src[0], dst[0]
    a = x.type.axis(a_name)
    if a is None:
        ck.err(ShapeMismatch, f"topk ranks along {a_name}, but the input {x.type} has no {a_name}", a_span,
               hint=_did_you_mean(a_name, x.type.names) or f"axes of the input: {', '.join(x.type.names)}")
    if x.type.axis(k_name) is not None:
        ck.err(ShapeMismatch, f"topk makes a new axis {k_name}, but the input {x.type} already has it", k_span,
               hint="declare an axis for the k picks, e.g. axis top = 2")
    k = ck.axis(k_name, k_span)
    diff = a.size - k.size
    if diff.is_const and diff.value < 0:
        ck.err(SizeConflict, f"topk picks {k_name} = {k.size} entries, but {a_name} has only {a.size}", k_span,
               hint=f"declare {k_name} with a size of at most {a.size}")
    axes = tuple(k if b.name == a_name else b for b in x.type.axes)
    values = TensorType(axes, x.type.dtype)
    indices = TensorType(axes, "int")
    roles = _passing(values)
    roles[a_name] = "consumed"
    roles[k_name] = "produced"
    v, i = ck.add_box("topk", [x.wire], [values, indices], node.span, roles=roles,
                      attrs={"over": a_name, "k": k_name})
    return Tup((v, i))


@typing_rule("scatter_add")
def scatter_add(ck, op, node, args):
    x = ck.tensor(ck.expr(args["x"]), args["x"].span, "scatter_add's input")
    if x.type.dtype == "bool":
        ck.err(ShapeMismatch, f"scatter_add sums float or int entries, got {x.type}", args["x"].span)
    i = _int_tensor(ck, ck.expr(args["i"]), args["i"].span, "scatter_add's indices")
    src, dst = ck.mapping(args["along"], "scatter_add")
    ck.no_dupes(src, "scatter_add's source axes")
    if len(dst) != 1:
        ck.err(InvalidArgument, "scatter_add sums into one axis: scatter_add(x, i, along = e -> n)",
               args["along"].span)
    for name, span in src:
        for t, what in ((x, "input"), (i, "indices")):
            if t.type.axis(name) is None:
                ck.err(ShapeMismatch, f"scatter_add sums over {name}, but the {what} {t.type} has no {name}", span,
                       hint=f"axes of the {what}: {', '.join(t.type.names) or 'none'}")
    source = {n for n, _ in src}
    for b in i.type.axes:
        if b.name not in source and x.type.axis(b.name) is None:
            ck.err(ShapeMismatch, f"the indices {i.type} have an axis {b.name} that the input {x.type} lacks",
                   args["i"].span, hint=f"the indices' axes other than {', '.join(n for n, _ in src)} "
                   "must be on the input too (they are batched with it)")
    ck.broadcast([x, i], node.span, "scatter_add")  # shared axes agree in size
    (n_name, n_span), = dst
    if x.type.axis(n_name) is not None:
        ck.err(ShapeMismatch, f"scatter_add sums into a new axis {n_name}, but the input {x.type} already has it",
               n_span)
    n = ck.axis(n_name, n_span)
    axes, placed = [], False
    for b in x.type.axes:
        if b.name in source:
            if not placed:
                axes.append(n)
                placed = True
        else:
            axes.append(b)
    out = TensorType(tuple(axes), x.type.dtype)
    roles = _passing(out)
    roles.update({s: "consumed" for s in source})
    roles[n_name] = "produced"
    return ck.add_box("scatter_add", [x.wire, i.wire], [out], node.span, roles=roles,
                      attrs={"along": tuple(n for n, _ in src), "into": n_name})[0]


# ---------------------------------------------------------------- dispatch

_DISPATCH_USAGE = "dispatch(Expert, x, ..., index = i, along = experts)"


def _expert(ck, node: S.Call):
    """The expert circuit's name and its axis arguments: dispatch's first argument, a circuit's name
    or a reference with its axis arguments (`Expert[c = d]`)."""
    first = node.args[0] if node.args else None
    name = first.id if isinstance(first, S.Name) else first.name if isinstance(first, S.CircuitRef) else None
    if name not in ck.checker.circuits:
        ck.err(InvalidArgument, f"dispatch's first argument is the expert circuit: {_DISPATCH_USAGE}",
               first.span if first is not None else node.span,
               hint=_did_you_mean(name, ck.checker.circuits) if name is not None else None)
    return name, call_sizes(ck, first, ck.checker.circuits[name].node) if isinstance(first, S.CircuitRef) else {}


@typing_rule("dispatch")
def dispatch(ck, op, node, args):
    expert_name, sizes = _expert(ck, node)
    values, spans, kws = [], [], {}
    for a in node.args[1:]:
        if isinstance(a, S.Keyword):
            if a.name in kws:
                ck.err(DuplicateDefinition, f"argument {a.name} given twice", a.span)
            if a.name not in ("index", "along"):
                ck.err(InvalidArgument, f"dispatch has no argument {a.name!r}", a.span,
                       hint=_did_you_mean(a.name, ["index", "along"]) or "arguments: index, along")
            kws[a.name] = a
        elif isinstance(a, (S.Mapping, S.ResultSpec)):
            ck.err(InvalidArgument, f"dispatch takes the expert, its inputs and keyword arguments: {_DISPATCH_USAGE}",
                   a.span)
        else:
            values.append(ck.expr(a))
            spans.append(a.span)
    for k in ("index", "along"):
        if k not in kws:
            ck.err(WrongArity, f"dispatch needs {k} = ...: {_DISPATCH_USAGE}", node.span)
    (e_name, e_span), = ck.axis_names(kws["along"].value, "along")
    experts = ck.axis(e_name, e_span)
    index = _int_tensor(ck, ck.expr(kws["index"].value), kws["index"].span, "dispatch's index")
    callee = ck.checker.instantiate(expert_name, sizes, node.span)
    if callee is None:
        raise _Skip()
    held = next(callee.state(), None)  # batchnorm's running statistics
    if held is not None or any(b.op == "batchnorm" for _p, b in callee.walk()):
        ck.err(InvalidArgument, f"the expert {expert_name} uses batchnorm, whose running statistics dispatch "
               "cannot keep per expert", node.args[0].span, hint="use layernorm or rmsnorm inside an expert")
    own = {a.name for a in callee.axes} | {a.name for t in flat_types(callee.output.type) for a in t.axes}
    for v, sp in zip(values, spans):
        for t in (v.items if isinstance(v, Tup) else (v,)):
            if isinstance(t, T) and t.type.axis(e_name) is not None:
                ck.err(ShapeMismatch, f"dispatch chooses among {experts.size} copies of {expert_name} along "
                       f"{e_name}, so its input {t.type} must not carry {e_name}", sp,
                       hint=f"dispatch makes the {e_name} copies itself; pass one token's input, without {e_name}")
    if e_name in own:
        ck.err(ShapeMismatch, f"{e_name} is one of {expert_name}'s own axes; dispatch needs a separate axis for "
               "the copies", e_span, hint="declare one, e.g. axis experts = 8")
    if index.type.axis(e_name) is not None:
        ck.err(ShapeMismatch, f"dispatch's index {index.type} must not carry {e_name}: it holds one expert "
               f"number per position", kws["index"].span, hint=f"pick along {e_name} first: topk or argmax")
    wires, batch = match_args(ck, callee, values, spans, f"expert {expert_name}", node.span)
    batch_names = {a.name for a in batch}
    extra = []
    for a in index.type.axes:
        if a.name in own:
            ck.err(ShapeMismatch, f"dispatch's index {index.type} has the axis {a.name}, one of "
                   f"{expert_name}'s own axes", kws["index"].span,
                   hint="an index axis is batched with the inputs or added to the result; rename it")
        if a.name in batch_names:
            got = next(b for b in batch if b.name == a.name)
            if got.size != a.size:
                ck.err(SizeConflict, f"axis {a.name} is {got.size} on the inputs and {a.size} on the index",
                       kws["index"].span)
        else:
            extra.append(a)
    lead = tuple(batch) + tuple(extra)
    out_types = [TensorType(lead + t.axes, t.dtype) for t in flat_types(callee.output.type)]
    _check_outer_sizes(ck, out_types, node.span, f"dispatch of {expert_name}")
    roles = _body_roles(callee, batch)
    roles.update({a.name: "produced" for a in extra})
    ck.budget_of_copies(callee, experts.size, node.span, f"dispatch along {e_name}")  # as compile counts them
    results = ck.add_box("dispatch", wires + [index.wire], out_types, node.span, body=callee, roles=roles,
                         attrs={"circuit": expert_name, "batch": tuple(a.name for a in batch), "along": e_name,
                                "count": experts.size, "index_axes": tuple(a.name for a in extra)},
                         label=_snake(expert_name))
    return _rebuild(callee.output.type, iter(results))

