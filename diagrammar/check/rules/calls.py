"""Front end, typing rules: nested diagrams, a circuit called by name and a scan of a step circuit.

A call instantiates the callee with the axis arguments given (`Name[a = 8](x)`)
and matches its inputs; axes an argument has beyond the callee's input type
are broadcast over (they become the call's batch axes).
"""
from __future__ import annotations

from ... import syntax as S
from ...errors import (
    DuplicateDefinition,
    InvalidArgument,
    ShapeMismatch,
    SizeConflict,
    SizeTooLarge,
    Span,
    UnknownName,
    WrongArity,
)
from ...ir import Axis, Diagram, Size, TensorType, TupleType, flat_types
from ...limits import MAX_STEPS
from ..hints import _did_you_mean, mismatch_hint, type_table
from ..values import (
    C,
    T,
    Tup,
    _add_axis,
    _add_batch,
    _flat,
    _Poison,
    _rebuild,
    _same_type,
    _Skip,
    _snake,
    _type_of,
)
from . import typing_rule


@typing_rule("call")
def call_circuit(ck, op, node, args):
    callee_src = ck.checker.circuits[node.func]
    sizes = call_sizes(ck, node, callee_src.node)
    values, spans = [], []
    for a in node.args:
        if isinstance(a, (S.Keyword, S.Mapping, S.ResultSpec)):
            ck.err(InvalidArgument, f"circuit {node.func} takes its inputs by position", a.span)
        values.append(ck.expr(a))
        spans.append(a.span)
    callee = ck.checker.instantiate(node.func, sizes, node.span)
    if callee is None:
        raise _Skip()
    wires, batch = match_args(ck, callee, values, spans, node.func, node.span)
    out_types = [TensorType(tuple(batch) + t.axes, t.dtype) for t in flat_types(callee.output.type)]
    _check_outer_sizes(ck, out_types, node.span, node.func)
    roles = _body_roles(callee, batch)
    results = ck.add_box("call", wires, out_types, node.span, body=callee, roles=roles,
                         attrs={"circuit": node.func, "batch": tuple(a.name for a in batch)},
                         label=_snake(node.func))
    return _rebuild(callee.output.type, iter(results))


