"""Backend flax, lowerings: linear maps and contractions (linear, dot, einsum)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from ..values import _V, _align, _einsum, _transpose, _union
from . import lowering


@lowering("linear")
def linear(r, d, b, index, prefix, ins, ctx):
    fused = dict(b.attr("pass", ())).get("fuse_siblings")
    if fused is not None:
        return (_fused_linear if fused[0] == "lead" else _part_of_fused)(r, b, fused, prefix, ins, ctx)
    (x,) = ins
    in_axes, out_axes = b.attr("in_axes"), b.attr("out_axes")
    keep = list(ctx.order([n for n in x.names if n not in in_axes]))
    names = tuple(keep) + tuple(out_axes)
    w = r.weight(prefix, b, "W")
    if x.hot is not None and x.names[-1] in in_axes:
        y = _linear_of_onehot(x, list(in_axes), keep, w)
        if b.attr("bias"):
            y = y + _align(_V(r.weight(prefix, b, "b"), out_axes), names)
        return [_V(y, names)]
    # One 2-D matrix product, as a hand-written nnx.Linear does: with the input axes last and
    # flattened, XLA picks the same GEMMs (and the same weight-gradient orientation) for both.
    a = _transpose(x, keep + list(in_axes))
    lead = a.shape[:len(keep)]
    k = math.prod(a.shape[len(keep):])
    out_shape = w.shape[len(in_axes):]
    a = a.reshape(lead + (k,))
    y = _matmul(a, w.reshape((k, math.prod(out_shape))))
    y = y.reshape(lead + out_shape)
    if b.attr("bias"):
        y = y + _align(_V(r.weight(prefix, b, "b"), out_axes), names)
    return [_V(y, names)]


def _linear_of_onehot(x: _V, in_axes: list[str], keep: list[str], w):
    """`linear` of a lazy one-hot: gather the weight rows its indices pick and add them up.

    With the one-hot axis `p` and the other contracted axes `c` (e.g. `arg`
    in ModAddMLP), `y[..., o] = sum_c W[c, i[..., c], o]`. An index outside
    0..p-1 picks nothing, as its all-zero one-hot row would.
    """
    hot_axis = x.names[-1]
    indices, n = x.hot
    others = [a for a in in_axes if a != hot_axis]
    perm = [in_axes.index(a) for a in others] + [in_axes.index(hot_axis)]
    out_shape = w.shape[len(in_axes):]
    w = jnp.transpose(w, perm + list(range(len(in_axes), w.ndim)))
    c = math.prod(w.shape[:len(others)])
    blocks = w.reshape((c, n, math.prod(out_shape)))
    i = _transpose(_V(indices, x.names[:-1]), keep + others)
    lead = i.shape[:len(keep)]
    i = i.reshape(lead + (c,)).astype(jnp.int32)
    i = jnp.where((i >= 0) & (i < n), i, n)  # jnp.take would wrap a negative index; n picks the zero fill
    if c <= _MAX_GATHER_SLOTS:
        y = _gather_rows_sum(blocks, i)
    else:  # one gather over all slots, row j * n + i of the stacked blocks
        offsets = (jnp.arange(c, dtype=jnp.int32) * n).reshape((1,) * len(lead) + (c,))
        flat = jnp.where(i < n, offsets + i, c * n)
        y = jnp.take(blocks.reshape((c * n, -1)), flat, axis=0, mode="fill", fill_value=0).sum(axis=-2)
    return y.reshape(lead + out_shape)


@lowering("dot")
def dot(r, d, b, index, prefix, ins, ctx):
    x, y = ins
    over = set(b.attr("over"))
    if dict(b.attr("pass", ())).get("multiply_sum"):
        return [_multiply_sum(x, y, over, ctx)]
    names = ctx.order([n for n in _union(ins) if n not in over])
    return [_V(_einsum([(x.a, x.names), (y.a, y.names)], names), names)]


@lowering("einsum")
def einsum(r, d, b, index, prefix, ins, ctx):
    present = _union(ins)
    names = ctx.order([n for n in ctx.batch if n in present] + list(b.attr("result")))
    if len(ins) == 2 and dict(b.attr("pass", ())).get("multiply_sum"):
        return [_multiply_sum(*ins, set(present) - set(names), ctx)]
    return [_V(_einsum([(v.a, v.names) for v in ins], names), names)]


def _fused_linear(r, b, fused, prefix, ins, ctx):
    """The lead of a group of sibling linear maps (passes/fuse_siblings.py): one product with every
    member's weights side by side; returns its own output and the fused wire the others slice."""
    (x,) = ins
    in_axes = list(b.attr("in_axes"))
    keep = list(ctx.order([n for n in x.names if n not in in_axes]))
    members = fused[1]
    ws, biases, widths = [], [], []
    for name, out_axes, has_bias in members:
        w = r.weights[f"{prefix}{name}.W"]
        k = math.prod(w.shape[:len(in_axes)])
        widths.append(w.size // k)
        ws.append(w.reshape((k, widths[-1])))
        biases.append(r.weights[f"{prefix}{name}.b"].reshape(-1) if has_bias else jnp.zeros((widths[-1],), w.dtype))
    w = jnp.concatenate(ws, axis=1)
    if x.hot is not None and x.names[-1] in in_axes:
        in_shape = r.weights[f"{prefix}{members[0][0]}.W"].shape[:len(in_axes)]
        y = _linear_of_onehot(x, in_axes, keep, w.reshape(in_shape + (w.shape[1],)))
    else:
        a = _transpose(x, keep + in_axes)
        lead = a.shape[:len(keep)]
        y = _matmul(a.reshape(lead + (w.shape[0],)), w)
    if any(has_bias for _, _, has_bias in members):
        y = y + jnp.concatenate(biases)
    whole = _V(y, tuple(keep) + (f"#fused:{'+'.join(m[0] for m in members)}",))
    own_out = r.weights[f"{prefix}{b.name}.W"].shape[len(in_axes):]
    return [_V(y[..., :widths[0]].reshape(y.shape[:-1] + own_out), tuple(keep) + tuple(members[0][1])), whole]


def _part_of_fused(r, b, fused, prefix, ins, ctx):
    """A member of a fused group other than its lead: its columns of the fused product."""
    (whole,) = ins
    _, _, offset, width = fused
    offset, width = r.sizes(offset), r.sizes(width)
    w = r.weights[f"{prefix}{b.name}.W"]
    out_shape = w.shape[w.ndim - len(b.attr("out_axes")):]
    y = whole.a[..., offset:offset + width]
    return [_V(y.reshape(y.shape[:-1] + out_shape), whole.names[:-1] + tuple(b.attr("out_axes")))]


def _merged_order(first: tuple, second: tuple) -> list:
    """The names of both, each in its own order where the two agree: `second`'s own names go just
    before the next name it shares with `first` (so `[b, q, h, d]` and `[b, k, h, d]` give
    `[b, q, k, h, d]`, and neither needs a transpose to be broadcast to it)."""
    out = list(first)
    at = 0
    for n in second:
        if n in out:
            at = out.index(n) + 1
        else:
            out.insert(at, n)
            at += 1
    return out


def _multiply_sum(x: _V, y: _V, over: set, ctx) -> _V:
    """A contraction of tiny matrices (passes/multiply_sum.py): broadcast product, then a sum over `over`.

    The product is laid out in the order the operands already have (batch axes first), so broadcasting
    them is a reshape, and the result keeps that order without the contracted axes."""
    full = list(ctx.order(_merged_order(x.names, y.names)))
    product = _align(x, full) * _align(y, full)
    summed = tuple(i for i, n in enumerate(full) if n in over)
    return _V(jnp.sum(product, axis=summed), tuple(n for n in full if n not in over))


def _dims(x) -> tuple:
    return (((x.ndim - 1,), (0,)), ((), ()))


@jax.custom_jvp
def _matmul(x, w):
    """`x @ w` over x's last axis, with a backward pass that computes dW before dX.

    The two backward products are independent, so XLA's CPU runtime may run them
    at the same time, each asking for every core; which one it starts first
    depends on incidental things such as the order of the weights' names (a
    layer whose weights are `W, b` got a 30% slower step than the same layer
    with `kernel, bias`). An optimisation barrier in the tangent rule orders
    them (dW, then dX) so the step time no longer depends on luck. Defined as a
    custom JVP, not a custom VJP, so forward-mode and higher-order derivatives
    still work.
    """
    return lax.dot_general(x, w, _dims(x))


def _matmul_jvp(primals, tangents):
    x, w = primals
    dx, dw = tangents
    y = lax.dot_general(x, w, _dims(x))
    zero_x, zero_w = type(dx) is SymbolicZero, type(dw) is SymbolicZero
    if zero_x and zero_w:
        return y, jnp.zeros_like(y)
    if zero_x:
        return y, lax.dot_general(x, dw, _dims(x))
    t = lax.dot_general(dx, w, _dims(dx))
    if zero_w:
        return y, t
    # transposed, the barrier makes dX = g w^T wait for dW = x^T g
    t, dw = lax.optimization_barrier((t, dw))
    return y, t + lax.dot_general(x, dw, _dims(x))


_matmul.defjvp(_matmul_jvp, symbolic_zeros=True)


_MAX_GATHER_SLOTS = 16  # up to this many one-hot slots per example, one gather (and scatter-add) each


def _gather_rows_sum(blocks, indices):
    """`sum_j blocks[j, indices[..., j]]`; an index of n (one past a block) picks a zero row.

    One gather per slot `j`, from the slot's own block of rows: JAX's transpose
    of that (the weight gradient) is one scatter-add per slot of the incoming
    cotangent. A single gather over all slots followed by a sum is transposed
    into a scatter of a cotangent broadcast over the slots, which XLA's CPU
    backend fuses, with the layers behind it, into its serial scatter loop:
    ModAddMLP's step took 24 ms that way and 13.7 ms this way (the hand-written
    `W1[0, a] + W1[1, b]`: 13.5 ms).
    """
    return sum(jnp.take(blocks[j], indices[..., j], axis=0, mode="fill", fill_value=0)
               for j in range(indices.shape[-1]))
