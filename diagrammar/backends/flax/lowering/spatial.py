"""Backend flax, lowerings: sliding windows and padding over named axes (conv, conv_transpose, pool, pad).

Every padding is lowered as explicit (lo, hi) pairs; `same` becomes XLA's
SAME pairs for the compiled sizes (at stride 1 PyTorch's `padding='same'`).
A grouped conv is XLA's `feature_group_count`; a transposed conv is a conv of
the input dilated by the stride with the kernel flipped, which computes
PyTorch's ConvTranspose `full[i*s + t] += x[i] * W[t]` exactly.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from ....errors import SizeConflict
from ..values import _DTYPES, _V, _align, _transpose
from . import lowering


def _pairs(b, x: _V, over) -> list[tuple[int, int]]:
    """The (lo, hi) pair of each spatial axis, for the sizes this module was compiled with."""
    padding = b.attr("padding", "valid")
    if padding == "valid":
        return [(0, 0)] * len(over)
    if padding != "same":
        return [tuple(p) for p in padding]
    out = []
    dilation = b.attr("dilation") or (1,) * len(over)
    for name, k, s, d in zip(over, b.attr("kernel"), b.attr("stride"), dilation):
        n = x.size(name)
        reach = d * (k - 1) + 1
        total = max((-(-n // s) - 1) * s + reach - n, 0)
        out.append((total // 2, total - total // 2))
    return out


def _channels_last(x: _V, over, cin):
    """x as [lead, over..., cin] with every other axis flattened into lead, and those axes."""
    others = [n for n in x.names if n not in over and n != cin]
    a = _transpose(x, others + list(over) + [cin])
    lead = a.shape[:len(others)]
    return a.reshape((math.prod(lead),) + a.shape[len(others):]), others, lead


def _numbers(nd: int):
    spatial = tuple(range(1, nd + 1))
    return lax.ConvDimensionNumbers(lhs_spec=(0, nd + 1) + spatial, rhs_spec=(nd + 1, nd) + tuple(range(nd)),
                                    out_spec=(0, nd + 1) + spatial)


def _finish(r, b, prefix, y, lead, others, out_over, cout):
    y = y.reshape(lead + y.shape[1:])
    names = tuple(others + list(out_over) + [cout])
    if b.attr("bias"):
        y = y + _align(_V(r.weight(prefix, b, "b"), (cout,)), names)
    return [_V(y, names)]


@lowering("conv")
def conv(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    over, out_over = list(b.attr("over")), list(b.attr("out_over"))
    cin, cout = b.attr("cin"), b.attr("cout")
    groups = b.attr("groups", 1)
    if groups > 1:
        for name in (cin, cout):
            size = x.size(cin) if name == cin else r.sizes(r.out_type(d, b).axis(cout).size)
            if size % groups:
                raise SizeConflict(f"conv {b.name}: groups = {groups} does not divide {name} ({size})", b.span)
    pairs = _pairs(b, x, over)
    a, others, lead = _channels_last(x, over, cin)
    w = r.weight(prefix, b, "W")
    y = lax.conv_general_dilated(a, w, window_strides=tuple(b.attr("stride")), padding=pairs,
                                 rhs_dilation=tuple(b.attr("dilation") or (1,) * len(over)),
                                 feature_group_count=groups, dimension_numbers=_numbers(len(over)))
    return _finish(r, b, prefix, y, lead, others, out_over, cout)


@lowering("conv_transpose")
def conv_transpose(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    over, out_over = list(b.attr("over")), list(b.attr("out_over"))
    cin, cout = b.attr("cin"), b.attr("cout")
    nd = len(over)
    a, others, lead = _channels_last(x, over, cin)
    w = jnp.flip(r.weight(prefix, b, "W"), axis=tuple(range(nd)))
    # full has (n - 1)*s + k positions: the dilated input padded by k - 1 on both sides, convolved with the
    # flipped kernel; the padding pair crops it and output_padding adds zeros past its end
    pads, crop = [], []
    for (lo, hi), k, extra in zip(b.attr("padding"), b.attr("kernel"), b.attr("output_padding")):
        want_lo, want_hi = k - 1 - lo, k - 1 - hi + extra
        pads.append((max(want_lo, 0), max(want_hi, 0)))
        crop.append((max(-want_lo, 0), max(-want_hi, 0)))
    y = lax.conv_general_dilated(a, w, window_strides=(1,) * nd, padding=pads,
                                 lhs_dilation=tuple(b.attr("stride")), dimension_numbers=_numbers(nd))
    if any(lo or hi for lo, hi in crop):
        y = y[(slice(None),) + tuple(slice(lo, y.shape[1 + i] - hi) for i, (lo, hi) in enumerate(crop))]
    return _finish(r, b, prefix, y, lead, others, out_over, cout)


@lowering("pool")
def pool(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    over = list(b.attr("over"))
    table = dict(zip(over, b.attr("out_over")))
    window = dict(zip(over, b.attr("window")))
    stride = dict(zip(over, b.attr("stride")))
    pairs = dict(zip(over, b.attr("padding", ((0, 0),) * len(over))))
    dims = tuple(window.get(n, 1) for n in x.names)
    strides = tuple(stride.get(n, 1) for n in x.names)
    padding = tuple(tuple(pairs.get(n, (0, 0))) for n in x.names)
    if b.attr("padding") is None:
        padding = "VALID"  # v0's call, unchanged
    # max pads with -inf; mean pads with 0 and divides by the whole window (count_include_pad=True)
    if b.attr("op") == "max":
        y = lax.reduce_window(x.a, -jnp.inf, lax.max, dims, strides, padding)
    else:
        y = lax.reduce_window(x.a, 0.0, lax.add, dims, strides, padding) / math.prod(dims)
    return [_V(y, tuple(table.get(n, n) for n in x.names))]


@lowering("pad")
def pad(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    over = list(b.attr("over"))
    table = dict(zip(over, b.attr("out_over")))
    pairs = dict(zip(over, b.attr("padding")))
    dtype = _DTYPES[r.out_type(d, b).dtype]
    value = b.attr("value")
    a = x.a.astype(dtype)
    y = jnp.pad(a, [tuple(pairs.get(n, (0, 0))) for n in x.names],
                constant_values=jnp.asarray(value if dtype == jnp.float32 else int(value), dtype))
    return [_V(y, tuple(table.get(n, n) for n in x.names))]
