"""Flax backend: every primitive against hand-written jax.numpy, and the module's behaviour.

Each primitive case compiles a one-line circuit, fills its weights with random
values, and compares the module's output with a reference written directly in
jax.numpy on the same inputs (and, for the ops with weights, the gradients of
the weights). The rest pins the behaviour of the compiled module: batch
broadcasting, probes, dropout modes, determinism, size binding and the weight
budget, jit, grad and eval_shape.
"""
from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import diagrammar
from diagrammar.backends.flax import compile_diagram
from diagrammar.backends.flax import module as flax_module
from diagrammar.backends.flax.lowering import linear as flax_linear
from diagrammar.errors import InvalidArgument, SizeConflict, SizeTooLarge, UnknownName


@pytest.fixture(autouse=True)
def strict_ranks():
    """Every broadcast must come from named axes, never from NumPy's rank promotion."""
    old = jax.config.jax_numpy_rank_promotion
    jax.config.update("jax_numpy_rank_promotion", "raise")
    yield
    jax.config.update("jax_numpy_rank_promotion", old)


AXES = """
axis a = 3, b = 4, c = 5, e = 2, k = a, ab = a * b, ac = a + c, v = 7
axis h = 6, w = 5, ci = 2, co = 3, h2 = 2, w2 = 2, h3 = 3, w3 = 2
"""


def build(src: str, name: str = "F", seed: int = 0, **sizes):
    program = diagrammar.parse(AXES + src)
    return compile_diagram(program[name], rngs=nnx.Rngs(seed), **sizes)


def rnd(*shape, seed=0, positive=False):
    x = np.random.default_rng(seed).normal(size=shape)
    return jnp.asarray(np.abs(x) + 0.1 if positive else x, jnp.float32)


def ints(hi, *shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, hi, shape), jnp.int32)