@typing_rule("scan")
def scan(ck, op, node, args):
    first = node.args[0] if node.args else None
    step_name = first.id if isinstance(first, S.Name) else first.name if isinstance(first, S.CircuitRef) else None
    if step_name not in ck.checker.circuits:
        ck.err(InvalidArgument, "scan's first argument is the step circuit: scan(Step, xs, along = t, init = s)",
               first.span if first is not None else node.span,
               hint=_did_you_mean(step_name, ck.checker.circuits) if step_name is not None else None)
    step_sizes = call_sizes(ck, first, ck.checker.circuits[step_name].node) if isinstance(first, S.CircuitRef) else {}
    xs, kws = [], {}
    for a in node.args[1:]:
        if isinstance(a, S.Keyword):
            if a.name in kws:
                ck.err(DuplicateDefinition, f"argument {a.name} given twice", a.span)
            kws[a.name] = a
        elif isinstance(a, (S.Mapping, S.ResultSpec)):
            ck.err(InvalidArgument, "scan takes the step, sequences, and keyword arguments", a.span)
        else:
            xs.append((ck.expr(a), a.span))
    for k, a in kws.items():
        if k not in ("along", "init", "const"):
            ck.err(InvalidArgument, f"scan has no argument {k!r}", a.span,
                   hint=_did_you_mean(k, ["along", "init", "const"]) or "arguments: along, init, const")
    if "along" not in kws:
        ck.err(WrongArity, "scan needs along = axis", node.span)
    if "init" not in kws:
        ck.err(WrongArity, "scan needs init = state", node.span)
    (t_name, t_span), = ck.axis_names(kws["along"].value, "along")
    init = _state_constants(ck, ck.expr(kws["init"].value), step_name, len(xs), kws)
    consts, const_spans = [], []
    if "const" in kws:
        cnode = kws["const"].value
        items = cnode.items if isinstance(cnode, S.TupleExpr) else (cnode,)
        for it in items:
            consts.append(ck.expr(it))
            const_spans.append(it.span)
    t_size = None
    x_vals = []
    for v, sp in xs:
        t = ck.tensor(v, sp, "a scanned sequence")
        ax = t.type.axis(t_name)
        if ax is None:
            ck.err(ShapeMismatch, f"scan runs along {t_name}, but the sequence {t.type} has no {t_name}", sp)
        if t_size is not None and ax.size != t_size:
            ck.err(SizeConflict, f"scanned sequences differ in the length of {t_name}", sp)
        t_size = ax.size
        x_vals.append(T(t.wire, TensorType(tuple(a for a in t.type.axes if a.name != t_name), t.type.dtype)))
    if t_size is None:
        t_size = ck.axis_size(t_name, t_span)
    if t_size.is_const and t_size.value > MAX_STEPS:
        ck.err(InvalidArgument, f"scan along {t_name} runs {t_size.value:,} steps, over the limit of {MAX_STEPS:,} "
               "(limits.MAX_STEPS)", t_span, hint="JAX counts the steps of a loop in int32")
    step = ck.checker.instantiate(step_name, step_sizes, node.span)
    if step is None:
        raise _Skip()
    held = next(step.state(), None)  # batchnorm's running statistics: one update per call, not per step
    if held is not None:
        ck.err(InvalidArgument, f"the step {step_name} uses batchnorm ({held[0]}), whose running statistics a "
               "scan cannot update at every step", node.args[0].span,
               hint="use layernorm or rmsnorm inside the step, or batchnorm on the scan's outputs")
    n_in = len(step.inputs)
    init_items = init.items if isinstance(init, Tup) else (init,)
    # the state is one input (maybe of tuple type), or a tuple state spread over several inputs
    spread = (isinstance(init, Tup) and n_in == len(init_items) + len(x_vals) + len(consts)
              and n_in != 1 + len(x_vals) + len(consts))
    state_args = list(init_items) if spread else [init]
    args = state_args + x_vals + consts
    spans = [kws["init"].span] * len(state_args) + [sp for _, sp in xs] + const_spans
    if len(args) != n_in:
        ck.err(WrongArity, f"scan's step {step_name} takes {n_in} inputs, but scan gives it "
               f"{len(state_args)} state, {len(x_vals)} sequence and {len(consts)} const input"
               f"{'s' if len(consts) != 1 else ''}", node.span,
               hint=f"{step_name}(state, x_t..., consts...) -> (state, y_t)")
    wires, batch = match_args(ck, step, args, spans, f"step {step_name}", node.span)
    if any(a.name == t_name for a in batch):
        ck.err(ShapeMismatch, f"the step would broadcast over the scanned axis {t_name}", node.span)
    # the step returns (state, y) or, with a spread tuple state, (s1, ..., sn, y)
    out_t = step.output.type
    state_t = _type_of(init)
    if not isinstance(out_t, TupleType):
        ck.err(ShapeMismatch, f"a scan step returns (state, y_t); {step_name} returns {out_t}", node.span)
    if spread and len(out_t.items) == len(init_items) + 1:
        new_state_t = TupleType(out_t.items[:-1])
        y_t = out_t.items[-1]
    elif len(out_t.items) == 2:
        new_state_t, y_t = out_t.items
    else:
        ck.err(ShapeMismatch, f"a scan step returns (state, y_t); {step_name} returns {out_t}", node.span)
    bnames = tuple(a.name for a in batch)
    new_state_b = _add_batch(new_state_t, batch)
    if not _same_type(new_state_b, state_t):
        ck.err(ShapeMismatch, f"{step_name} returns the state as {new_state_t}, but it got {state_t}",
               node.span, hint="a scan step gives back the state with the type of init")
    y_full = _add_axis(_add_batch(y_t, batch), Axis(t_name, t_size))
    out_types = flat_types(new_state_b) + flat_types(y_full)
    _check_outer_sizes(ck, out_types, node.span, f"scan of {step_name}")
    roles = _body_roles(step, batch)
    roles[t_name] = "consumed" if xs else "produced"
    results = ck.add_box("scan", wires, out_types, node.span, body=step, roles=roles,
                         attrs={"circuit": step_name, "along": t_name, "length": t_size,
                                "n_state": len(flat_types(state_t)), "n_xs": len(x_vals),
                                "n_const": sum(len(flat_types(_type_of(c))) for c in consts),
                                "batch": bnames, "spread_state": spread},
                         label=_snake(step_name))
    it = iter(results)
    state_v = _rebuild(state_t, it)
    ys_v = _rebuild(y_full, it)
    return Tup((state_v, ys_v))


