"""Backend flax, lowerings: nested diagrams (a circuit call, repeat with stacked weights, scan).

These rules take one more argument than the others, the capture request of
the body, and return (outputs, captured wires).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ....ir import Box, Diagram
from ..values import _DTYPES, _V, _Ctx, _full, _sizes_of, _transpose, _union
from . import lowering


def _enter(r, d: Diagram, b: Box, ctx: _Ctx, ins: list[_V]):
    """Internal names for the axes a call or scan is broadcast over (callee names can never clash)."""
    table = {n: f"#{n}@{len(ctx.batch) + j}" for j, n in enumerate(b.attr("batch", ()))}
    sizes = {}
    for i in range(len(b.outputs)):
        t = r.out_type(d, b, i)
        for n, inner in table.items():
            a = t.axis(n)
            if a is not None:
                sizes[inner] = r.sizes(a.size)
    ins = [_V(v.a, tuple(table.get(n, n) for n in v.names)) for v in ins]
    back = {v: k for k, v in table.items()}
    return ins, sizes, back


def _leave(vs: list[_V], back: dict[str, str]) -> list[_V]:
    return [_V(v.a, tuple(back.get(n, n) for n in v.names)) for v in vs]


def _carry_names(r, d, b, ctx, ins, outs_idx, extra_sizes):
    """Names (batch axes first) and sizes of each carried value: its type plus every batch axis of the inputs."""
    present = set(_union(ins))
    lead = [n for n in ctx.batch if n in present]
    sizes = dict(extra_sizes)
    sizes.update(_sizes_of(ins))
    out = []
    for i in outs_idx:
        t = r.out_type(d, b, i)
        sizes.update(zip(t.names, r.sizes.shape(t)))
        out.append((tuple(lead) + tuple(n for n in t.names if n not in lead), t.dtype))
    return out, sizes


@lowering("call")
def call(r, d, b, index, prefix, ins, ctx, req):
    ins, extra, back = _enter(r, d, b, ctx, ins)
    inner = ctx.child(index, extra)
    outs, caps = r.run(b.body, f"{prefix}{b.name}.", ins, inner, req)
    return _leave(outs, back), caps


@lowering("repeat")
def repeat(r, d, b, index, prefix, ins, ctx, req):
    if req is None and dict(b.attr("pass", ())).get("unroll_repeat"):
        return _unrolled(r, b, index, prefix, ins, ctx), {}
    n_carry = b.attr("carried")
    count = r.sizes(b.attr("count"))
    carry_spec, sizes = _carry_names(r, d, b, ctx, ins, range(n_carry), {})
    init = tuple(_full(v, names, sizes).astype(_DTYPES[dt]) for v, (names, dt) in zip(ins, carry_spec))
    captured = ins[n_carry:]
    own = f"{prefix}{b.name}."
    stacked = {k: v for k, v in r.weights.items() if k.startswith(own)}
    cap_names: dict[str, tuple] = {}

    def body(carry, xs):
        w, i = xs
        runner = type(r)(r.plan, {**r.weights, **w})
        vals = [_V(a, names) for a, (names, _) in zip(carry, carry_spec)] + list(captured)
        inner = ctx.child(index, step=i)
        outs, caps = runner.run(b.body, own, vals, inner, req)
        new = tuple(_full(v, names, sizes).astype(_DTYPES[dt]) for v, (names, dt) in zip(outs, carry_spec))
        for k, (_, names) in caps.items():
            cap_names[k] = names
        return new, ({k: a for k, (a, _) in caps.items()}, runner.updates)

    final, (caps, updates) = lax.scan(body, init, (stacked, jnp.arange(count)))
    r.updates.update(updates)  # state the copies wrote (batchnorm), stacked per copy like their weights
    outs = [_V(a, names) for a, (names, _) in zip(final, carry_spec)]
    axis = f"#{b.name}#copy"
    return outs, {k: (a, (axis,) + cap_names[k]) for k, a in caps.items()}


def _unrolled(r, b, index, prefix, ins, ctx) -> list[_V]:
    """`repeat` as a Python loop over its copies (passes/unroll_repeat.py): each copy's weights are a row of
    the stacked ones, its dropout key the one the scan would give it; XLA sees one straight-line program."""
    n_carry = b.attr("carried")
    own = f"{prefix}{b.name}."
    stacked = {k: v for k, v in r.weights.items() if k.startswith(own)}
    carry, captured = list(ins[:n_carry]), list(ins[n_carry:])
    updates: list[dict] = []
    for i in range(r.sizes(b.attr("count"))):
        runner = type(r)(r.plan, {**r.weights, **{k: v[i] for k, v in stacked.items()}})
        carry, _ = runner.run(b.body, own, carry + captured, ctx.child(index, step=i), None)
        updates.append(runner.updates)
    if updates and updates[0]:  # state the copies wrote (batchnorm), stacked per copy like their weights
        r.updates.update({k: jnp.stack([u[k] for u in updates]) for k in updates[0]})
    return carry


@lowering("scan")
def scan(r, d, b, index, prefix, ins, ctx, req):
    n_state, n_xs = b.attr("n_state"), b.attr("n_xs")
    along = b.attr("along")
    length = r.sizes(b.attr("length"))
    ins, extra, back = _enter(r, d, b, ctx, ins)
    inner_batch = ctx.batch + tuple(extra)
    probe = _Ctx(inner_batch, {**ctx.sizes, **extra}, ctx.training, None)
    states, xs, consts = ins[:n_state], ins[n_state:n_state + n_xs], ins[n_state + n_xs:]
    # the state carries every batch axis of any input: a step's result can depend on all of them
    present = set(_union(ins))
    lead = [n for n in inner_batch if n in present]
    sizes = {**extra, **_sizes_of(ins)}
    state_spec = []
    for i in range(n_state):
        t = r.out_type(d, b, i)
        own = [n for n in t.names if n not in b.attr("batch", ())]
        sizes.update(zip(t.names, r.sizes.shape(t)))
        state_spec.append((tuple(lead) + tuple(own), t.dtype))
    init = tuple(_full(v, names, sizes).astype(_DTYPES[dt]) for v, (names, dt) in zip(states, state_spec))
    x_names = [probe.order([n for n in v.names if n != along]) for v in xs]
    x_arrays = tuple(_transpose(v, (along,) + names) for v, names in zip(xs, x_names))
    y_names: list[tuple] = []
    cap_names: dict[str, tuple] = {}
    own = f"{prefix}{b.name}."

    def body(carry, step):
        xs_t, i = step
        vals = ([_V(a, names) for a, (names, _) in zip(carry, state_spec)]
                + [_V(a, names) for a, names in zip(xs_t, x_names)] + list(consts))
        inner = ctx.child(index, extra, step=i)
        outs, caps = r.run(b.body, own, vals, inner, req)
        new = tuple(_full(v, names, sizes).astype(_DTYPES[dt])
                    for v, (names, dt) in zip(outs[:n_state], state_spec))
        ys = []
        y_names.clear()
        for v in outs[n_state:]:
            names = inner.order(v.names)
            ys.append(_transpose(v, names))
            y_names.append(names)
        for k, (_, names) in caps.items():
            cap_names[k] = names
        return new, (tuple(ys), {k: a for k, (a, _) in caps.items()})

    if r.plan.remat:
        body = jax.checkpoint(body)
    unroll = bool(dict(b.attr("pass", ())).get("unroll_scan"))  # passes/unroll_scan.py: straight-line steps
    final, (ys, caps) = lax.scan(body, init, (x_arrays, jnp.arange(length)), length=length, unroll=unroll)
    outs = [_V(a, names) for a, (names, _) in zip(final, state_spec)]
    for a, names in zip(ys, y_names):
        v = _V(a, (along,) + names)
        order = probe.order(v.names)
        outs.append(_V(_transpose(v, order), order))
    axis = f"#{b.name}#step"
    return _leave(outs, back), {k: (a, (axis,) + cap_names[k]) for k, a in caps.items()}