def flat_params(model) -> dict[str, nnx.Param]:
    return {".".join(map(str, p)): v for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def randomise(model, seed=1) -> dict[str, jax.Array]:
    """Random weights (so that ones/zeros initialisers hide nothing); returns them by dotted name."""
    out = {}
    for i, (name, var) in enumerate(sorted(flat_params(model).items())):
        var.set_value(rnd(*var.shape, seed=seed + i))
        out[name] = var.get_value()
    return out


def gelu_tanh(x):
    return 0.5 * x * (1 + jnp.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def softmax_ref(x, axes):
    z = jnp.exp(x - jnp.max(x, axis=axes, keepdims=True))
    return z / jnp.sum(z, axis=axes, keepdims=True)


def conv_ref(x, W, stride, pad):
    """Cross-correlation [H, W, Cin] * [kh, kw, Cin, Cout] with explicit padding, by loops."""
    x = np.pad(np.asarray(x), ((pad[0], pad[0]), (pad[1], pad[1]), (0, 0)))
    kh, kw = W.shape[:2]
    oh = (x.shape[0] - kh) // stride + 1
    ow = (x.shape[1] - kw) // stride + 1
    out = np.zeros((oh, ow, W.shape[3]), np.float32)
    for i in range(oh):
        for j in range(ow):
            patch = x[i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[i, j] = np.einsum("xyc,xyco->o", patch, np.asarray(W))
    return out


def pool_ref(x, op):
    x = np.asarray(x)
    oh, ow = (x.shape[0] - 2) // 2 + 1, (x.shape[1] - 2) // 2 + 1
    out = np.zeros((oh, ow, x.shape[2]), np.float32)
    for i in range(oh):
        for j in range(ow):
            patch = x[2 * i:2 * i + 2, 2 * j:2 * j + 2]
            out[i, j] = patch.max(axis=(0, 1)) if op == "max" else patch.mean(axis=(0, 1))
    return out


def causal_ref(s):
    n = s.shape[0]
    return jnp.where(jnp.arange(n)[None, :] > jnp.arange(n)[:, None], -jnp.inf, s)


# (id, circuit F, inputs, reference(W, *inputs), has weights)
CASES = [
    ("arithmetic", "circuit F(x: [a, b], y: [b]) -> [b, a]:\n"
     "    return (x * y + x / (y * y + 1) - maximum(x, y) + minimum(x, 0.5)) * 2 - -x",
     lambda: (rnd(3, 4), rnd(4, seed=1)),
     lambda W, x, y: ((x * y[None] + x / (y * y + 1)[None] - jnp.maximum(x, y[None]) + jnp.minimum(x, 0.5)) * 2
                      + x).T, False),
    ("int_arithmetic", "circuit F(i: int[a], j: int[b]) -> int[a, b]:\n    return i * j + i - j",
     lambda: (ints(9, 3), ints(9, 4, seed=1)),
     lambda W, i, j: i[:, None] * j[None] + i[:, None] - j[None], False),
    ("mixed_dtypes", "circuit F(x: [a], m: bool[a], i: int[a]) -> [a]:\n    return x * m + i / 2",
     lambda: (rnd(3), jnp.array([True, False, True]), ints(5, 3)),
     lambda W, x, m, i: x * m + i / 2, False),
    ("compare_where", "circuit F(x: [a, b], y: [b], m: bool[a]) -> [a, b]:\n"
     "    return where(m, where(x > y, x, y), where(x <= y, -x, 0))",
     lambda: (rnd(3, 4), rnd(4, seed=1), jnp.array([True, False, True])),
     lambda W, x, y, m: jnp.where(m[:, None], jnp.where(x > y[None], x, jnp.broadcast_to(y, (3, 4))),
                                  jnp.where(x <= y[None], -x, 0.0)), False),
    ("linear", "circuit F(x: [a, b]) -> [a, c]:\n    return linear(x, b -> c)",
     lambda: (rnd(3, 4),), lambda W, x: x @ W["out.W"] + W["out.b"][None], True),
    ("linear_multi", "circuit F(x: [a, b]) -> [e, c]:\n    return linear(x, (b, a) -> (e, c))",
     lambda: (rnd(3, 4),), lambda W, x: jnp.einsum("ab,baec->ec", x, W["out.W"]) + W["out.b"], True),
    ("linear_square", "circuit F(x: [c, b]) -> [c, a, b]:\n    return linear(x, b -> (a, b), bias = false)",
     lambda: (rnd(5, 4),), lambda W, x: jnp.einsum("cb,bad->cad", x, W["out.W"]), True),
    ("linear_to_scalar", "circuit F(x: [a, b]) -> [a]:\n    return linear(x, b -> [])",
     lambda: (rnd(3, 4),), lambda W, x: x @ W["out.W"] + W["out.b"], True),
    ("dot", "circuit F(x: [a, b, c], y: [b, c, e]) -> [a, c, e]:\n    return dot(x, y, over = b)",
     lambda: (rnd(3, 4, 5), rnd(4, 5, 2, seed=1)), lambda W, x, y: jnp.einsum("abc,bce->ace", x, y), False),
    ("einsum", "circuit F(x: [a, b], y: [b, c], z: [c]) -> [c, a]:\n    return einsum(x, y, z, -> [c, a])",
     lambda: (rnd(3, 4), rnd(4, 5, seed=1), rnd(5, seed=2)),
     lambda W, x, y, z: jnp.einsum("ab,bc,c->ca", x, y, z), False),
    ("reductions", "circuit F(x: [a, b, c]) -> [b]:\n"
     "    return sum(x, over = (a, c)) + mean(x, over = (c, a)) + max(x, over = (a, c)) + min(x, over = (a, c))"
     " + logsumexp(x, over = (a, c)) + sum(x)",
     lambda: (rnd(3, 4, 5),),
     lambda W, x: (x.sum((0, 2)) + x.mean((0, 2)) + x.max((0, 2)) + x.min((0, 2))
                   + jnp.log(jnp.exp(x).sum((0, 2))) + x.sum()), False),
    ("softmax", "circuit F(x: [a, b, c]) -> [b, a, c]:\n"
     "    return softmax(x, over = (a, c)) + log_softmax(x, over = c)",
     lambda: (rnd(3, 4, 5),),
     lambda W, x: (softmax_ref(x, (0, 2)) + jnp.log(softmax_ref(x, (2,)))).transpose(1, 0, 2), False),
    ("layernorm", "circuit F(x: [a, b, c]) -> [a, b, c]:\n    return layernorm(x, over = (c, b))",
     lambda: (rnd(3, 4, 5),),
     lambda W, x: ((x - x.mean((1, 2), keepdims=True)) / jnp.sqrt(x.var((1, 2), keepdims=True) + 1e-5)
                   * W["out.scale"].T[None] + W["out.bias"].T[None]), True),
    ("rmsnorm", "circuit F(x: [a, b]) -> [a, b]:\n    return rmsnorm(x, over = b, eps = 0.01)",
     lambda: (rnd(3, 4),),
     lambda W, x: x / jnp.sqrt(jnp.mean(x * x, axis=1, keepdims=True) + 0.01) * W["out.scale"][None], True),
    ("argmax", "circuit F(x: [a, b]) -> int[b]:\n    return argmax(x, over = a)",
     lambda: (rnd(3, 4),), lambda W, x: jnp.argmax(x, axis=0), False),
    ("causal", "circuit F(s: [a, k]) -> [a, k]:\n    return softmax(causal(s, a, k), over = k)",
     lambda: (rnd(3, 3),), lambda W, s: softmax_ref(causal_ref(s), (1,)), False),
    ("unary", "circuit F(x: [a, b]) -> [a, b]:\n"
     "    return relu(x - 1) + gelu(x) + silu(x) + tanh(x) + sigmoid(x) + softplus(x) + exp(-x) + log(x)"
     " + sqrt(x) + abs(-x) + square(x)",
     lambda: (rnd(3, 4, positive=True),),
     lambda W, x: (jnp.maximum(x - 1, 0) + gelu_tanh(x) + x / (1 + jnp.exp(-x)) + jnp.tanh(x) + 1 / (1 + jnp.exp(-x))
                   + jnp.log1p(jnp.exp(x)) + jnp.exp(-x) + jnp.log(x) + jnp.sqrt(x) + x + x * x), False),
    ("onehot", "circuit F(i: int[b]) -> [b, v]:\n    return onehot(i, v)",
     lambda: (ints(7, 4),), lambda W, i: (i[:, None] == jnp.arange(7)[None]).astype(jnp.float32), False),
    # linear of one-hots runs as a row gather (flax.py's lazy one-hot): indices out of 0..v-1 pick nothing
    ("onehot_linear", "circuit F(i: int[b], j: int[b]) -> [b, c]:\n"
     "    return linear(stack(onehot(i, v), onehot(j, v), along = e), (e, v) -> c)",
     lambda: (jnp.array([0, 3, 7, -1], jnp.int32), jnp.array([6, 2, 1, 5], jnp.int32)),
     lambda W, i, j: (jnp.concatenate([jax.nn.one_hot(i, 7), jax.nn.one_hot(j, 7)], -1)
                      @ W["out.W"].reshape(14, 5) + W["out.b"][None]), True),
    ("onehot_linear_axes_swapped", "circuit F(i: int[a, b], j: int[b, a]) -> [b, a, c]:\n"
     "    return linear(stack(onehot(i, v), onehot(j, v), along = e), (v, e) -> c, bias = false)",
     lambda: (ints(7, 3, 4), ints(7, 4, 3, seed=1)),
     lambda W, i, j: (jnp.einsum("abv,vc->bac", jax.nn.one_hot(i, 7), W["out.W"][:, 0])
                      + jnp.einsum("bav,vc->bac", jax.nn.one_hot(j, 7), W["out.W"][:, 1])), True),
    ("onehot_dense_use", "circuit F(i: int[b]) -> [c]:\n"
     "    z = onehot(i, v)\n"
     "    return linear(z, (b, v) -> c) + sum(linear(z * 2, v -> c), over = b)",
     lambda: (ints(7, 4),),
     lambda W, i: (jax.nn.one_hot(i, 7).reshape(-1) @ W["linear.W"].reshape(28, 5) + W["linear.b"]
                   + (2 * jax.nn.one_hot(i, 7) @ W["linear_2.W"] + W["linear_2.b"][None]).sum(0)), True),
    ("embed", "circuit F(i: int[b]) -> [b, c]:\n    return embed(i, v -> c)",
     lambda: (ints(7, 4),), lambda W, i: W["out.W"][i], True),
    ("arange_const", "circuit F(x: [a]) -> [a]:\n    return x / sqrt(c) + arange(a) + size(b)",
     lambda: (rnd(3),), lambda W, x: x / np.sqrt(5) + jnp.arange(3) + 4, False),
    ("gather", "circuit F(x: [a, b], i: int[c]) -> [c, b]:\n    return gather(x, i, along = a)",
     lambda: (rnd(3, 4), ints(3, 5)), lambda W, x, i: x[i], False),
    ("gather_batched", "circuit F(x: [b, a, c], i: int[b, e]) -> [e, b, c]:\n    return gather(x, i, along = a)",
     lambda: (rnd(4, 3, 5), ints(3, 4, 2)),
     lambda W, x, i: jnp.stack([x[jnp.arange(4), i[:, j]] for j in range(2)]), False),
    ("take", "circuit F(x: [a, b]) -> [b]:\n    return take(x, a, -1) * take(x, a, 0)",
     lambda: (rnd(3, 4),), lambda W, x: x[-1] * x[0], False),
    ("rename", "circuit F(x: [a, b]) -> [b, k]:\n    return rename(x, a -> k)",
     lambda: (rnd(3, 4),), lambda W, x: x.T, False),
    ("merge", "circuit F(x: [a, b], y: [b, a]) -> [ab]:\n"
     "    return merge(x, (a, b) -> ab) + merge(y, (a, b) -> ab) * 10",
     lambda: (rnd(3, 4), rnd(4, 3, seed=1)), lambda W, x, y: x.reshape(-1) + y.T.reshape(-1) * 10, False),
    ("split", "circuit F(x: [ab, c]) -> [c, b, a]:\n    return split(x, ab -> (a, b))",
     lambda: (rnd(12, 5),), lambda W, x: x.reshape(3, 4, 5).transpose(2, 1, 0), False),
    ("stack", "circuit F(x: [a, b], y: [b, a]) -> [e, a, b]:\n    return stack(x, y, along = e)",
     lambda: (rnd(3, 4), rnd(4, 3, seed=1)), lambda W, x, y: jnp.stack([x, y.T]), False),
    ("concat", "circuit F(x: [a, b], y: [b, c]) -> [ac, b]:\n    return concat(x, y, along = (a, c) -> ac)",
     lambda: (rnd(3, 4), rnd(4, 5, seed=1)), lambda W, x, y: jnp.concatenate([x, y.T]), False),
    ("conv_same", "circuit F(x: [h, w, ci]) -> [co, h, w]:\n"
     "    return conv(x, over = (h, w), kernel = (3, 3), ci -> co)",
     lambda: (rnd(6, 5, 2),),
     lambda W, x: (conv_ref(x, W["out.W"], 1, (1, 1)) + np.asarray(W["out.b"])[None, None]).transpose(2, 0, 1),
     True),
    ("conv_strided", "circuit F(x: [h, w, ci]) -> [h2, w2, co]:\n"
     "    return conv(x, over = (h, w) -> (h2, w2), kernel = (3, 3), stride = 2, padding = valid, ci -> co,"
     " bias = false)",
     lambda: (rnd(6, 5, 2),), lambda W, x: conv_ref(x, W["out.W"], 2, (0, 0)), True),
    ("pool", "circuit F(x: [ci, h, w]) -> [h3, w3, ci]:\n"
     "    return pool(x, over = (h, w) -> (h3, w3), window = (2, 2), op = max)"
     " + pool(x, over = (h, w) -> (h3, w3), window = 2, op = mean)",
     lambda: (rnd(2, 6, 5),),
     lambda W, x: pool_ref(x.transpose(1, 2, 0), "max") + pool_ref(x.transpose(1, 2, 0), "mean"), False),
    ("param", "circuit F(x: [a, b]) -> [a, b]:\n    param s: [b, a] = normal(1)\n    return x * s",
     lambda: (rnd(3, 4),), lambda W, x: x * W["s"].T, True),
    ("call_broadcast", "circuit G(x: [b]) -> [c]:\n    return tanh(linear(x, b -> c))\n"
     "circuit F(x: [a, b]) -> [c, a]:\n    y = G(x)\n    return y",
     lambda: (rnd(3, 4),), lambda W, x: jnp.tanh(x @ W["y.out.W"] + W["y.out.b"][None]).T, True),
    ("einsum_in_broadcast_call", "circuit G(x: [b], y: [b]) -> []:\n    return einsum(x, y, -> [])\n"
     "circuit F(x: [a, b], y: [b]) -> [a]:\n    return G(x, y)",
     lambda: (rnd(3, 4), rnd(4, seed=1)), lambda W, x, y: x @ y, False),
    ("repeat", "circuit F(x: [b]) -> [b]:\n    repeat 3:\n        x = x + tanh(linear(x, b -> b))\n    return x",
     lambda: (rnd(4),),
     lambda W, x: _repeat_ref(W, x), True),
    ("scan", "circuit Step(s: [b], x: [b], g: [b]) -> ([b], [b]):\n"
     "    return tanh(linear(s, b -> b) + x) * g, s\n"
     "circuit F(xs: [a, b], g: [b]) -> [b, a]:\n"
     "    param s0: [b] = zeros\n"
     "    last, ys = scan(Step, xs, along = a, init = s0, const = g)\n"
     "    return ys + last",
     lambda: (rnd(3, 4), rnd(4, seed=1)), lambda W, xs, g: _scan_ref(W, xs, g), True),
]


def _repeat_ref(W, x):
    for i in range(3):
        x = x + jnp.tanh(x @ W["repeat.x.W"][i] + W["repeat.x.b"][i])
    return x


def _scan_ref(W, xs, g):
    s, ys = W["s0"], []
    for t in range(xs.shape[0]):
        ys.append(s)
        s = jnp.tanh(s @ W["step.out.W"] + W["step.out.b"] + xs[t]) * g
    return (jnp.stack(ys) + s[None]).T


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_primitive_forward(case):
    _, src, make, ref, _ = case
    model = build(src)
    W = randomise(model)
    inputs = make()
    got = model(*inputs)
    want = ref(W, *inputs)
    assert got.shape == tuple(np.shape(want))
    assert got.dtype == jnp.asarray(want).dtype or np.issubdtype(got.dtype, np.floating)
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c[4]], ids=[c[0] for c in CASES if c[4]])
def test_primitive_gradients(case):
    _, src, make, ref, _ = case
    model = build(src)
    W = randomise(model)
    inputs = make()
    cot = rnd(*model(*inputs).shape, seed=7)
    grads = nnx.grad(lambda m: jnp.sum(m(*inputs) * cot))(model)
    got = {".".join(map(str, p)): v.get_value() for p, v in nnx.to_flat_state(grads)}
    want = jax.grad(lambda W: jnp.sum(jnp.asarray(ref(W, *inputs)) * cot))(W) if "conv" not in case[0] else None
    if want is None:  # the loop reference is numpy; differentiate a lax reference of the same convolution
        want = jax.grad(lambda W: jnp.sum(_conv_lax(W, *inputs, case[0]) * cot))(W)
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5, err_msg=name)


