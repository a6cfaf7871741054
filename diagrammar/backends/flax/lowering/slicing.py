"""Backend flax, lowerings: a range of positions along one axis (`slice`) and constant tensors (`full`).

The bounds were checked before this runs: by the checker, or when the free
sizes were bound (`diagrammar.bounds`).
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from ....ir import eval_const, eval_whole
from ..values import _V
from . import lowering


@lowering("slice")
def slice_(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    a, dst = b.attr("axis"), b.attr("dst")
    i = x.names.index(a)
    n = r.sizes(r.out_type(d, b).axis(dst).size)
    start = eval_whole(b.attr("start"), r.sizes.bindings)
    s = start if start >= 0 else x.a.shape[i] + start  # a negative start counts from the end
    return [_V(lax.slice_in_dim(x.a, s, s + n, axis=i), x.names[:i] + (dst,) + x.names[i + 1:])]


@lowering("full")
def full(r, d, b, index, prefix, ins, ctx):
    # no batch axes: a value made from no input is made once per call
    t = r.out_type(d, b)
    value = eval_const(b.attr("value"), r.sizes.bindings)
    return [_V(jnp.full(r.sizes.shape(t), value, jnp.float32), t.names)]
