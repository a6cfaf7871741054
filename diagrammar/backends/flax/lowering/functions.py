"""Backend flax, lowerings: erf, sin, cos and both forms of gelu (v1).

`gelu` is `jax.nn.gelu`: the tanh approximation by default, as in v0;
`approximate = false` is the exact 0.5·x·(1 + erf(x/√2)), PyTorch's default.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from . import lowering
from .elementwise import _unary

for _name, _fn in (("erf", jax.scipy.special.erf), ("sin", jnp.sin), ("cos", jnp.cos)):
    lowering(_name)(_unary(_fn))


@lowering("gelu")
def gelu(r, d, b, index, prefix, ins, ctx):
    fn = functools.partial(jax.nn.gelu, approximate=bool(b.attr("approximate", True)))
    return _unary(fn)(r, d, b, index, prefix, ins, ctx)