def _conv_lax(W, x, which):
    if which == "conv_same":
        y = jax.lax.conv_general_dilated(x[None], W["out.W"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
        return (y + W["out.b"][None, None]).transpose(2, 0, 1)
    return jax.lax.conv_general_dilated(x[None], W["out.W"], (2, 2), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]


def test_conv_lax_reference_matches_loops():
    x, W = rnd(6, 5, 2), {"out.W": rnd(3, 3, 2, 3, seed=1), "out.b": rnd(3, seed=2)}
    np.testing.assert_allclose(_conv_lax(W, x, "conv_strided"), conv_ref(x, W["out.W"], 2, (0, 0)), atol=1e-5)


# ---------------------------------------------------------------- weights


def test_weights_are_params_named_after_the_ir():
    model = build("circuit G(x: [b]) -> [b]:\n    return layernorm(linear(x, b -> b), over = b)\n"
                  "circuit F(x: [a, b]) -> [a, b]:\n    param s: [b] = ones\n    repeat 2:\n        x = G(x) * s\n"
                  "    return linear(x, b -> b)")
    names = set(flat_params(model))
    assert names == {n for n, _, _ in model.diagram.weights()}
    assert names == {"s", "repeat.x.linear.W", "repeat.x.linear.b", "repeat.x.layernorm.scale",
                     "repeat.x.layernorm.bias", "out.W", "out.b"}
    assert model.repeat.x.linear.W.shape == (2, 4, 4)  # one copy per repeat, stacked on a leading axis
    assert model.weight("repeat.x.linear.W") is model.repeat.x.linear.W
    assert model.repeat.x.linear.W.get_metadata()["axes"] == ("repeat#copy", "b", "b")
    assert model.s.get_metadata()["axes"] == ("b",)
    copies = model.repeat.x.linear.W.get_value()
    assert not np.allclose(copies[0], copies[1])


def test_initialisers():
    model = build("axis big = 4000, wide = 300\n"
                  "circuit F(x: [wide], i: int[]) -> [big]:\n"
                  "    param z: [big] = zeros\n    param o: [big] = ones\n    param n: [big, e] = normal(0.5)\n"
                  "    param u: [big] = uniform(-1, 3)\n    param g: [wide, big] = glorot\n"
                  "    return linear(x, wide -> big) + z + o + sum(n, over = e) + u + sum(g, over = wide)"
                  " + sum(embed(i, big -> wide), over = wide)")
    p = {k: np.asarray(v.get_value()) for k, v in flat_params(model).items()}
    assert (p["z"] == 0).all() and (p["o"] == 1).all() and (p["linear.b"] == 0).all()
    assert abs(p["n"].std() - 0.5) < 0.02
    assert p["u"].min() >= -1 and p["u"].max() <= 3 and abs(p["u"].mean() - 1) < 0.1
    limit = np.sqrt(6 / (300 + 4000))  # glorot: fan_in = all axes but the last
    assert np.abs(p["g"]).max() <= limit * (1 + 1e-6) and np.abs(p["g"]).max() > 0.95 * limit
    assert abs(p["linear.W"].std() - 1 / np.sqrt(300)) < 0.002  # lecun: variance 1/fan_in
    assert np.abs(p["linear.W"]).max() <= 2 / np.sqrt(300) / 0.87962566103423978 + 1e-6  # truncated at 2 std
    assert abs(p["embed.W"].std() - 1 / np.sqrt(300)) < 0.002  # embed: std 1/sqrt(d)


def test_lecun_and_embed_match_flax_initialisers():
    model = build("circuit F(x: [a, b], i: int[]) -> [c]:\n"
                  "    return linear(x, (a, b) -> c) + sum(embed(i, v -> (e, c)), over = e)", seed=3)
    keys = nnx.Rngs(3)
    k_linear, _k_bias, k_embed = keys.params(), keys.params(), keys.params()  # one key per weight, in IR order
    want = jax.nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2)(k_linear, (3, 4, 5))
    np.testing.assert_allclose(model.weight("linear.W").get_value(), want, rtol=1e-6)
    want = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=(1, 2), out_axis=0)(
        k_embed, (7, 2, 5))  # nnx.Embed's default, generalised to several output axes
    np.testing.assert_allclose(model.weight("embed.W").get_value(), want, rtol=1e-6)


