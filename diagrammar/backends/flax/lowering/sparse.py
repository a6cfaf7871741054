"""Backend flax, lowerings: sparse routing (topk, scatter_add, and dispatch of each position to its expert).

`dispatch` runs only the experts each position chose. Its positions (the
batch, the axes the expert is broadcast over and the index's own axes, such
as the k of a top-k) are flattened into one list of (position, expert)
pairs, and the expert's body runs once per pair under `jax.vmap`, with that
pair's copy of the weights gathered from the stack by its expert number. So
an expert is evaluated exactly where it was chosen, k times per token, never
E times, and nothing is dropped: there is no capacity.

Why not group by expert: sorting the pairs by expert and running each
group as a dense batch (`lax.ragged_dot`, as Megablocks does) needs every
operation in the body to understand ragged groups, which holds for a linear
layer but not for an arbitrary circuit (softmax over its own axes, scans,
nested calls). Gathering the weights per pair works for any body, at the
price of memory: the gathered copies take pairs x (one expert's weights).
Pairs are therefore run in chunks (`lax.map` with a batch size) whose
gathered weights stay under `_GATHER_BUDGET` elements. Sorting the pairs
first would not change that work, so they run in their natural order. The
backward pass scatter-adds each pair's weight gradient into its expert's
slice of the stack: only chosen experts get gradients.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from ....ir import flat_types
from ..values import _DTYPES, _V, _Ctx, _full, _sizes_of, _transpose
from . import lowering

_GATHER_BUDGET = 1 << 24  # elements of weights gathered at once by one dispatch (64 MB in float32)


@lowering("topk")
def topk(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    a, k = b.attr("over"), b.attr("k")
    n_k = r.sizes(r.out_type(d, b).axis(k).size)
    if a not in x.names:  # a value constant along `a` (broadcast lazily): make the axis
        n_a = r.sizes(d.wire(b.inputs[0]).type.axis(a).size)
        x = _V(_full(x, x.names + (a,), {**_sizes_of([x]), a: n_a}), x.names + (a,))
    rest = [n for n in x.names if n != a]
    values, positions = lax.top_k(_transpose(x, rest + [a]), n_k)  # ties: the lower position first
    names = tuple(rest) + (k,)
    return [_V(values, names), _V(positions.astype(jnp.int32), names)]


@lowering("scatter_add")
def scatter_add(r, d, b, index, prefix, ins, ctx):
    x, i = ins
    source = tuple(b.attr("along"))
    into = b.attr("into")
    n = r.sizes(r.out_type(d, b).axis(into).size)
    sizes = {**ctx.sizes, **_sizes_of(ins)}
    for s in source:  # a source axis either operand holds only lazily (a broadcast value)
        if s not in sizes:
            sizes[s] = r.sizes(d.wire(b.inputs[0]).type.axis(s).size)
    # the index's other axes are batched with the input (an axis only the index has is broadcast over x)
    batch = [m for m in i.names if m not in source]
    rest = [m for m in x.names if m not in source and m not in batch]
    xa = _full(x, batch + list(source) + rest, sizes)
    ia = _full(i, batch + list(source), sizes)
    lead = xa.shape[:len(batch)]
    tail = xa.shape[len(batch) + len(source):]
    nb, ns, nr = math.prod(lead), math.prod(sizes[s] for s in source), math.prod(tail)
    xa = xa.reshape((nb, ns, nr))
    ia = ia.reshape((nb, ns))
    # segment_sum drops indices outside [0, n), negative ones included
    y = jax.vmap(lambda xx, jj: jax.ops.segment_sum(xx, jj, num_segments=n))(xa, ia)
    names = tuple(batch) + (into,) + tuple(rest)
    v = _V(y.reshape(lead + (n,) + tail), names)
    order = ctx.order(names)
    return [_V(_transpose(v, order), order)]


@lowering("dispatch")
def dispatch(r, d, b, index, prefix, ins, ctx, req):
    *xs, idx = ins
    body = b.body
    ports = [t for p in body.inputs for t in flat_types(p.type)]
    outs_t = flat_types(body.output.type)
    # the positions: every axis of an input that is not the expert's own, and every axis of the index
    pos: list[str] = []
    for v, t in zip(xs, ports):
        pos.extend(n for n in v.names if t.axis(n) is None)
    pos.extend(idx.names + tuple(b.attr("index_axes", ())))
    pos = list(ctx.order(dict.fromkeys(pos)))
    sizes = {**ctx.sizes, **_sizes_of(ins)}
    for t in ports + outs_t + [r.out_type(d, b, j) for j in range(len(b.outputs))]:
        sizes.update(zip(t.names, r.sizes.shape(t)))
    shape = tuple(sizes[n] for n in pos)
    count = math.prod(shape)
    flat_xs = tuple(_full(v, pos + list(t.names), sizes).reshape((count,) + r.sizes.shape(t))
                    for v, t in zip(xs, ports))
    experts = _full(idx, pos, sizes).reshape((count,))
    own = f"{prefix}{b.name}."
    stacked = {k: w for k, w in r.weights.items() if k.startswith(own)}
    cap_names: dict[str, tuple] = {}

    def one(args):
        e, x_row, i = args
        weights = {k: w[e] for k, w in stacked.items()}  # this pair's expert's copy
        runner = type(r)(r.plan, {**r.weights, **weights})
        key = None
        if ctx.key is not None:  # a dropout mask of its own for every pair
            key = jax.random.fold_in(jax.random.fold_in(ctx.key, index), i)
        inner = _Ctx((), {}, ctx.training, key)
        outs, caps = runner.run(body, own, [_V(a, t.names) for a, t in zip(x_row, ports)], inner, req)
        for k, (_, names) in caps.items():
            cap_names[k] = names
        ys = tuple(_full(v, t.names, sizes).astype(_DTYPES[t.dtype]) for v, t in zip(outs, outs_t))
        return ys, {k: a for k, (a, _) in caps.items()}

    args = (experts, flat_xs, jnp.arange(count))
    per_pair = sum(math.prod(w.shape[1:]) for w in stacked.values())
    chunk = max(1, _GATHER_BUDGET // max(per_pair, 1))
    if count <= chunk:
        ys, caps = jax.vmap(one)(args)
    else:
        ys, caps = lax.map(one, args, batch_size=chunk)
    outs = [_V(y.reshape(shape + y.shape[1:]), tuple(pos) + t.names) for y, t in zip(ys, outs_t)]
    return outs, {k: (a.reshape(shape + a.shape[1:]), tuple(pos) + cap_names[k]) for k, a in caps.items()}