def _state_constants(ck, init, step: str, n_xs: int, kws):
    """Constants in scan's initial state: int where the step's state input is int (v1), else float (v0).

    The dtypes are read from the step's signature as written, so nothing is
    instantiated before its turn; a float constant inside a tuple state is left
    for match_args to make, as in v0.
    """
    span = kws["init"].span
    params = ck.checker.circuits[step].node.params

    def want(tnode):
        return TensorType((), tnode.dtype) if isinstance(tnode, S.TensorTypeNode) else None

    if isinstance(init, C):
        return ck.constant_for(init, want(params[0].type) if params else None, span)
    if not isinstance(init, Tup) or not any(isinstance(x, C) for x in init.items):
        return init
    cnode = kws["const"].value if "const" in kws else None
    n_const = 0 if cnode is None else len(cnode.items) if isinstance(cnode, S.TupleExpr) else 1
    items = init.items
    if len(params) == len(items) + n_xs + n_const and len(params) != 1 + n_xs + n_const:  # spread over inputs
        wants = [want(p.type) for p in params[:len(items)]]
    elif params and isinstance(params[0].type, S.TupleTypeNode) and len(params[0].type.items) == len(items):
        wants = [want(t) for t in params[0].type.items]
    else:
        wants = [None] * len(items)
    return Tup(tuple(ck.constant_for(x, w, span) if isinstance(x, C) and w is not None and w.dtype == "int" else x
                     for x, w in zip(items, wants)))


def call_sizes(ck, node: S.Call | S.CircuitRef, callee: S.CircuitDef) -> dict[str, Size | Axis]:
    """The bracket arguments of a call or a circuit reference (`Name[hidden = 256]`, `Block[c = c64]`):
    a size for each axis parameter given, and for each name parameter the axis it is bound to."""
    names = {a.name for a in callee.axis_params}
    name_params = {a.name for a in callee.axis_params if isinstance(a, S.NameParam)}
    out: dict[str, Size | Axis] = {}
    for item in node.sizes:
        if item.name not in names:
            ck.err(InvalidArgument, f"{callee.name} has no axis parameter {item.name!r}", item.span,
                   hint=_did_you_mean(item.name, names) or
                   (f"its axis parameters: {', '.join(sorted(names))}" if names else
                    f"{callee.name} takes no axis parameters"))
        if item.name in out:
            what = "name parameter" if item.name in name_params else "axis parameter"
            ck.err(DuplicateDefinition, f"{what} {item.name} given twice", item.span)
        if item.name in name_params:
            out[item.name] = _bound_axis(ck, item, callee)
            continue
        if item.size is None:
            ck.err(InvalidArgument, f"give {item.name} a size: {item.name} = ...", item.span)
        s = ck.eval_size_here(item.size)
        if s.is_const and s.value < 1:
            ck.err(SizeTooLarge, f"{item.name} = {s.value}; sizes must be at least 1", item.span)
        out[item.name] = s
    return out