def test_reserved_box_names_get_a_trailing_underscore():
    model = build("circuit F(x: [b]) -> [b]:\n    eval = linear(x, b -> b)\n    return eval")
    assert "eval_.W" in flat_params(model)
    assert callable(model.eval)
    assert model.weight("eval.W") is model.eval_.W


# ---------------------------------------------------------------- the boundary


MLP = ("circuit F(x: [a, b], t: int[]) -> [c, a]:\n"
       "    return linear(relu(linear(x, b -> c)), c -> c) + onehot(t, c)")


def test_batch_axes_broadcast_the_whole_circuit():
    model = build(MLP)
    x, t = rnd(2, 6, 3, 4), ints(5, 2, 6)
    out = model(x, t)
    assert out.shape == (2, 6, 5, 3)
    for i in range(2):
        for j in range(6):
            np.testing.assert_allclose(out[i, j], model(x[i, j], t[i, j]), rtol=1e-5, atol=1e-6)
    # inputs with fewer batch axes broadcast against the others (aligned on the right), size 1 too
    out2 = model(x, t[0])
    np.testing.assert_allclose(out2[1, 4], model(x[1, 4], t[0, 4]), rtol=1e-5, atol=1e-6)
    out3 = model(x[:1], t)
    np.testing.assert_allclose(out3[1, 2], model(x[0, 2], t[1, 2]), rtol=1e-5, atol=1e-6)
    # an output that depends on no input still gets the batch axes
    const = build("circuit F(x: [a]) -> [b]:\n    param s: [b] = ones\n    return s")
    assert const(rnd(7, 3)).shape == (7, 4)


