"""Backend flax, lowerings: axes renamed, merged, split, stacked and joined (no arithmetic)."""
from __future__ import annotations

import math

import jax.numpy as jnp

from ..values import _V, _full, _sizes_of, _transpose, _union
from . import lowering


@lowering("rename")
def rename(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    table = dict(zip(b.attr("src"), b.attr("dst")))
    return [_V(x.a, tuple(table.get(n, n) for n in x.names))]


@lowering("merge")
def merge(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    src, dst = list(b.attr("src")), b.attr("dst")
    first = min(x.names.index(n) for n in src)
    before = [n for n in x.names[:first] if n not in src]
    after = [n for n in x.names[first:] if n not in src]
    a = _transpose(x, before + src + after)
    shape = a.shape
    nb = len(before)
    merged = math.prod(shape[nb:nb + len(src)])
    a = a.reshape(shape[:nb] + (merged,) + shape[nb + len(src):])
    return [_V(a, tuple(before) + (dst,) + tuple(after))]


@lowering("split")
def split(r, d, b, index, prefix, ins, ctx):
    (x,) = ins
    src, dst = b.attr("src"), b.attr("dst")
    i = x.names.index(src)
    t = r.out_type(d, b)
    parts = tuple(r.sizes(t.axis(n).size) for n in dst)
    a = x.a.reshape(x.a.shape[:i] + parts + x.a.shape[i + 1:])
    return [_V(a, x.names[:i] + tuple(dst) + x.names[i + 1:])]


@lowering("stack")
def stack(r, d, b, index, prefix, ins, ctx):
    if all(v.hot is not None for v in ins) and len({(v.names[-1], v.hot[1]) for v in ins}) == 1:
        # one-hots of one axis stack as their indices, and stay lazy
        axis, n = ins[0].names[-1], ins[0].hot[1]
        (idx,) = stack(r, d, b, index, prefix, [_V(v.hot[0], v.names[:-1]) for v in ins], ctx)
        return [_V(None, idx.names + (axis,), hot=(idx.a, n))]
    names = list(ctx.order(_union(ins)))
    sizes = _sizes_of(ins)
    pos = sum(1 for n in names if n in ctx.batch)  # the new axis goes right after the batch axes
    arrays = [_full(v, names, sizes) for v in ins]
    return [_V(jnp.stack(arrays, axis=pos), tuple(names[:pos]) + (b.attr("along"),) + tuple(names[pos:]))]


@lowering("concat")
def concat(r, d, b, index, prefix, ins, ctx):
    along, dst = b.attr("along"), b.attr("dst")
    renamed = [_V(v.a, tuple(dst if n == a else n for n in v.names)) for v, a in zip(ins, along)]
    rest = list(ctx.order([n for n in _union(renamed) if n != dst]))
    pos = sum(1 for n in rest if n in ctx.batch)
    names = rest[:pos] + [dst] + rest[pos:]
    sizes = _sizes_of(renamed)
    arrays = []
    for v in renamed:
        sizes[dst] = v.size(dst)
        arrays.append(_full(v, names, sizes))
    return [_V(jnp.concatenate(arrays, axis=pos), tuple(names))]