def _bound_axis(ck, item: S.AxisItem, callee: S.CircuitDef) -> Axis:
    """The axis a name parameter is bound to: one axis name in scope at the call (`c = c64`)."""
    if not isinstance(item.size, S.SizeName):
        got = "nothing" if item.size is None else S.size_text(item.size)
        ck.err(InvalidArgument, f"{item.name} is a name parameter of {callee.name}: bind it to one axis, by its "
               f"name (got {got})", item.size.span if item.size is not None else item.span,
               hint=f"{callee.name}[{item.name} = seq](...); to give a size, declare an axis of that size "
               f"(axis {item.name}2 = ...) and bind {item.name} to it")
    name = ck.real(item.size.name)
    if name not in ck.b.axes:
        ck.err(UnknownName, f"unknown axis {item.size.name!r}, bound to {callee.name}'s name parameter {item.name}",
               item.size.span, hint=_did_you_mean(name, list(ck.b.axes)) or f"declare it: axis {name} = ...")
    return Axis(name, ck.b.axes[name])


def match_args(ck, callee: Diagram, values: list, spans: list, what: str, span: Span):
    """Match argument values to the callee's inputs; returns (wires, batch axes)."""
    if len(values) != len(callee.inputs):
        ck.err(WrongArity, f"{what} takes {len(callee.inputs)} input{'s' if len(callee.inputs) != 1 else ''}"
               f" ({', '.join(p.name for p in callee.inputs)}), got {len(values)}", span)
    batch: dict[str, Axis] = {}
    wires = []
    inner_axes = {a.name for a in callee.axes}
    for port, v, sp in zip(callee.inputs, values, spans):
        if isinstance(v, _Poison):
            raise _Skip()
        if isinstance(v, C):  # int for an int input (v1), else float
            v = ck.constant_for(v, port.type, sp)
        want_flat = flat_types(port.type)
        got_flat = _flat(v)
        if len(want_flat) != len(got_flat) or (isinstance(port.type, TupleType) != isinstance(v, Tup)):
            ck.err(ShapeMismatch, f"{what}'s input {port.name} is {port.type}, got {_type_of(v)}", sp)
        for want, got in zip(want_flat, got_flat):
            got = ck.constant_for(got, want, sp) if isinstance(got, C) else ck.tensor(got, sp)
            bad = [a for a in want.axes if got.type.axis(a.name) is None or got.type.axis(a.name).size != a.size]
            if bad or want.dtype != got.type.dtype:
                ck.err(ShapeMismatch, f"{what}'s input {port.name} is {want}, got {got.type}", sp,
                       table=type_table(want, got.type, "input", "argument"),
                       hint=mismatch_hint(want, got.type, port.name))
            for a in got.type.axes:
                if want.axis(a.name) is None:
                    if a.name in inner_axes:
                        ck.err(ShapeMismatch, f"{what} would broadcast over {a.name}, but {a.name} is one of "
                               f"its own axes", sp, table=type_table(want, got.type, "input", "argument"),
                               hint=mismatch_hint(want, got.type, port.name))
                    prev = batch.get(a.name)
                    if prev is not None and prev.size != a.size:
                        ck.err(SizeConflict, f"broadcast axis {a.name} has two sizes", sp)
                    batch[a.name] = a
            wires.append(got.wire)
    return wires, list(batch.values())


def _check_outer_sizes(ck, types, span, what):
    for t in types:
        for a in t.axes:
            mine = ck.b.axes.get(a.name)
            if mine is not None and mine != a.size:
                ck.err(SizeConflict, f"{what} returns axis {a.name} of size {a.size}, but here {a.name} is "
                       f"{mine}", span, hint="give the circuit's axis parameter another name")


def _body_roles(body: Diagram, batch: list[Axis]) -> dict[str, str]:
    """Roles of a call's axes: the callee covers its own axes; batch axes pass by."""
    ins = {a.name for p in body.inputs for t in flat_types(p.type) for a in t.axes}
    outs = {a.name for t in flat_types(body.output.type) for a in t.axes}
    roles = {a.name: "passing" for a in batch}
    for name in sorted(ins | outs):
        if name not in roles:
            roles[name] = "replaced" if name in ins and name in outs else "consumed" if name in ins else "produced"
    return roles