def test_bad_inputs_are_explained():
    model = build(MLP)
    with pytest.raises(TypeError, match="takes 2 inputs"):
        model(rnd(3, 4))
    with pytest.raises(ValueError, match=r"input x is \[a, b\].*\(3, 4\).*\(4, 3\)"):
        model(rnd(4, 3), ints(5))
    with pytest.raises(TypeError, match="integer"):
        model(rnd(3, 4), rnd())
    with pytest.raises(ValueError, match="batch axis"):
        model(rnd(2, 3, 4), ints(5, 3))


def test_int_and_bool_inputs_and_outputs():
    model = build("circuit F(i: int[a], m: bool[a]) -> (int[a], bool[a]):\n    return i * 2, m == (i > 1)")
    i, m = model(jnp.array([0, 1, 2]), jnp.array([True, False, True]))
    assert i.dtype == jnp.int32 and m.dtype == jnp.bool_
    assert i.tolist() == [0, 2, 4] and m.tolist() == [False, True, True]


def test_tuple_inputs_and_outputs_keep_their_structure():
    model = build("circuit F(s: ([a], ([b], [])), x: [a]) -> (([a], [b]), []):\n"
                  "    p, q = s\n    r, z = q\n    return (p + x, r * z), sum(x)")
    (u, v), z = model((rnd(3), (rnd(4), jnp.float32(2.0))), jnp.ones(3))
    assert u.shape == (3,) and v.shape == (4,) and z.shape == ()
    with pytest.raises(TypeError, match="tuple"):
        model(rnd(3), jnp.ones(3))


