"""Flax backend parity: zoo circuits against the same models written by hand in Flax NNX.

The two examples of the language contract (ModAddMLP, GrokTransformer) are
rebuilt with nnx.Linear, nnx.LinearGeneral and nnx.Embed; the LSTM cell and
encoder with a Python loop; the transformer decoder (a `repeat` of four blocks)
with one loop iteration per copy. Weights are copied from the compiled module
to the hand-written one, then outputs and gradients must agree.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import diagrammar
from diagrammar._resources import circuits_dir
from diagrammar.backends.flax import compile_diagram


@pytest.fixture(autouse=True)
def strict_ranks():
    old = jax.config.jax_numpy_rank_promotion
    jax.config.update("jax_numpy_rank_promotion", "raise")
    yield
    jax.config.update("jax_numpy_rank_promotion", old)


def circuit(file: str, name: str):
    return diagrammar.load(circuits_dir() / file)[name]


def value(model, dotted: str):
    return model.weight(dotted).get_value()


def close(a, b, rtol=2e-5, atol=2e-6, what=""):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol, err_msg=what)


def run(model, *args):
    """The forward pass, compiled: one XLA program is much faster to build than many eager ops."""
    return nnx.jit(lambda m, *a: m(*a))(model, *args)


def grads(loss, model, *args):
    """d loss(model, *args) / d params, compiled."""
    return nnx.jit(nnx.grad(loss))(model, *args)


def randomise_biases(model, seed=0):
    """Zero-initialised biases would hide a mis-wired bias; give them values."""
    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        if path[-1] in ("b", "bias"):
            var.set_value(jnp.asarray(rng.normal(scale=0.1, size=var.shape), jnp.float32))


# ---------------------------------------------------------------- ModAddMLP


class HandModAddMLP(nnx.Module):
    """Gromov's MLP on concatenated one-hot inputs, written with nnx.Linear."""

    def __init__(self, p: int, hidden: int, *, rngs: nnx.Rngs):
        self.p = p
        self.hidden = nnx.Linear(2 * p, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, p, rngs=rngs)

    def __call__(self, a, b):
        x = jnp.concatenate([jax.nn.one_hot(a, self.p), jax.nn.one_hot(b, self.p)], axis=-1)
        return self.out(nnx.relu(self.hidden(x)))


def test_modadd_mlp_matches_hand_written_flax():
    model = compile_diagram(circuit("modadd_mlp.circuit", "ModAddMLP"), rngs=nnx.Rngs(0))
    randomise_biases(model)
    hand = HandModAddMLP(97, 512, rngs=nnx.Rngs(1))
    hand.hidden.kernel.set_value(value(model, "h.W").reshape(2 * 97, 512))  # [arg, p, hidden] row-major
    hand.hidden.bias.set_value(value(model, "h.b"))
    hand.out.kernel.set_value(value(model, "out.W"))
    hand.out.bias.set_value(value(model, "out.b"))

    a, b = (jnp.asarray(v, jnp.int32) for v in np.divmod(np.arange(97 * 97), 97))
    labels = (a + b) % 97
    close(run(model, a, b), run(hand, a, b), what="logits")

    def loss(m, a, b, labels):
        return optax.softmax_cross_entropy_with_integer_labels(m(a, b), labels).mean()

    g_model, g_hand = grads(loss, model, a, b, labels), grads(loss, hand, a, b, labels)
    close(g_model.h.W.get_value().reshape(2 * 97, 512), g_hand.hidden.kernel.get_value(), what="h.W")
    close(g_model.h.b.get_value(), g_hand.hidden.bias.get_value(), what="h.b")
    close(g_model.out.W.get_value(), g_hand.out.kernel.get_value(), what="out.W")
    close(g_model.out.b.get_value(), g_hand.out.bias.get_value(), what="out.b")


# ---------------------------------------------------------------- GrokTransformer


class HandAttention(nnx.Module):
    def __init__(self, d: int, heads: int, *, rngs: nnx.Rngs):
        dk = d // heads
        self.dk = dk
        self.q = nnx.LinearGeneral(d, (heads, dk), use_bias=False, rngs=rngs)
        self.k = nnx.LinearGeneral(d, (heads, dk), use_bias=False, rngs=rngs)
        self.v = nnx.LinearGeneral(d, (heads, dk), use_bias=False, rngs=rngs)
        self.out = nnx.LinearGeneral((heads, dk), d, axis=(-2, -1), use_bias=False, rngs=rngs)

    def __call__(self, x):  # [batch, pos, d]
        q, k, v = self.q(x), self.k(x), self.v(x)  # [batch, pos, heads, dk]
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(float(self.dk))
        n = x.shape[1]
        mask = jnp.tril(jnp.ones((n, n), bool))[None, None]
        a = jax.nn.softmax(jnp.where(mask, s, -jnp.inf), axis=-1)
        return self.out(jnp.einsum("bhqk,bkhd->bqhd", a, v))


