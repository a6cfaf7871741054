"""Backend flax, lowerings: batch normalisation with running statistics (batchnorm).

Training (the module's `deterministic` flag clear, as for dropout): the batch
mean and biased variance over the `over` axes and every axis the box is
broadcast over (the batch axes of the module's inputs, the extra axes of
enclosing broadcast calls); the new running statistics go to `r.updates`,
which the module writes back into its `nnx.BatchStat`s after the call:

    running_mean <- momentum * running_mean + (1 - momentum) * mean
    running_var  <- momentum * running_var + (1 - momentum) * var * N / (N - 1)

(N values per feature: PyTorch's unbiased running variance). Eval: the
running statistics instead of the batch's.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..values import _V, _full
from . import lowering


@lowering("batchnorm")
def batchnorm(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    t = r.out_type(d, b)
    over = list(b.attr("over"))
    features = [n for n in t.names if n not in over]
    lead = [n for n in ctx.batch if n in x.names]
    names = tuple(lead + over + features)
    sizes = dict(ctx.sizes)
    sizes.update(zip(t.names, r.sizes.shape(t)))
    a = _full(x, names, sizes)
    reduce = tuple(range(len(lead) + len(over)))

    def per_feature(w):  # a [features] array aligned with a (no implicit rank promotion)
        return jnp.reshape(w, (1,) * len(reduce) + w.shape)

    scale, bias = per_feature(r.weight(prefix, b, "scale")), per_feature(r.weight(prefix, b, "bias"))
    eps = b.attr("eps")
    if not ctx.training:
        mean, var = per_feature(r.weight(prefix, b, "running_mean")), per_feature(r.weight(prefix, b, "running_var"))
        return [_V((a - mean) * jax.lax.rsqrt(var + eps) * scale + bias, names)]
    # N counts every axis the box is broadcast over, also those x does not vary along (a value made
    # from weights alone is the same for every example: its statistics are those of the whole batch)
    count = math.prod(sizes[n] for n in over) * math.prod(ctx.sizes[n] for n in ctx.batch)
    if count < 2:
        raise ValueError(f"batchnorm {prefix}{b.name} is training on 1 value per feature; its variance is "
                         "undefined (PyTorch refuses this too). Train with a batch of 2 or more, or call "
                         "model.eval() to use the running statistics")
    mean = jnp.mean(a, axis=reduce, keepdims=True)
    var = jnp.mean(jnp.square(a - mean), axis=reduce, keepdims=True)
    y = (a - mean) * jax.lax.rsqrt(var + eps) * scale + bias
    m = b.attr("momentum")
    shape = r.sizes.shape(b.weights[0].type)
    stat_mean = jnp.reshape(jax.lax.stop_gradient(mean), shape)
    stat_var = jnp.reshape(jax.lax.stop_gradient(var), shape)
    key = f"{prefix}{b.name}."
    r.updates[key + "running_mean"] = m * r.weight(prefix, b, "running_mean") + (1 - m) * stat_mean
    r.updates[key + "running_var"] = (m * r.weight(prefix, b, "running_var")
                                      + (1 - m) * stat_var * (count / (count - 1)))
    return [_V(y, names)]
