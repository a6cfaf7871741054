"""Backend: a typed diagram compiled to a trainable `flax.nnx.Module`.

This is the only package of diagrammar's front end and backends that imports
jax or flax. It reads the frozen IR (`diagrammar.ir`) and never re-derives a
type: every size comes from the IR's wires and weights, evaluated with the
sizes bound at compile time.

How it runs. Every value is kept as an array together with the names of its
axes, in the array's memory order. Element-wise operations align their operands
by name (a transpose plus size-1 axes, never NumPy's implicit rank promotion).
`linear` is one 2-D matrix product, as in a hand-written `nnx.Linear` (input
axes moved last and flattened, weights `[IN..., OUT...]` read by position, so a
square map `d -> d` is no special case); `dot` and `einsum` become `jnp.einsum`
with one letter per axis name. A `onehot` stays lazy (its indices) while it
is only stacked, and a `linear` of it gathers the weight rows the indices
pick (a scatter-add backward) instead of multiplying by mostly-zero rows;
`compile(..., onehot_gather=False)` keeps the literal product. Axes that the circuit is
broadcast over (the leading batch axes of the inputs, and the extra axes of a
broadcast circuit call or scan step) get internal names starting with `#`,
which no circuit can spell, and stay first in memory.

Choices this backend makes where the language leaves them open:
  - Weights are `nnx.Param`s at the IR's dotted names: `model.h.W`,
    `model.attention.q.W`, `model.pos_embed`. Each array is laid out in the
    order of its weight type's axes (`linear`: input axes, then output axes).
    A box name that clashes with an `nnx.Module` attribute (`train`, `eval`,
    ...) or starts with `_` gets a trailing `_` as its attribute name.
  - `repeat N` keeps one set of weights per copy, stacked on a leading copy
    axis (`model.repeat.x.W` has shape `[N, ...]`; nested repeats add one
    leading axis each, outermost first) and runs the copies with
    `jax.lax.scan`. `scan` runs `jax.lax.scan` along its axis with the step's
    weights shared by all steps. `compile(..., remat=True)` rematerialises
    every scan step (`jax.checkpoint`): the backward pass recomputes a step
    instead of stacking its intermediates for every step, which pays when they
    dwarf its state (a pointer network's `[n, att]` attention: 3-4x faster
    training on CPU at n = 50); it is off by default (a plain LSTM step trains
    about 20% slower with it).
  - Initialisers: `lecun` is flax's `lecun_normal` (a normal truncated at two
    standard deviations, rescaled to variance 1/fan_in; fan_in is the product
    of the sizes of `Init.fan_in`), `glorot` is flax's `glorot_uniform`
    (uniform with variance 2/(fan_in + fan_out); a weight with one axis uses
    fan_out = fan_in), `embed` is flax's `nnx.Embed` default (normal, std
    1/sqrt(product of the output axes)), `normal(std)` and `uniform(lo, hi)`
    are plain.
  - `gelu` is `jax.nn.gelu` (tanh approximation, as `nnx.gelu`); `layernorm`
    divides by sqrt(var + eps) with the variance of the centred values.
  - `embed` and `gather` index as `jnp.take` does (the default of
    `nnx.Embed`: an index out of range gives NaN); `onehot` of an index out of
    range is all zeros.
  - batchnorm's `running_mean` and `running_var` are `nnx.BatchStat`s at the
    box's dotted names (`model.weight("bn1.running_mean")`), beside its
    `nnx.Param`s `scale` and `bias`. In training mode (as for dropout) a call
    writes their new values after the forward pass; a `repeat` gives them one
    row per copy, like its weights. Every padding is lowered as explicit (lo, hi)
    pairs, a grouped conv as `feature_group_count` and `conv_transpose` as a conv
    of the stride-dilated input with the kernel flipped (PyTorch's ConvTranspose).
  - Dropout follows `nnx.Dropout`: a new module is in training mode (dropout
    active); `model.eval()` turns it off and `model.train()` back on. Masks
    come from the `dropout` stream of the `nnx.Rngs` given at compile time
    (the `default` stream if there is none): one key per call, folded with
    each box's position and each repeat/scan iteration.

Where the code lives:
  module.py     compile time (sizes, weights, initialisers), `CompiledCircuit`
                and `compile_diagram`, the inputs and outputs of a call
  runner.py     the interpreter: each box by its rule in `LOWERING`
  values.py     named values and the context a diagram runs in
  sharding.py   a mesh: weights created sharded, activations constrained by axis name
                (`compile(..., mesh=, shard=, batch=)`; docs/sharding.md)
  lowering/     the lowering of every operation by family, in one table `LOWERING`
"""
from .lowering import LOWERING as LOWERING
from .module import DEFAULT_MAX_WEIGHT_ELEMENTS as DEFAULT_MAX_WEIGHT_ELEMENTS
from .module import CompiledCircuit as CompiledCircuit
from .module import compile_diagram as compile_diagram

__all__ = ["DEFAULT_MAX_WEIGHT_ELEMENTS", "LOWERING", "CompiledCircuit", "compile_diagram"]
