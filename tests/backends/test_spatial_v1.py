"""v1 §2-§3: padding, dilation, groups and transposed convolution, compiled and compared with NumPy.

Every reference below is a loop written from the PyTorch formula (torch is not installed), on the
same weights: PyTorch's layouts are permuted to the language's as the contract says
(conv `[cout, cin/g, k...]` -> `[k..., cin/g, cout]`, conv_transpose `[cin, cout, k...]` ->
`[k..., cin, cout]`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import diagrammar
from diagrammar.backends.cost import analyse

RNG = np.random.default_rng(0)


def rnd(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def compiled(source: str, name: str = "F", **sizes):
    return diagrammar.parse(source)[name].compile(rngs=nnx.Rngs(0), **sizes)


def set_weight(model, dotted: str, value):
    model.weight(dotted)[...] = jnp.asarray(value)


# ---------------------------------------------------------------- PyTorch's formulas, written out


def torch_conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv{1,2}d on one example: x [cin, *spatial], w [cout, cin/g, *k].

    `padding` is a pair (lo, hi) per spatial axis (F.pad's explicit form; conv's padding=p is (p, p))."""
    nd = x.ndim - 1
    stride, dilation = _tuple(stride, nd), _tuple(dilation, nd)
    pads = [(p, p) if np.isscalar(p) else tuple(p) for p in _tuple(padding, nd)]
    xp = np.pad(x, [(0, 0)] + pads)  # F.pad with zeros
    cout, cin_g = w.shape[:2]
    k = w.shape[2:]
    out_shape = [(xp.shape[1 + i] - dilation[i] * (k[i] - 1) - 1) // stride[i] + 1 for i in range(nd)]
    y = np.zeros([cout] + out_shape, np.float64)
    per_out = cout // groups
    for o in range(cout):
        j = o // per_out  # the group of output channel o reads input channels j*cin/g .. (j+1)*cin/g - 1
        for pos in np.ndindex(*out_shape):
            acc = 0.0
            for ci in range(cin_g):
                for t in np.ndindex(*k):
                    src = tuple(pos[i] * stride[i] + t[i] * dilation[i] for i in range(nd))
                    acc += xp[(j * cin_g + ci,) + src] * w[(o, ci) + t]
            y[(o,) + pos] = acc + (0.0 if b is None else b[o])
    return y


def torch_conv_transpose(x, w, b=None, stride=1, padding=0, output_padding=0):
    """torch.nn.functional.conv_transpose{1,2}d on one example: x [cin, *n], w [cin, cout, *k].

    The contract's formula: full[i*s + t] += x[i] * W[t] (no flip) over L = (n - 1)*s + k positions,
    then y[m] = full[m + lo] (0 past L) for m < n_out = L - lo - hi + output_padding. PyTorch's
    padding=p is the pair (p, p)."""
    nd = x.ndim - 1
    stride, output_padding = _tuple(stride, nd), _tuple(output_padding, nd)
    pads = [(p, p) if np.isscalar(p) else tuple(p) for p in _tuple(padding, nd)]
    cin, cout = w.shape[:2]
    k = w.shape[2:]
    n = x.shape[1:]
    full_shape = [(n[i] - 1) * stride[i] + k[i] for i in range(nd)]
    full = np.zeros([cout] + full_shape, np.float64)
    for i in np.ndindex(*n):
        for t in np.ndindex(*k):
            at = tuple(i[a] * stride[a] + t[a] for a in range(nd))
            for ci in range(cin):
                full[(slice(None),) + at] += x[(ci,) + i] * w[(ci, slice(None)) + t]
    out_shape = [full_shape[a] - pads[a][0] - pads[a][1] + output_padding[a] for a in range(nd)]
    y = np.zeros([cout] + out_shape, np.float64)
    for m in np.ndindex(*out_shape):
        src = tuple(m[a] + pads[a][0] for a in range(nd))
        if all(src[a] < full_shape[a] for a in range(nd)):
            y[(slice(None),) + m] = full[(slice(None),) + src]
    return y + (0.0 if b is None else np.asarray(b).reshape((cout,) + (1,) * nd))


def torch_pool(x, k, stride, padding, op):
    """F.max_pool2d (pads with -inf) or F.avg_pool2d (count_include_pad=True: zeros, divide by k*k)."""
    nd = x.ndim - 1
    k, stride = _tuple(k, nd), _tuple(stride, nd)
    pads = [(p, p) if np.isscalar(p) else tuple(p) for p in _tuple(padding, nd)]
    fill = -np.inf if op == "max" else 0.0
    xp = np.pad(x, [(0, 0)] + pads, constant_values=fill)
    out_shape = [(xp.shape[1 + i] - k[i]) // stride[i] + 1 for i in range(nd)]
    y = np.zeros([x.shape[0]] + out_shape)
    for c in range(x.shape[0]):
        for pos in np.ndindex(*out_shape):
            win = xp[(c,) + tuple(slice(pos[i] * stride[i], pos[i] * stride[i] + k[i]) for i in range(nd))]
            y[(c,) + pos] = win.max() if op == "max" else win.sum() / np.prod(k)
    return y


def _tuple(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def close(got, want, atol=1e-4):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=atol, rtol=1e-4)


# ---------------------------------------------------------------- padding (§2)


def test_strided_stem_is_pytorch_conv_pad_2_and_max_pool_pad_1():
    # the contract's stem at a small size: conv 5x5/2 pad 2, max pool 3/2 pad 1 (ResNet's stem pattern)
    m = compiled("""
axis c = 3, c8 = 4, hh = 9, ww = 10, h1 = 5, w1 = 5, h2 = 3, w2 = 3
circuit F(img: [c, hh, ww]) -> [c8, h2, w2]:
    x = conv(img, over = (hh, ww) -> (h1, w1), kernel = 5, stride = 2, padding = 2, c -> c8, bias = false)
    return pool(relu(x), over = (h1, w1) -> (h2, w2), window = 3, stride = 2, padding = 1, op = max)
""")
    x, w = rnd(3, 9, 10), rnd(4, 3, 5, 5)
    set_weight(m, "x.W", w.transpose(2, 3, 1, 0))
    conv = torch_conv(x, w, stride=2, padding=2)
    close(m(x), torch_pool(np.maximum(conv, 0), 3, 2, 1, "max"))


@pytest.mark.parametrize("op", ["max", "mean"])
def test_pool_padding_pads_with_minus_inf_or_counts_the_pad(op):
    m = compiled(f"""
axis c = 2, h = 5, w = 6, h2 = 3, w2 = 4
circuit F(x: [c, h, w]) -> [c, h2, w2]:
    return pool(x, over = (h, w) -> (h2, w2), window = (2, 3), stride = 2, padding = ((1, 0), (2, 2)), op = {op})
""")
    x = -np.abs(rnd(2, 5, 6)) - 1  # all negative: a zero pad would win a max
    close(m(x), torch_pool(x, (2, 3), 2, ((1, 0), (2, 2)), op))


def test_pairs_per_axis_and_symmetric_pair():
    m = compiled("""
axis ci = 2, co = 3, h = 4, w = 5, h2 = 4, w2 = 5
circuit F(x: [ci, h, w]) -> [co, h2, w2]:
    a = conv(x, over = (h, w) -> (h2, w2), kernel = 3, padding = ((1, 1), (0, 2)), ci -> co)
    b = conv(x, over = (h, w), kernel = 3, padding = (1, 1), ci -> co)
    return a + rename(b, (h, w) -> (h2, w2))
""")
    x, wa, wb, ba, bb = rnd(2, 4, 5), rnd(3, 2, 3, 3), rnd(3, 2, 3, 3), rnd(3), rnd(3)
    for name, w, b in (("a", wa, ba), ("b", wb, bb)):
        set_weight(m, f"{name}.W", w.transpose(2, 3, 1, 0))
        set_weight(m, f"{name}.b", b)
    want = torch_conv(x, wa, ba, padding=((1, 1), (0, 2))) + torch_conv(x, wb, bb, padding=1)
    close(m(x), want)


def test_causal_conv_equals_pad_then_valid_conv():
    # the contract's CausalPair, small: both halves are the same function when they share weights
    m = compiled("""
axis t = 7, tp = t + 3, c = 2
circuit F(x: [t, c]) -> [t, c]:
    a = conv(x, over = t, kernel = 4, padding = causal, c -> c)
    p = pad(x, over = t -> tp, padding = (3, 0))
    b = conv(p, over = tp -> t, kernel = 4, padding = valid, c -> c)
    return a - b
""")
    w, bias = rnd(2, 2, 4), rnd(2)
    for name in ("a", "b"):
        set_weight(m, f"{name}.W", w.transpose(2, 1, 0))
        set_weight(m, f"{name}.b", bias)
    x = rnd(7, 2)
    close(m(x), np.zeros((7, 2)), atol=1e-5)
    _, wires = m(x, capture=["a"])
    causal = torch_conv(x.T, w, bias, padding=((3, 0),)).T  # F.pad(x, (3, 0)) then F.conv1d
    close(wires["a"], causal)


@pytest.mark.parametrize("n, k, s, d", [(6, 4, 1, 1), (7, 3, 1, 2), (6, 3, 2, 1), (7, 3, 2, 1), (8, 2, 3, 2)])
def test_same_padding(n, k, s, d):
    # stride 1: PyTorch's padding='same' (an even kernel puts the extra position after); stride > 1: XLA SAME
    out = -(-n // s)
    reach = d * (k - 1) + 1
    total = max((out - 1) * s + reach - n, 0)
    pads = (total // 2, total - total // 2)
    if s == 1:
        assert pads == ((d * (k - 1)) // 2, d * (k - 1) - (d * (k - 1)) // 2)
    if (n, k, s) == (6, 3, 2):
        assert pads == (0, 1)  # where PyTorch's padding=1 would pad (1, 1)
    m = compiled(f"""
axis t = {n}, t2 = {out}, ci = 2, co = 3
circuit F(x: [ci, t]) -> [co, t2]:
    return conv(x, over = t -> t2, kernel = {k}, stride = {s}, dilation = {d}, ci -> co, bias = false)
""")
    x, w = rnd(2, n), rnd(3, 2, k)
    set_weight(m, "out.W", w.transpose(2, 1, 0))
    close(m(x), torch_conv(x, w, stride=s, dilation=d, padding=(pads,)))


def test_pad_with_values_and_dtypes():
    m = compiled("""
axis h = 2, w = 3, hp = 6, wp = 4
circuit F(x: [h, w]) -> [hp, wp]:
    return pad(x, over = (h, w) -> (hp, wp), padding = ((2, 2), (0, 1)), value = -inf)
""")
    x = rnd(2, 3)
    close(m(x), np.pad(x, ((2, 2), (0, 1)), constant_values=-np.inf))
    m = compiled("""
axis t = 3, tp = 7
circuit F(i: int[t]) -> int[tp]:
    return pad(i, over = t -> tp, padding = 2, value = -1)
""")
    got = m(np.array([4, 5, 6], np.int32))
    assert got.dtype == jnp.int32 and got.tolist() == [-1, -1, 4, 5, 6, -1, -1]


def test_pad_passes_gradients_to_its_input_only():
    m = compiled("""
axis t = 3, tp = 5
circuit F(x: [t]) -> [tp]:
    return pad(x, over = t -> tp, padding = (1, 1), value = 7)
""")
    g = jax.grad(lambda x: jnp.sum(m(x) * jnp.arange(5.0)))(jnp.ones(3))
    close(g, [1.0, 2.0, 3.0])


# ---------------------------------------------------------------- dilation and groups (§3)


def test_dilated_causal_grouped_and_depthwise_convs():
    # the contract's Taps, small: a dilated causal conv, groups = 2, and depthwise with multiplier 2
    m = compiled("""
axis t = 9, c = 4, c2 = 2 * c
circuit F(x: [t, c]) -> [t, c2]:
    d1 = conv(x, over = t, kernel = 3, dilation = 2, padding = causal, c -> c)
    g = conv(d1, over = t, kernel = 3, padding = 1, groups = 2, c -> c)
    return conv(x + g, over = t, kernel = 5, padding = 2, groups = c, c -> c2)
""")
    assert m.weight("g.W").shape == (3, 2, 4) and m.weight("out.W").shape == (5, 1, 8)
    w1, w2, w3 = rnd(4, 4, 3), rnd(4, 2, 3), rnd(8, 1, 5)
    b1, b2, b3 = rnd(4), rnd(4), rnd(8)
    for name, w, b in (("d1", w1, b1), ("g", w2, b2), ("out", w3, b3)):
        set_weight(m, f"{name}.W", w.transpose(2, 1, 0))
        set_weight(m, f"{name}.b", b)
    x = rnd(9, 4)
    d1 = torch_conv(x.T, w1, b1, dilation=2, padding=((4, 0),))
    g = torch_conv(d1, w2, b2, padding=1, groups=2)
    want = torch_conv(x.T + g, w3, b3, padding=2, groups=4)
    close(m(x), want.T)


def test_grouped_conv_2d_with_a_batch():
    m = compiled("""
axis ci = 6, co = 4, h = 5, w = 5
circuit F(x: [ci, h, w]) -> [co, h, w]:
    return conv(x, over = (h, w), kernel = 3, padding = 1, dilation = (1, 2), groups = 2, ci -> co)
""".replace("padding = 1, dilation = (1, 2)", "padding = ((1, 1), (2, 2)), dilation = (1, 2)"))
    w, b = rnd(4, 3, 3, 3), rnd(4)
    set_weight(m, "out.W", w.transpose(2, 3, 1, 0))
    set_weight(m, "out.b", b)
    xs = rnd(2, 6, 5, 5)
    got = m(xs)
    for i in range(2):
        close(got[i], torch_conv(xs[i], w, b, padding=((1, 1), (2, 2)), dilation=(1, 2), groups=2))


# ---------------------------------------------------------------- conv_transpose (§3)


@pytest.mark.parametrize("k, s, pad, out_pad", [(4, 2, 1, 0), (2, 2, 0, 0), (3, 2, 1, 1), (3, 1, 0, 0),
                                                (3, 2, (3, 1), 1), (5, 3, (0, 4), 2)])
def test_conv_transpose_1d_is_pytorch(k, s, pad, out_pad):
    n = 4
    lo, hi = (pad, pad) if np.isscalar(pad) else pad
    n_out = (n - 1) * s + k - lo - hi + out_pad
    pad_text = f"({lo}, {hi})"
    m = compiled(f"""
axis t = {n}, t2 = {n_out}, ci = 3, co = 2
circuit F(x: [ci, t]) -> [co, t2]:
    return conv_transpose(x, over = t -> t2, kernel = {k}, stride = {s}, padding = {pad_text}, output_padding = {out_pad}, ci -> co)
""")
    w, b = rnd(3, 2, k), rnd(2)
    set_weight(m, "out.W", w.transpose(2, 0, 1))
    set_weight(m, "out.b", b)
    x = rnd(3, n)
    close(m(x), torch_conv_transpose(x, w, b, stride=s, padding=((lo, hi),), output_padding=out_pad))


def test_conv_transpose_2d_upsample_doubles():
    m = compiled("""
axis hh = 3, ww = 4, h2 = 6, w2 = 8, c = 3, cout = 2, h3 = 6, w3 = 8
circuit F(x: [hh, ww, c]) -> [h2, w2, cout]:
    a = conv_transpose(x, over = (hh, ww) -> (h2, w2), kernel = 4, stride = 2, padding = 1, c -> cout)
    b = conv_transpose(x, over = (hh, ww) -> (h2, w2), kernel = 2, stride = 2, c -> cout, bias = false)
    return a + b
""")
    wa, ba, wb = rnd(3, 2, 4, 4), rnd(2), rnd(3, 2, 2, 2)
    set_weight(m, "a.W", wa.transpose(2, 3, 0, 1))
    set_weight(m, "a.b", ba)
    set_weight(m, "b.W", wb.transpose(2, 3, 0, 1))
    x = rnd(3, 4, 3)
    xc = x.transpose(2, 0, 1)
    want = torch_conv_transpose(xc, wa, ba, stride=2, padding=1) + torch_conv_transpose(xc, wb, stride=2)
    close(m(x), want.transpose(1, 2, 0))


def test_conv_transpose_is_the_gradient_of_conv():
    # the adjoint identity <conv(x), y> = <x, conv_transpose(y)> for the same W, stride and padding
    program = diagrammar.parse("""
axis n = 9, m = 4, ci = 2, co = 3
circuit Down(x: [n, ci]) -> [m, co]:
    return conv(x, over = n -> m, kernel = 3, stride = 2, padding = 0, ci -> co, bias = false)
circuit Up(y: [m, co]) -> [n, ci]:
    return conv_transpose(y, over = m -> n, kernel = 3, stride = 2, co -> ci, bias = false)
""")
    m, up = (program[name].compile(rngs=nnx.Rngs(0)) for name in ("Down", "Up"))
    w = rnd(3, 2, 3)  # [k, ci, co]: Down's W; Up reads [k, co, ci]
    set_weight(m, "out.W", w)
    set_weight(up, "out.W", w.transpose(0, 2, 1))
    x, y = rnd(9, 2), rnd(4, 3)
    np.testing.assert_allclose(float(jnp.sum(m(x) * y)), float(jnp.sum(x * up(y))), rtol=1e-4)


# ---------------------------------------------------------------- cost: taps inside the unpadded input


def _taps_inside(n, k, s, d, lo, hi):
    n_out = (n + lo + hi - d * (k - 1) - 1) // s + 1
    return sum(1 for o in range(n_out) for t in range(k) if 0 <= o * s + t * d - lo < n)


@pytest.mark.parametrize("n, k, s, d, lo, hi", [(9, 5, 2, 1, 2, 2), (7, 3, 1, 2, 4, 0), (8, 4, 1, 1, 1, 2),
                                                (10, 3, 3, 2, 3, 3)])
def test_conv_cost_counts_taps_inside_the_input(n, k, s, d, lo, hi):
    n_out = (n + lo + hi - d * (k - 1) - 1) // s + 1
    text = f"""
axis t = {n}, t2 = {n_out}, ci = 2, co = 3
circuit F(x: [t, ci]) -> [t2, co]:
    return conv(x, over = t -> t2, kernel = {k}, stride = {s}, dilation = {d}, padding = ({lo}, {hi}), ci -> co, bias = false)
"""
    report = analyse(diagrammar.parse(text)["F"], batch=1)
    assert report.flops["matmul"].number == 2 * _taps_inside(n, k, s, d, lo, hi) * 2 * 3


def test_conv_cost_of_a_free_length_at_stride_1_is_exact():
    text = """
axis t, ci = 2, co = 3
circuit F(x: [t, ci]) -> [t, co]:
    return conv(x, over = t, kernel = 3, dilation = 2, padding = causal, ci -> co, bias = false)
"""
    report = analyse(diagrammar.parse(text)["F"], batch=1, bindings={"t": 11})
    assert report.flops["matmul"].number == 2 * _taps_inside(11, 3, 1, 2, 4, 0) * 2 * 3


def test_pad_then_valid_conv_counts_every_tap_and_groups_divide_the_work():
    text = """
axis t = 8, tp = t + 3, c = 4
circuit F(x: [t, c]) -> [t, c]:
    p = pad(x, over = t -> tp, padding = (3, 0))
    return conv(p, over = tp -> t, kernel = 4, padding = valid, groups = 2, c -> c, bias = false)
"""
    report = analyse(diagrammar.parse(text)["F"], batch=1)
    assert report.flops["matmul"].number == 2 * 8 * 4 * (4 // 2) * 4
    assert report.parameters.number == 4 * 2 * 4


def test_conv_transpose_cost_counts_products_that_reach_the_output():
    n, k, s, lo, hi = 5, 4, 2, 1, 1
    text = f"""
axis t = {n}, t2 = {(n - 1) * s + k - lo - hi}, ci = 2, co = 3
circuit F(x: [t, ci]) -> [t2, co]:
    return conv_transpose(x, over = t -> t2, kernel = {k}, stride = {s}, padding = {lo}, ci -> co, bias = false)
"""
    d = diagrammar.parse(text)["F"]
    n_out = (n - 1) * s + k - lo - hi
    inside = sum(1 for i in range(n) for t in range(k) if lo <= i * s + t < lo + n_out)
    assert analyse(d, batch=1).flops["matmul"].number == 2 * inside * 2 * 3
    free = diagrammar.parse(text.replace(f"t = {n}, t2 = {n_out}", "t, t2 = 2 * t"))["F"]
    assert analyse(free, batch=1, bindings={"t": n}).flops["matmul"].number == 2 * inside * 2 * 3


XLA_CASES = {
    "pairs, strides": """
axis h = 9, w = 10, h2 = 5, w2 = 3, c = 3, k = 4
circuit F(x: [h, w, c]) -> [h2, w2, k]:
    return conv(x, over = (h, w) -> (h2, w2), kernel = (5, 3), stride = (2, 3), padding = ((2, 2), (1, 0)), c -> k)
""",
    "dilated causal grouped": """
axis t = 11, c = 4, c2 = 8
circuit F(x: [t, c]) -> [t, c2]:
    return conv(x, over = t, kernel = 3, dilation = 3, padding = causal, groups = 2, c -> c2, bias = false)
""",
    "same, dilated, strided": """
axis t = 11, t2 = 6, c = 4, c2 = 8
circuit F(x: [t, c]) -> [t2, c2]:
    return conv(x, over = t -> t2, kernel = 3, dilation = 2, stride = 2, c -> c2, bias = false)
""",
    "transposed": """
axis hh = 5, ww = 5, h2 = 10, w2 = 10, c = 3, k = 2
circuit F(x: [hh, ww, c]) -> [h2, w2, k]:
    return conv_transpose(x, over = (hh, ww) -> (h2, w2), kernel = 4, stride = 2, padding = 1, c -> k)
""",
}


@pytest.mark.parametrize("case", sorted(XLA_CASES))
def test_conv_matmul_flops_agree_with_xla(case):
    from test_cost import (  # the per-operation XLA counter of the cost tests
        XLACount,
        _compiled,
        _inputs,
    )

    d = diagrammar.parse(XLA_CASES[case])["F"]
    _, state, forward = _compiled(d, {})
    xla = XLACount(forward, state, *_inputs(d, {}, 2))
    assert analyse(d, batch=2).flops["matmul"].number == xla.matmul


# ---------------------------------------------------------------- typing with free sizes


def test_output_sizes_follow_free_sizes():
    # a strided size of a free axis is written as simply as it folds: (t - 2) // 2 + 1 is t // 2
    program = diagrammar.parse("""
axis t, t2 = t + 2, t3 = t // 2, te = 2 * t3, t4 = 2 * te, c = 2
circuit F(x: [t, c]) -> [te, c]:
    a = pad(x, over = t -> t2, padding = (2, 0), value = 1)
    b = conv(a, over = t2 -> t, kernel = 3, padding = valid, c -> c)
    s = conv(b, over = t -> t3, kernel = 2, stride = 2, padding = 0, c -> c)
    u = conv_transpose(s, over = t3 -> te, kernel = 2, stride = 2, c -> c)
    w = conv_transpose(u, over = te -> t4, kernel = 4, stride = 2, padding = 1, c -> c)
    return conv(w, over = t4 -> te, kernel = 3, stride = 2, dilation = 2, padding = (3, 0), c -> c) + u
""")
    m = program["F"].compile(rngs=nnx.Rngs(0), t=9)
    assert m(rnd(3, 9, 2)).shape == (3, 8, 2)


def test_an_output_below_one_position_with_free_sizes_fails_at_compile():
    d = diagrammar.parse("""
axis t, t2 = t - 4, c = 2
circuit F(x: [t, c]) -> [t2, c]:
    return conv(x, over = t -> t2, kernel = 5, padding = valid, c -> c)
""")["F"]
    with pytest.raises(diagrammar.CircuitError, match="at least 1"):
        d.compile(rngs=nnx.Rngs(0), t=3)
    assert d.compile(rngs=nnx.Rngs(0), t=5)(rnd(5, 2)).shape == (1, 2)