# ---------------------------------------------------------------- probes


PROBED = ("circuit G(x: [b]) -> [b]:\n    hid = relu(linear(x, b -> b))\n    return hid * 2\n"
          "circuit F(x: [a, b]) -> [a, b]:\n    t = tanh(x)\n    y = G(t)\n"
          "    repeat 2:\n        y = y + G(y)\n    return y")


def test_probes_capture_named_wires():
    model = build(PROBED)
    x = rnd(5, 3, 4)
    out, wires = model(x, capture=["t", "y.hid", "repeat.y.hid", "x"])
    np.testing.assert_allclose(out, model(x), rtol=1e-6)
    assert list(wires) == ["t", "y.hid", "repeat.y.hid", "x"]
    np.testing.assert_allclose(wires["t"], jnp.tanh(x), rtol=1e-6)
    # inside a broadcast call: batch axes first, then the call's own broadcast axis, then the wire's axes
    assert wires["y.hid"].shape == (5, 3, 4)
    W = model.weight("y.hid.W").get_value()
    np.testing.assert_allclose(wires["y.hid"], jax.nn.relu(jnp.tanh(x) @ W + model.y.hid.b.get_value()[None, None]),
                               rtol=1e-5, atol=1e-6)
    # inside a repeat: a leading axis over the copies
    assert wires["repeat.y.hid"].shape == (2, 5, 3, 4)
    np.testing.assert_allclose(wires["x"], x)


def test_unknown_probe_lists_the_wires():
    model = build(PROBED)
    with pytest.raises(KeyError, match=r"no wire 'y.hidden'.*did you mean 'y.hid'.*Wires: x, t, y"):
        model(rnd(3, 4), capture=["y.hidden"])


