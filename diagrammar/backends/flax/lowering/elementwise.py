"""Backend flax, lowerings: element-wise operations (unary functions, arithmetic, comparisons, select) and dropout.

Operands align by name (`values._align`: a transpose plus size-1 axes), never
by NumPy's implicit rank promotion.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ....ops import COMPARISONS
from ..values import _DTYPES, _V, _align, _union
from . import lowering

_RANK = {"bool": 0, "int": 1, "float": 2}


def _unary(fn):
    """The lowering of a unary operation that `fn` computes."""
    def unary(r, d, b, index, prefix, ins, ctx):
        x = ins[0]
        dt = _DTYPES[r.out_type(d, b).dtype]
        a = x.a.astype(jnp.int32 if b.op == "neg" and x.a.dtype == jnp.bool_ else dt)
        return [_V(fn(a).astype(dt), x.names)]
    return unary


# gelu (tanh form, or exact with approximate = false), erf, sin, cos and the casts: lowering/functions.py
for _name, _fn in (("relu", jax.nn.relu), ("silu", jax.nn.silu), ("tanh", jnp.tanh),
                   ("sigmoid", jax.nn.sigmoid), ("softplus", jax.nn.softplus), ("exp", jnp.exp), ("log", jnp.log),
                   ("sqrt", jnp.sqrt), ("abs", jnp.abs), ("square", jnp.square), ("neg", jnp.negative)):
    lowering(_name)(_unary(_fn))


def _binary(fn):
    """The lowering of a binary operation that `fn` computes on aligned operands."""
    def binary(r, d, b, index, prefix, ins, ctx):
        out_t = r.out_type(d, b)
        names = ctx.order(_union(ins))
        if b.op in COMPARISONS:  # compared in the wider of the operands' dtypes
            ta, tb = (d.wire(w).type.dtype for w in b.inputs)
            dt = _DTYPES[ta if _RANK[ta] >= _RANK[tb] else tb]
        else:
            dt = _DTYPES[out_t.dtype]
        x, y = (_align(v, names).astype(dt) for v in ins)
        return [_V(fn(x, y).astype(_DTYPES[out_t.dtype]), names)]
    return binary


for _name, _fn in (("add", jnp.add), ("sub", jnp.subtract), ("mul", jnp.multiply), ("div", jnp.divide),
                   ("maximum", jnp.maximum), ("minimum", jnp.minimum), ("lt", jnp.less), ("le", jnp.less_equal),
                   ("gt", jnp.greater), ("ge", jnp.greater_equal), ("eq", jnp.equal)):
    lowering(_name)(_binary(_fn))


@lowering("where")
def where(r, d, b, index, prefix, ins, ctx):
    names = ctx.order(_union(ins))
    dt = _DTYPES[r.out_type(d, b).dtype]
    cond, x, y = ins
    return [_V(jnp.where(_align(cond, names), _align(x, names).astype(dt), _align(y, names).astype(dt)), names)]


@lowering("dropout")
def dropout(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    rate = b.attr("rate")
    if not ctx.training or rate == 0.0 or ctx.key is None:
        return [x]
    keep = 1.0 - rate
    mask = jax.random.bernoulli(jax.random.fold_in(ctx.key, index), keep, x.a.shape)
    return [_V(jnp.where(mask, x.a / keep, 0.0), x.names)]
