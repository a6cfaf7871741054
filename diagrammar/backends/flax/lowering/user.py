"""Backend flax, lowerings: operations registered from Python (`ops.register_operation`).

The registered `lower` function sees plain arrays laid out as the types are
written. This rule broadcasts each input over the batch axes any of them
carries, flattens those axes into one and `jax.vmap`s the function over it,
so the function never sees a batch axis. A `lower` with a parameter named
`axes` also gets the axis names of each input (a tuple per input), for work
that depends on where an axis is.
"""
from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp

from ....ops import Operation
from ..values import _DTYPES, _V, _full, _sizes_of


def lowering_for(op: Operation):
    """The lowering of one registered operation (ops.bind_table puts it in LOWERING)."""
    try:
        wants_axes = "axes" in inspect.signature(op.lower).parameters
    except (TypeError, ValueError):  # no signature to read (some builtins)
        wants_axes = False

    def registered(r, d, b, index, prefix, ins, ctx):
        in_types = [d.wire(w).type for w in b.inputs]
        out_t = r.out_type(d, b)
        extras: list[str] = []
        for v, t in zip(ins, in_types):
            extras += [n for n in v.names if n not in t.names and n not in extras]
        extras = list(ctx.order(extras))
        sizes = _sizes_of(ins)
        arrays = [_full(v, tuple(extras) + t.names, sizes) for v, t in zip(ins, in_types)]
        lead = tuple(sizes[n] for n in extras)
        kw = dict(b.attrs)
        if wants_axes:
            kw["axes"] = tuple(t.names for t in in_types)
        fn = functools.partial(op.lower, **kw) if kw else op.lower
        if extras:
            y = jax.vmap(fn)(*[a.reshape((-1,) + a.shape[len(extras):]) for a in arrays])
            y = jnp.reshape(y, lead + jnp.shape(y)[1:])
        else:
            y = jnp.asarray(fn(*arrays))
        want = lead + r.sizes.shape(out_t)
        if tuple(y.shape) != want:
            raise ValueError(f"{op.name}'s lowering gave an array of shape {tuple(y.shape)[len(lead):]}, but its "
                             f"result {out_t} has the shape {want[len(lead):]} (box {prefix}{b.name})")
        return [_V(y.astype(_DTYPES[out_t.dtype]), tuple(extras) + out_t.names)]
    return registered
