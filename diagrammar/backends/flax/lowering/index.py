"""Backend flax, lowerings: sources (const, param) and integer indices in or out (arange, onehot, embed, gather, take)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from ....ir import eval_const, eval_whole
from ..values import _DTYPES, _V, _transpose
from . import lowering


@lowering("const")
def const(r, d, b, index, prefix, ins, ctx):
    dtype = r.out_type(d, b).dtype
    tree, bindings = b.attr("value"), r.sizes.bindings
    x = eval_whole(tree, bindings) if dtype == "int" else eval_const(tree, bindings)  # ints exactly
    return [_V(jnp.asarray(x, _DTYPES[dtype]), ())]


@lowering("param")
def param(r, d, b, index, prefix, ins, ctx):
    (w,) = b.weights
    return [_V(r.weight(prefix, b, w.name), w.type.names)]


@lowering("arange")
def arange(r, d, b, index, prefix, ins, ctx):
    n = r.sizes.shape(r.out_type(d, b))[0]
    return [_V(jnp.arange(n, dtype=jnp.int32), (b.attr("axis"),))]


@lowering("onehot")
def onehot(r, d, b, index, prefix, ins, ctx):
    (i,) = ins
    a = b.attr("axis")
    n = r.sizes(r.out_type(d, b).axis(a).size)
    if not r.plan.onehot_gather:
        return [_V(jax.nn.one_hot(i.a, n, dtype=jnp.float32), i.names + (a,))]
    return [_V(None, i.names + (a,), hot=(i.a, n))]  # lazy: see _V


@lowering("embed")
def embed(r, d, b, index, prefix, ins, ctx):
    (i,) = ins
    w = r.weight(prefix, b, "W")
    return [_V(jnp.take(w, i.a, axis=0), i.names + tuple(b.attr("out_axes")))]


@lowering("gather")
def gather(r, d, b, index, prefix, ins, ctx):
    x, i = ins
    along = b.attr("along")
    shared = [n for n in x.names if n != along and n in i.names]
    x_only = [n for n in x.names if n != along and n not in i.names]
    i_only = [n for n in i.names if n not in x.names]
    xa = _transpose(x, shared + x_only + [along])
    ia = _transpose(i, shared + i_only)
    lead = xa.shape[:len(shared)]
    s = math.prod(lead)
    xa = xa.reshape((s,) + xa.shape[len(shared):])
    ia = ia.reshape((s,) + ia.shape[len(shared):])
    y = jax.vmap(lambda xx, jj: jnp.take(xx, jj, axis=-1))(xa, ia)
    y = y.reshape(lead + y.shape[1:])
    names = tuple(shared + x_only + i_only)
    v = _V(y, names)
    order = ctx.order(names)
    return [_V(_transpose(v, order), order)]


@lowering("take")
def take(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    a = b.attr("axis")
    i = x.names.index(a)
    k = b.attr("index")
    if k < 0:
        k += x.a.shape[i]
    return [_V(lax.index_in_dim(x.a, k, axis=i, keepdims=False), x.names[:i] + x.names[i + 1:])]
