"""Capturing wires for analysis: batch axes become the examples wherever the wire sits, in fixed-size batches."""
from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

import diagrammar
from diagrammar.analysis import capture
from diagrammar.errors import BadArgument

# a call broadcast over axis a, a repeat around another call, then a plain wire
PROBED = ("axis a = 3\naxis b = 4\n"
          "circuit G(x: [b]) -> [b]:\n    hid = relu(linear(x, b -> b))\n    return hid * 2\n"
          "circuit F(x: [a, b]) -> [a, b]:\n    t = tanh(x)\n    y = G(t)\n"
          "    repeat 2:\n        y = y + G(y)\n    return y")


@pytest.fixture(scope="module")
def model():
    return diagrammar.parse(PROBED)["F"].compile(rngs=nnx.Rngs(0))


def test_layout_counts_only_stacking_boxes(model):
    d = model.diagram
    assert capture.wire_layout(d, "t") == 0
    assert capture.wire_layout(d, "y.hid") == 0  # a broadcast call puts its axis after the batch
    assert capture.wire_layout(d, "repeat.y.hid") == 1
    with pytest.raises(BadArgument, match="no wire 'nope'.*t, y"):
        capture.wire_layout(d, "nope")


def test_stream_puts_examples_first_and_matches_a_direct_capture(model):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 3, 4)).astype(np.float32)

    def batches(size):
        for start in range(0, len(X), size):
            yield (X[start:start + size],), None

    examples = capture.Examples(10, batches, "10 random inputs")
    got = capture.collect(capture.stream_wires(model, examples, ["t", "y.hid", "repeat.y.hid"], batch_size=4))
    _, direct = model(X, capture=["t", "y.hid", "repeat.y.hid"])
    np.testing.assert_allclose(got["t"], np.tanh(X).reshape(10, 12), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["y.hid"], np.asarray(direct["y.hid"]).reshape(10, 12), rtol=1e-5, atol=1e-6)
    # [copies, batch, a, b] -> [batch, copies * a * b]
    rep = np.moveaxis(np.asarray(direct["repeat.y.hid"]), 1, 0).reshape(10, 24)
    assert got["repeat.y.hid"].shape == (10, 24)
    np.testing.assert_allclose(got["repeat.y.hid"], rep, rtol=1e-5, atol=1e-6)


def test_modadd_examples_cover_every_pair_once():
    ex = capture._modadd_examples(5, "ab", None, seed=0)
    pairs = [(int(a), int(b), int(y)) for (a_, b_), ys in ex.batches(7) for a, b, y in zip(a_, b_, ys)]
    assert ex.count == 25 and sorted(p[:2] for p in pairs) == [(a, b) for a in range(5) for b in range(5)]
    assert all(y == (a + b) % 5 for a, b, y in pairs)
    tokens = capture._modadd_examples(5, "tokens", 6, seed=0)
    (t,), _ = next(tokens.batches(100))
    assert t.shape == (6, 3) and np.all(t[:, 2] == 5)


def test_sort_examples_do_not_depend_on_the_batch_size():
    model = diagrammar.load("circuits/pointer.circuit")["PointerNet"].compile(rngs=nnx.Rngs(0), n=6, steps=6)
    ex = capture.task_examples("sort", model, {"n_min": 3, "n_max": 6}, 50)
    assert ex.count == 50 and "sort inputs of length 3..6" in ex.description
    small = capture.collect(capture.stream_wires(model, ex, ["enc"], batch_size=16))
    large = capture.collect(capture.stream_wires(model, ex, ["enc"], batch_size=64))
    assert small["enc"].shape == (50, 6 * 128)
    np.testing.assert_allclose(small["enc"], large["enc"], rtol=1e-5, atol=1e-6)
    _, direct = model(*next(ex.batches(50))[0], capture=["enc"])
    np.testing.assert_allclose(small["enc"], np.asarray(direct["enc"]).reshape(50, -1), rtol=1e-5, atol=1e-6)