class HandGrokTransformer(nnx.Module):
    """Nanda et al.'s one-layer transformer, written with nnx.Embed, nnx.LinearGeneral and nnx.Linear."""

    def __init__(self, vocab=114, pos=3, d=128, heads=4, mlp=512, p=113, *, rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab, d, rngs=rngs)
        self.pos_embed = nnx.Param(0.02 * jax.random.normal(rngs.params(), (pos, d)))
        self.attention = HandAttention(d, heads, rngs=rngs)
        self.mlp_in = nnx.Linear(d, mlp, rngs=rngs)
        self.mlp_out = nnx.Linear(mlp, d, rngs=rngs)
        self.unembed = nnx.Linear(d, p, use_bias=False, rngs=rngs)

    def __call__(self, tokens):  # [batch, pos]
        x = self.embed(tokens) + self.pos_embed[...][None]
        x = x + self.attention(x)
        x = x + self.mlp_out(nnx.relu(self.mlp_in(x)))
        return self.unembed(x[:, -1])


GROK_MAP = {  # compiled dotted name -> path in the hand-written model
    "x.W": ("embed", "embedding"), "pos_embed": ("pos_embed",),
    "attention.q.W": ("attention", "q", "kernel"), "attention.k.W": ("attention", "k", "kernel"),
    "attention.v.W": ("attention", "v", "kernel"), "attention.out.W": ("attention", "out", "kernel"),
    "linear.W": ("mlp_in", "kernel"), "linear.b": ("mlp_in", "bias"),
    "linear_2.W": ("mlp_out", "kernel"), "linear_2.b": ("mlp_out", "bias"), "out.W": ("unembed", "kernel"),
}


def _at(module, path):
    for part in path:
        module = getattr(module, part)
    return module


def test_grok_transformer_matches_hand_written_flax():
    model = compile_diagram(circuit("grok_transformer.circuit", "GrokTransformer"), rngs=nnx.Rngs(0))
    randomise_biases(model)
    hand = HandGrokTransformer(rngs=nnx.Rngs(1))
    assert set(GROK_MAP) == {n for n, _, _ in model.diagram.weights()}
    for name, path in GROK_MAP.items():
        assert _at(hand, path).shape == model.weight(name).shape, name
        _at(hand, path).set_value(value(model, name))

    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 113, 64), rng.integers(0, 113, 64)
    tokens = jnp.asarray(np.stack([a, b, np.full(64, 113)], axis=-1), jnp.int32)
    labels = jnp.asarray((a + b) % 113, jnp.int32)
    close(run(model, tokens), run(hand, tokens), rtol=1e-4, atol=1e-5, what="logits")

    def loss(m, tokens, labels):
        return optax.softmax_cross_entropy_with_integer_labels(m(tokens), labels).mean()

    g_model, g_hand = grads(loss, model, tokens, labels), grads(loss, hand, tokens, labels)
    for name, path in GROK_MAP.items():
        close(_at(g_model, name.split(".")).get_value(), _at(g_hand, path).get_value(), rtol=1e-4, atol=1e-6,
              what=name)


# ---------------------------------------------------------------- LSTM (tuple inputs and outputs, scan)


class HandLSTM(nnx.Module):
    """An LSTM cell with nnx.Linear over the concatenated gates (i, f, g, o), unrolled by a Python loop."""

    def __init__(self, d=32, h=64, *, rngs: nnx.Rngs):
        self.h = h
        self.x_gates = nnx.Linear(d, 4 * h, rngs=rngs)
        self.h_gates = nnx.Linear(h, 4 * h, use_bias=False, rngs=rngs)
        self.h0 = nnx.Param(jnp.zeros(h))
        self.c0 = nnx.Param(jnp.zeros(h))

    def cell(self, state, x):
        h_prev, c = state
        z = self.x_gates(x) + self.h_gates(h_prev)
        i, f, g, o = (z[..., k * self.h:(k + 1) * self.h] for k in range(4))
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h_new = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h_new, c), h_new

    def __call__(self, xs):  # [batch, t, d]
        shape = xs.shape[:1] + (self.h,)
        state = (jnp.broadcast_to(self.h0[...], shape), jnp.broadcast_to(self.c0[...], shape))
        ys = []
        for t in range(xs.shape[1]):
            state, y = self.cell(state, xs[:, t])
            ys.append(y)
        return jnp.stack(ys, axis=1)


def _copy_lstm(hand, model, prefix):
    hand.x_gates.kernel.set_value(value(model, prefix + "linear.W").reshape(32, 4 * 64))  # [d, gate, h]
    hand.x_gates.bias.set_value(value(model, prefix + "linear.b").reshape(4 * 64))
    hand.h_gates.kernel.set_value(value(model, prefix + "linear_2.W").reshape(64, 4 * 64))


