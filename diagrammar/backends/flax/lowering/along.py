"""Backend flax, lowerings: operations along named axes (reductions, normalisations, argmax, causal)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ..values import _DTYPES, _V, _align
from . import lowering


def _reduction(fn):
    """The lowering of a reduction that `fn(array, axis=...)` computes."""
    def reduce(r, d, b, index, prefix, ins, ctx):
        (x,) = ins
        over = b.attr("over")
        out_t = r.out_type(d, b)
        a = x.a.astype(_DTYPES[out_t.dtype])
        axis = tuple(x.names.index(n) for n in over)
        return [_V(fn(a, axis=axis), tuple(n for n in x.names if n not in over))]
    return reduce


for _name, _fn in (("sum", jnp.sum), ("mean", jnp.mean), ("max", jnp.max), ("min", jnp.min),
                   ("logsumexp", jax.nn.logsumexp)):
    lowering(_name)(_reduction(_fn))


@lowering("softmax", "log_softmax")
def softmax(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    axis = tuple(x.names.index(n) for n in b.attr("over"))
    fn = jax.nn.softmax if b.op == "softmax" else jax.nn.log_softmax
    return [_V(fn(x.a, axis=axis), x.names)]


@lowering("layernorm", "rmsnorm")
def norm(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    over = b.attr("over")
    axis = tuple(x.names.index(n) for n in over)
    eps = b.attr("eps")
    if b.op == "layernorm":
        mean = jnp.mean(x.a, axis=axis, keepdims=True)
        xc = x.a - mean
        y = xc * lax.rsqrt(jnp.mean(jnp.square(xc), axis=axis, keepdims=True) + eps)
    else:
        y = x.a * lax.rsqrt(jnp.mean(jnp.square(x.a), axis=axis, keepdims=True) + eps)
    y = y * _align(_V(r.weight(prefix, b, "scale"), over), x.names)
    if b.op == "layernorm":
        y = y + _align(_V(r.weight(prefix, b, "bias"), over), x.names)
    return [_V(y, x.names)]


@lowering("argmax")
def argmax(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    (a,) = b.attr("over")
    i = x.names.index(a)
    return [_V(jnp.argmax(x.a, axis=i).astype(jnp.int32), x.names[:i] + x.names[i + 1:])]


@lowering("causal")
def causal(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    query = dict(b.attr("pass", ())).get("take_early")
    if query is not None:  # passes/take_early.py took one query position: mask the keys after it
        ki = lax.broadcasted_iota(jnp.int32, x.a.shape, x.names.index(b.attr("k")))
        return [_V(jnp.where(ki > query, -jnp.inf, x.a), x.names)]
    qi = lax.broadcasted_iota(jnp.int32, x.a.shape, x.names.index(b.attr("q")))
    ki = lax.broadcasted_iota(jnp.int32, x.a.shape, x.names.index(b.attr("k")))
    return [_V(jnp.where(ki > qi, -jnp.inf, x.a), x.names)]