def test_probes_inside_scan_have_a_leading_step_axis():
    model = build(CASES[-1][1])
    xs, g = rnd(2, 3, 4), rnd(4)
    out, wires = model(xs, g, capture=["step.out:linear", "ys", "last"])
    assert wires["step.out:linear"].shape == (3, 2, 4)  # [step, batch, b]
    assert wires["ys"].shape == (2, 3, 4)  # [batch, a, b]: as its type is written
    np.testing.assert_allclose(out, jnp.swapaxes(wires["ys"], 1, 2) + wires["last"][:, :, None], rtol=1e-6)
    W = {k: v.get_value() for k, v in flat_params(model).items()}
    np.testing.assert_allclose(wires["step.out:linear"][1], wires["ys"][:, 1] @ W["step.out.W"] + W["step.out.b"][None],
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- dropout, determinism


DROP = "circuit F(x: [a, b]) -> [a, b]:\n    return dropout(x, 0.5)"


def test_dropout_is_active_in_training_only():
    model = build(DROP)
    x = jnp.ones((100, 3, 4))
    assert not model.deterministic  # a new module trains, as nnx.Dropout does
    y1, y2 = model(x), model(x)
    assert set(np.unique(np.asarray(y1)).tolist()) == {0.0, 2.0}
    assert 0.4 < float((y1 == 0).mean()) < 0.6
    assert not np.array_equal(y1, y2)  # a new mask per call
    model.eval()
    np.testing.assert_array_equal(model(x), x)
    model.train()
    assert not np.array_equal(model(x), x)


def test_dropout_under_jit_and_in_repeat_copies():
    model = build("circuit F(x: [a, b]) -> [a, b]:\n    repeat 3:\n        x = dropout(x, 0.5) * 0.5\n    return x")
    step = nnx.jit(lambda m, x: m(x))
    x = jnp.ones((50, 3, 4))
    y1, y2 = step(model, x), step(model, x)
    assert not np.array_equal(y1, y2)
    assert 0.05 < float((y1 != 0).mean()) < 0.25  # three independent masks: 1/8 survive
    model.eval()
    np.testing.assert_allclose(step(model, x), x / 8)


def test_same_seed_same_module():
    src = "circuit F(x: [a, b]) -> [a, c]:\n    return dropout(linear(x, b -> c), 0.3)"
    m1, m2, m3 = build(src, seed=4), build(src, seed=4), build(src, seed=5)
    x = rnd(3, 4)
    np.testing.assert_array_equal(m1.weight("out.W").get_value(), m2.weight("out.W").get_value())
    np.testing.assert_array_equal(m1(x), m2(x))
    np.testing.assert_array_equal(m1(x), m2(x))
    assert not np.array_equal(m1.weight("out.W").get_value(), m3.weight("out.W").get_value())


# ---------------------------------------------------------------- sizes and the budget


FREE = "axis n, m\ncircuit F(x: [n, b]) -> [n, m]:\n    return linear(x, b -> m)"


def test_free_sizes_are_bound_at_compile_time():
    model = build(FREE, n=6, m=2)
    assert model(rnd(6, 4)).shape == (6, 2) and model.sizes == {"n": 6, "m": 2}
    with pytest.raises(InvalidArgument, match="free axes without a size: m"):
        build(FREE, n=6)
    with pytest.raises(InvalidArgument, match=r"compile\(rngs=\.\.\., m=\.\.\., n=\.\.\.\)"):
        build(FREE)
    with pytest.raises(UnknownName, match="no axis 'nn'; did you mean 'n'"):
        build(FREE, n=6, m=2, nn=3)
    with pytest.raises(SizeConflict, match="at least 1"):
        build(FREE, n=0, m=2)
    with pytest.raises(SizeConflict, match="fixed at 4"):
        build(FREE, n=6, m=2, b=5)
    assert build(FREE, n=6, m=2, b=4).sizes == {"n": 6, "m": 2}  # restating a fixed size is fine


def test_weight_budget_refuses_before_allocating(monkeypatch):
    def no_allocation(*args, **kwargs):
        raise AssertionError("a weight was allocated")

    monkeypatch.setattr(flax_module, "_init_weight", no_allocation)
    src = "axis n\ncircuit F(x: [n]) -> [n]:\n    repeat 4:\n        x = linear(x, n -> n)\n    return x"
    with pytest.raises(SizeTooLarge, match=r"repeat.x.W \[n, n\] has 25,000,000 elements per copy x 4 copies = "
                                           r"100,000,000, over the budget of 1,000"):
        build(src, n=5000, max_weight_elements=1000)
    with pytest.raises(SizeTooLarge, match="2,147,483,648"):
        build(src, n=50000)


def test_parameter_budget_refuses_the_whole_model_before_allocating(monkeypatch):
    src = "axis n\ncircuit F(x: [n]) -> [n]:\n    repeat 4:\n        x = linear(x, n -> n)\n    return x"
    assert build(src, n=10, max_parameters=4 * 110).sizes["n"] == 10  # exactly at the budget: allowed
    monkeypatch.setattr(flax_module, "_init_weight", lambda *a, **k: pytest.fail("a weight was allocated"))
    with pytest.raises(SizeTooLarge, match="440"):
        build(src, n=10, max_parameters=439)


@pytest.mark.parametrize("slots", [16, 1], ids=["gather_per_slot", "one_gather_for_many_slots"])
def test_onehot_gather_and_the_dense_product_agree(slots, monkeypatch):
    monkeypatch.setattr(flax_linear, "_MAX_GATHER_SLOTS", slots)
    src = ("circuit F(i: int[b], j: int[b]) -> [b, c]:\n"
           "    return relu(linear(stack(onehot(i, v), onehot(j, v), along = e), (e, v) -> c))")
    i, j = ints(7, 4).at[0].set(-1), ints(7, 4, seed=2).at[1].set(7)  # out of range: a zero row
    fast, dense = build(src), build(src, onehot_gather=False)
    np.testing.assert_allclose(fast(i, j), dense(i, j), rtol=1e-6)
    g_fast = nnx.grad(lambda m: jnp.sum(m(i, j) ** 2))(fast)
    g_dense = nnx.grad(lambda m: jnp.sum(m(i, j) ** 2))(dense)
    np.testing.assert_allclose(g_fast["out"]["W"].get_value(), g_dense["out"]["W"].get_value(), rtol=1e-5, atol=1e-6)
    jaxpr = str(jax.make_jaxpr(lambda m: m(i, j))(fast))
    assert "gather" in jaxpr and "dot_general" not in jaxpr
    assert "dot_general" in str(jax.make_jaxpr(lambda m: m(i, j))(dense))


def test_eval_shape_allocates_nothing():
    abstract = nnx.eval_shape(lambda: build(FREE, n=10 ** 4, m=10 ** 4))
    w = abstract.weight("out.W").get_value()
    assert isinstance(w, jax.ShapeDtypeStruct) and w.shape == (4, 10 ** 4) and w.dtype == jnp.float32


# ---------------------------------------------------------------- transformations


def test_jit_and_grad_agree_with_eager():
    model = build(MLP)
    x, t = rnd(8, 3, 4), ints(5, 8)
    eager = model(x, t)
    np.testing.assert_allclose(nnx.jit(lambda m, x, t: m(x, t))(model, x, t), eager, rtol=1e-5, atol=1e-6)

    def loss(m):
        return jnp.mean(m(x, t) ** 2)

    g1 = nnx.grad(loss)(model)
    g2 = nnx.jit(nnx.grad(loss))(model)
    for (p1, v1), (p2, v2) in zip(nnx.to_flat_state(g1), nnx.to_flat_state(g2)):
        assert p1 == p2
        np.testing.assert_allclose(v1.get_value(), v2.get_value(), rtol=1e-5, atol=1e-6)
        assert float(jnp.abs(v1.get_value()).sum()) > 0


def test_forward_mode_and_second_derivatives():
    """linear's custom JVP (which orders the backward products) keeps jvp and grad-of-grad working."""
    model = build(MLP)
    x, t = rnd(8, 3, 4), ints(5, 8)
    graphdef, params = nnx.split(model)

    def f(params, x):
        return jnp.sum(nnx.merge(graphdef, params)(x, t) ** 2)

    dx = rnd(8, 3, 4, seed=3)
    _, forward = jax.jvp(lambda x: f(params, x), (x,), (dx,))
    reverse = jnp.vdot(jax.grad(f, argnums=1)(params, x), dx)
    np.testing.assert_allclose(forward, reverse, rtol=1e-4)
    hvp = jax.jvp(lambda x: jax.grad(f, argnums=1)(params, x), (x,), (dx,))[1]
    eps = 1e-2
    fd = (jax.grad(f, argnums=1)(params, x + eps * dx) - jax.grad(f, argnums=1)(params, x - eps * dx)) / (2 * eps)
    np.testing.assert_allclose(hvp, fd, rtol=2e-2, atol=2e-2)


def test_onehot_linear_gather_has_forward_mode_and_matches_the_dense_product():
    """The one-hot row gather's custom JVP: forward mode agrees with reverse mode and with the dense one-hot."""
    model = build("circuit F(i: int[b], j: int[b]) -> [b, c]:\n"
                  "    return linear(stack(onehot(i, v), onehot(j, v), along = e), (e, v) -> c)")
    i, j = jnp.array([0, 3, 7, 6], jnp.int32), jnp.array([6, 6, 1, -2], jnp.int32)
    graphdef, params = nnx.split(model)
    flat = dict(nnx.to_flat_state(params))
    W = flat[("out", "W")].get_value()
    cot = rnd(4, 5, seed=3)

    def f(w):
        new = nnx.from_flat_state([(k, v.replace(w) if k[-1] == "W" else v) for k, v in flat.items()])
        return jnp.sum(nnx.merge(graphdef, new)(i, j) * cot)

    def dense(w):
        x = jnp.concatenate([jax.nn.one_hot(i, 7), jax.nn.one_hot(j, 7)], -1)
        return jnp.sum((x @ w.reshape(14, 5)) * cot)

    dW = rnd(*W.shape, seed=4)
    _, forward = jax.jvp(f, (W,), (dW,))
    np.testing.assert_allclose(forward, jnp.vdot(jax.grad(f)(W), dW), rtol=1e-5)
    np.testing.assert_allclose(jax.grad(f)(W), jax.grad(dense)(W), rtol=1e-6, atol=1e-6)


def test_remat_changes_nothing_but_memory():
    src = CASES[-1][1]  # a scan with a learned step
    plain = build(src)
    remat = compile_diagram(diagrammar.parse(AXES + src)["F"], rngs=nnx.Rngs(0), remat=True)
    xs, g = rnd(2, 3, 4), rnd(4, seed=1)
    np.testing.assert_allclose(remat(xs, g), plain(xs, g), rtol=1e-6)
    loss = lambda m: jnp.sum(m(xs, g) ** 2)  # noqa: E731
    for (p1, v1), (p2, v2) in zip(nnx.to_flat_state(nnx.grad(loss)(plain)), nnx.to_flat_state(nnx.grad(loss)(remat))):
        assert p1 == p2
        np.testing.assert_allclose(v1.get_value(), v2.get_value(), rtol=1e-5, atol=1e-6)


def test_pointer_network_runs_batched():
    d = diagrammar.load(diagrammar._resources.circuits_dir() / "pointer.circuit")["PointerNet"]
    model = compile_diagram(d, rngs=nnx.Rngs(0), n=4, steps=4)
    x, valid = rnd(2, 4, 2), jnp.ones((2, 4), bool)
    args = (x, valid, jnp.zeros((2, 4, 4)), jnp.zeros((2, 4), bool), jnp.zeros((2,), bool))  # forced: [steps, n]
    logp = model(*args)
    assert logp.shape == (2, 4, 4)
    picks = np.asarray(jnp.argmax(logp, axis=-1))
    assert all(sorted(row) == [0, 1, 2, 3] for row in picks)  # greedy decoding points at each input once
    one = model(*(a[1] for a in args))
    np.testing.assert_allclose(one, logp[1], rtol=1e-5, atol=1e-6)


def test_importing_diagrammar_does_not_import_jax():
    code = ("import sys, diagrammar; p = diagrammar.parse('axis d = 2\\ncircuit F(x: [d]) -> [d]:\\n    return x\\n');"
            "d = p['F']; assert 'jax' not in sys.modules and 'flax' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_compiled_module_trains_with_the_diagrammar_trainer():
    from diagrammar.train import ModAdd, default_optimizer, train

    src = ("axis p = 11, arg = 2, hidden = 64\n"
           "circuit ModAdd(a: int[], b: int[]) -> [p]:\n"
           "    x = stack(onehot(a, p), onehot(b, p), along = arg)\n"
           "    return linear(dropout(relu(linear(x, (arg, p) -> hidden)), 0.1), hidden -> p)")
    model = compile_diagram(diagrammar.parse(src)["ModAdd"], rngs=nnx.Rngs(0))
    result = train(model, ModAdd(p=11, train_frac=0.6), steps=300, steps_per_call=100, progress=False,
                   optimizer=default_optimizer(3e-3))
    assert result.metrics["train_acc"] == 1.0
    assert model.deterministic  # the trainer leaves the module in eval mode