def test_lstm_cell_tuple_state_matches_hand_written():
    model = compile_diagram(circuit("lstm.circuit", "LSTMCell"), rngs=nnx.Rngs(0))
    randomise_biases(model)
    hand = HandLSTM(rngs=nnx.Rngs(1))
    _copy_lstm(hand, model, "")
    rng = np.random.default_rng(0)
    h, c, x = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((5, 64), (5, 64), (5, 32)))
    (h1, c1), y = run(model, (h, c), x)
    (h2, c2), y2 = nnx.jit(lambda m, s, x: m.cell(s, x))(hand, (h, c), x)
    close(h1, h2, what="h")
    close(c1, c2, what="c")
    close(y, y2, what="y")


def test_lstm_encoder_scan_matches_a_python_loop():
    model = compile_diagram(circuit("lstm.circuit", "LSTMEncoder"), rngs=nnx.Rngs(0))
    randomise_biases(model)
    for name in ("h0", "c0"):
        model.weight(name).set_value(jnp.linspace(-0.5, 0.5, 64))
    hand = HandLSTM(rngs=nnx.Rngs(1))
    _copy_lstm(hand, model, "lstm_cell.")
    hand.h0.set_value(value(model, "h0"))
    hand.c0.set_value(value(model, "c0"))
    xs = jnp.asarray(np.random.default_rng(0).normal(size=(3, 20, 32)), jnp.float32)
    close(run(model, xs), run(hand, xs), rtol=1e-4, atol=1e-5, what="ys")
    cot = jnp.asarray(np.random.default_rng(1).normal(size=(3, 20, 64)), jnp.float32)

    def loss(m, xs, cot):
        return jnp.sum(m(xs) * cot)

    g_model, g_hand = grads(loss, model, xs, cot), grads(loss, hand, xs, cot)
    close(g_model.lstm_cell.linear.W.get_value().reshape(32, 256), g_hand.x_gates.kernel.get_value(),
          rtol=1e-4, atol=1e-4, what="linear.W")
    close(g_model.lstm_cell.linear_2.W.get_value().reshape(64, 256), g_hand.h_gates.kernel.get_value(),
          rtol=1e-4, atol=1e-4, what="linear_2.W")
    close(g_model.h0.get_value(), g_hand.h0.get_value(), rtol=1e-4, atol=1e-4, what="h0")


# ---------------------------------------------------------------- Decoder (repeat with separate weights)


def _layernorm(x, scale, bias, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * scale[None, None] + bias[None, None]


def hand_decoder(W, tokens, copies=4, heads=4):
    """transformer.circuit's Decoder in eval mode, one loop iteration per copy of the repeat."""
    x = W["x.W"][tokens] + W["pos_embed"][None]
    n = tokens.shape[1]
    mask = jnp.tril(jnp.ones((n, n), bool))[None, None]
    for i in range(copies):
        w = {k[len("repeat.x."):]: v[i] for k, v in W.items() if k.startswith("repeat.x.")}
        y = _layernorm(x, w["layernorm.scale"], w["layernorm.bias"])
        q, k, v = (jnp.einsum("bsd,dhk->bshk", y, w[f"causal_self_attention.{m}.W"]) for m in "qkv")
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(float(q.shape[-1]))
        a = jax.nn.softmax(jnp.where(mask, s, -jnp.inf), axis=-1)
        x = x + jnp.einsum("bqhd,hdm->bqm", jnp.einsum("bhqk,bkhd->bqhd", a, v),
                           w["causal_self_attention.out.W"])
        y = _layernorm(x, w["layernorm_2.scale"], w["layernorm_2.bias"])
        hid = jax.nn.gelu(y @ w["feed_forward.linear.W"] + w["feed_forward.linear.b"][None, None])
        x = x + hid @ w["feed_forward.linear_2.W"] + w["feed_forward.linear_2.b"][None, None]
    x = _layernorm(x, W["layernorm.scale"], W["layernorm.bias"])
    return x @ W["out.W"]


def test_decoder_repeat_has_separate_weights_per_copy():
    model = compile_diagram(circuit("transformer.circuit", "Decoder"), rngs=nnx.Rngs(0))
    randomise_biases(model)
    model.eval()
    W = {n: value(model, n) for n, _, _ in model.diagram.weights()}
    assert W["repeat.x.causal_self_attention.q.W"].shape == (4, 64, 4, 16)
    q = W["repeat.x.causal_self_attention.q.W"]
    assert all(not np.allclose(q[i], q[j]) for i in range(4) for j in range(i))
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 16)), jnp.int32)
    close(run(model, tokens), jax.jit(hand_decoder)(W, tokens), rtol=1e-4, atol=1e-4, what="logits")
    # the weights of one copy are used by that copy only
    cot = jnp.asarray(np.random.default_rng(1).normal(size=(2, 16, 256)), jnp.float32)
    g = grads(lambda m, tokens, cot: jnp.sum(m(tokens) * cot), model, tokens, cot)
    g_ref = jax.jit(jax.grad(lambda W, tokens, cot: jnp.sum(hand_decoder(W, tokens) * cot)))(W, tokens, cot)
    for name in ("repeat.x.causal_self_attention.q.W", "repeat.x.feed_forward.linear.b", "x.W"):
        close(_at(g, name.split(".")).get_value(), g_ref[name], rtol=2e-3, atol=2e-4, what=name)
