"""Backend flax, lowerings: casts (`int(x)`, `float(x)`, `bool(x)`) and integer division (`//`, `%`).

`int` of a float truncates toward zero (XLA's convert, as C, NumPy and
`torch.Tensor.int()`); `//` and `%` floor as Python does
(`jnp.floor_divide`, `jnp.remainder`: the remainder takes the divisor's sign).
"""
from __future__ import annotations

import jax.numpy as jnp

from ..values import _DTYPES, _V
from . import lowering
from .elementwise import _binary


@lowering("int", "float", "bool")
def cast(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    a = x.a
    if b.op == "bool":
        a = a if a.dtype == jnp.bool_ else a != 0
    else:
        a = a.astype(_DTYPES[b.op])
    return [_V(a, x.names)]


lowering("floordiv")(_binary(jnp.floor_divide))
lowering("mod")(_binary(jnp.remainder))
