"""Backend flax, lowerings: erf, sin, cos and both forms of gelu (v1).

`gelu` is `jax.nn.gelu`'s tanh approximation by default, as in v0;
`approximate = false` is the exact 0.5·x·(1 + erf(x/√2)), PyTorch's default, written
as that formula with `lax.erf` (as PyTorch computes it, and as the cost rule counts it:
`jax.nn.gelu(approximate=False)` goes through erfc and costs XLA about 16 times more).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from . import lowering
from .elementwise import _unary

for _name, _fn in (("erf", jax.scipy.special.erf), ("sin", jnp.sin), ("cos", jnp.cos)):
    lowering(_name)(_unary(_fn))


def _gelu_exact(x):
    return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


@lowering("gelu")
def gelu(r, d, b, index, prefix, ins, ctx):
    fn = functools.partial(jax.nn.gelu, approximate=True) if b.attr("approximate", True) else _gelu_exact
    return _unary(fn)(r, d, b, index, prefix, ins, ctx)
