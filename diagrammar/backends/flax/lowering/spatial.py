"""Backend flax, lowerings: sliding windows over named axes (conv, pool)."""
from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from ..values import _V, _align, _transpose
from . import lowering


@lowering("conv")
def conv(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    over, out_over = list(b.attr("over")), list(b.attr("out_over"))
    cin, cout = b.attr("cin"), b.attr("cout")
    others = [n for n in x.names if n not in over and n != cin]
    a = _transpose(x, others + over + [cin])
    lead = a.shape[:len(others)]
    nd = len(over)
    a = a.reshape((math.prod(lead),) + a.shape[len(others):])
    w = r.weight(prefix, b, "W")
    spatial = tuple(range(1, nd + 1))
    dn = lax.ConvDimensionNumbers(lhs_spec=(0, nd + 1) + spatial, rhs_spec=(nd + 1, nd) + tuple(range(nd)),
                                  out_spec=(0, nd + 1) + spatial)
    y = lax.conv_general_dilated(a, w, window_strides=tuple(b.attr("stride")),
                                 padding=b.attr("padding").upper(), dimension_numbers=dn)
    y = y.reshape(lead + y.shape[1:])
    names = tuple(others + out_over + [cout])
    if b.attr("bias"):
        y = y + _align(_V(r.weight(prefix, b, "b"), (cout,)), names)
    return [_V(y, names)]


@lowering("pool")
def pool(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    over = list(b.attr("over"))
    table = dict(zip(over, b.attr("out_over")))
    window = dict(zip(over, b.attr("window")))
    stride = dict(zip(over, b.attr("stride")))
    dims = tuple(window.get(n, 1) for n in x.names)
    strides = tuple(stride.get(n, 1) for n in x.names)
    if b.attr("op") == "max":
        y = lax.reduce_window(x.a, -jnp.inf, lax.max, dims, strides, "VALID")
    else:
        y = lax.reduce_window(x.a, 0.0, lax.add, dims, strides, "VALID") / math.prod(dims)
    return [_V(y, tuple(table.get(n, n) for n in x.names))]
