"""v1 §9: batchnorm with running statistics, compiled and compared with NumPy.

The references write out PyTorch's nn.BatchNorm1d/2d (torch is not installed): in training the batch
mean and biased variance over every axis but the channels, then running_mean <- (1 - 0.1) * running_mean
+ 0.1 * mean and running_var <- (1 - 0.1) * running_var + 0.1 * var * N / (N - 1) (PyTorch's momentum=0.1
is the language's momentum = 0.9); in eval the running statistics.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import diagrammar
from diagrammar import Size

RNG = np.random.default_rng(0)


def rnd(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def torch_batchnorm_train(x, axes, scale, bias, rm, rv, momentum=0.1, eps=1e-5):
    """nn.BatchNorm*d.forward in training: (y, new running_mean, new running_var). `axes` are reduced."""
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)  # biased, for the output
    n = np.prod([x.shape[a] for a in axes])
    y = (x - mean) / np.sqrt(var + eps) * scale + bias
    new_rm = (1 - momentum) * rm + momentum * mean.squeeze()
    new_rv = (1 - momentum) * rv + momentum * var.squeeze() * n / (n - 1)  # unbiased, for the running var
    return y, new_rm, new_rv


def torch_batchnorm_eval(x, scale, bias, rm, rv, eps=1e-5):
    return (x - rm) / np.sqrt(rv + eps) * scale + bias


def close(got, want, atol=1e-4):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), atol=atol, rtol=1e-4)


CONV_BN = """
axis c = 3, hh = 4, ww = 5
circuit F(x: [c, hh, ww]) -> [c, hh, ww]:
    bn1 = batchnorm(x, over = (hh, ww))
    return bn1
"""

BN_CALLED = """
axis c = 3, h = 4, w = 2
circuit BN(x: [c]) -> [c]:
    return batchnorm(x)
circuit F(x: [h, w, c]) -> [h, w, c]:
    n = BN(x)
    return n
"""


def _model(text, name="F", **sizes):
    return diagrammar.parse(text)[name].compile(rngs=nnx.Rngs(0), **sizes)


def test_batchnorm2d_train_then_eval():
    m = _model(CONV_BN)
    scale, bias = rnd(3), rnd(3)
    m.weight("bn1.scale")[...] = jnp.asarray(scale)
    m.weight("bn1.bias")[...] = jnp.asarray(bias)
    rm, rv = np.zeros(3), np.ones(3)
    for _ in range(2):  # two steps: the running statistics compound
        x = rnd(6, 3, 4, 5) * 2 + 1
        y, rm, rv = torch_batchnorm_train(x, (0, 2, 3), scale[:, None, None], bias[:, None, None], rm, rv)
        close(m(x), y)
        close(m.weight("bn1.running_mean")[...], rm)
        close(m.weight("bn1.running_var")[...], rv)
    m.eval()
    x = rnd(2, 3, 4, 5)
    y = torch_batchnorm_eval(x, scale[:, None, None], bias[:, None, None], rm[:, None, None], rv[:, None, None])
    close(m(x), y)
    close(m.weight("bn1.running_mean")[...], rm)  # eval leaves the statistics alone
    m.train()
    m(x)
    assert not np.allclose(m.weight("bn1.running_mean")[...], rm)


def test_a_per_channel_circuit_called_on_an_image_normalises_over_batch_h_and_w():
    # BN(x: [c]) broadcast over [h, w] normalises per channel over batch, h and w, as BatchNorm2d
    m = _model(BN_CALLED)
    x = rnd(5, 4, 2, 3)
    y, rm, rv = torch_batchnorm_train(x, (0, 1, 2), 1.0, 0.0, np.zeros(3), np.ones(3))
    close(m(x), y)
    close(m.weight("n.out.running_mean")[...], rm)
    close(m.weight("n.out.running_var")[...], rv)  # N = 5 * 4 * 2 in the unbiased factor


def test_batchnorm1d_with_momentum_and_eps():
    m = _model("""
axis f = 4
circuit F(x: [f]) -> [f]:
    return batchnorm(x, momentum = 0.99, eps = 0.1)
""")
    x = rnd(7, 4)
    y, rm, rv = torch_batchnorm_train(x, (0,), 1.0, 0.0, np.zeros(4), np.ones(4), momentum=0.01, eps=0.1)
    close(m(x), y)
    close(m.weight("out.running_mean")[...], rm)
    close(m.weight("out.running_var")[...], rv)


def test_training_on_one_value_per_feature_is_a_value_error_and_changes_nothing():
    m = _model("""
axis f = 4
circuit F(x: [f]) -> [f]:
    return batchnorm(x)
""")
    with pytest.raises(ValueError, match="1 value per feature"):
        m(rnd(4))
    with pytest.raises(ValueError):
        m(rnd(1, 4))
    close(m.weight("out.running_mean")[...], np.zeros(4))
    m.eval()
    close(m(rnd(4)).shape, (4,))  # eval needs no batch
    m2 = _model(CONV_BN)  # over (hh, ww): one image still has N = 20 values per channel
    m2(rnd(3, 4, 5))


def test_state_is_batch_stats_not_parameters():
    d = diagrammar.parse(CONV_BN)["F"]
    assert d.parameter_count() == Size.of(6) and d.state_count() == Size.of(6)
    assert [n for n, _, _ in d.weights()] == ["bn1.scale", "bn1.bias"]
    assert [n for n, _, _ in d.state()] == ["bn1.running_mean", "bn1.running_var"]
    assert d.summary().endswith("2 weights, 6 parameters, 6 state")
    assert "state" not in diagrammar.parse("axis d = 2\ncircuit G(x: [d]) -> [d]:\n    return x\n")["G"].summary()
    m = d.compile(rngs=nnx.Rngs(0))
    assert isinstance(m.weight("bn1.running_var"), nnx.BatchStat)
    assert isinstance(m.weight("bn1.scale"), nnx.Param)
    params = jax.tree.leaves(nnx.state(m, nnx.Param))
    stats = jax.tree.leaves(nnx.state(m, nnx.BatchStat))
    assert sum(p.size for p in params) == 6 and sum(s.size for s in stats) == 6
    from diagrammar.backends.cost import analyse
    assert analyse(d, batch=4).parameters.number == 6


def test_repeat_stacks_running_statistics_per_copy():
    m = _model("""
axis d = 3
circuit F(x: [d]) -> [d]:
    repeat 2:
        x = relu(batchnorm(linear(x, d -> d)))
    return x
""")
    (prefix,) = {n.rsplit(".", 1)[0] for n, _, _ in m.diagram.state()}
    assert m.weight(f"{prefix}.running_mean").shape == (2, 3)
    w = [np.asarray(m.weight(n)[...]) for n in sorted(s.dotted for s in m._plan.weights if s.dotted.endswith(".W"))]
    b = [np.asarray(m.weight(n)[...]) for n in sorted(s.dotted for s in m._plan.weights if s.dotted.endswith(".b"))]
    x = rnd(6, 3)
    h, rms, rvs = x, [], []
    for k in range(2):
        z = h @ w[0][k] + b[0][k]
        y, rm, rv = torch_batchnorm_train(z, (0,), 1.0, 0.0, np.zeros(3), np.ones(3))
        h = np.maximum(y, 0)
        rms.append(rm)
        rvs.append(rv)
    close(m(x), h)
    close(m.weight(f"{prefix}.running_mean")[...], np.stack(rms))
    close(m.weight(f"{prefix}.running_var")[...], np.stack(rvs))


def test_gradients_flow_through_the_batch_statistics_not_into_the_running_ones():
    m = _model(CONV_BN)
    x, cot = rnd(4, 3, 4, 5), rnd(4, 3, 4, 5)

    def reference(x, scale, bias):  # the training-mode formula in jnp
        mean = x.mean(axis=(0, 2, 3), keepdims=True)
        var = jnp.square(x - mean).mean(axis=(0, 2, 3), keepdims=True)
        return (x - mean) / jnp.sqrt(var + 1e-5) * scale[:, None, None] + bias[:, None, None]

    scale, bias = jnp.asarray(rnd(3)), jnp.asarray(rnd(3))
    m.weight("bn1.scale")[...] = scale
    m.weight("bn1.bias")[...] = bias
    want = jax.grad(lambda x, s, b: jnp.sum(reference(x, s, b) * cot), argnums=(0, 1, 2))(x, scale, bias)

    def loss(model, x):
        return jnp.sum(model(x) * cot)

    got_x = jax.grad(lambda x: loss(nnx.clone(m), x))(jnp.asarray(x))
    grads = nnx.grad(loss, argnums=nnx.DiffState(0, nnx.Param))(m, jnp.asarray(x))
    close(got_x, want[0], atol=1e-3)
    close(grads.bn1.scale[...], want[1], atol=1e-3)
    close(grads.bn1.bias[...], want[2], atol=1e-3)
    assert "running_mean" not in str(jax.tree_util.tree_structure(grads))


def test_training_updates_running_statistics_and_checkpoints_keep_them(tmp_path):
    from diagrammar.train import checkpoint as ckpt
    from diagrammar.train import train

    text = """
axis f = 3, o = 2
circuit F(x: [f]) -> [o]:
    return linear(batchnorm(x), f -> o)
"""

    class Task:
        batch_size = 8

        def __init__(self):
            xs = np.random.default_rng(1).standard_normal((32, 3)).astype(np.float32) * 3 + 2
            self.train_data = self.test_data = {"x": xs, "y": xs[:, :2] * 0.5}

        def loss(self, model, batch, training):
            err = jnp.mean(jnp.square(model(batch["x"]) - batch["y"]))
            return err, {}

    m = _model(text)
    train(m, Task(), steps=4, steps_per_call=2, out_dir=tmp_path, progress=False)
    name = next(n for n, _, _ in m.diagram.state() if n.endswith("running_mean"))
    rm = np.asarray(m.weight(name)[...])
    assert np.all(rm > 0.5)  # four updates towards the data's mean (about 2)
    tree = {k: v for k, v in np.load(ckpt.checkpoint_path(tmp_path)).items() if k != "__meta__"}
    assert any(np.allclose(v, rm) for v in tree.values() if v.shape == (3,)), "the checkpoint holds the statistics"
    fresh = _model(text)
    train(fresh, Task(), steps=4, steps_per_call=2, out_dir=tmp_path, progress=False)  # resumes: nothing to do
    close(fresh.weight(name)[...], rm)


def test_cost_is_the_eval_mode_affine_map():
    from diagrammar.backends.cost import analyse

    report = analyse(diagrammar.parse(CONV_BN)["F"], batch=4)
    n, features = 4 * 3 * 4 * 5, 3
    assert report.flops["elementwise"].number == 2 * n + 3 * features
    assert report.flops["transcendental"].number == features
    assert report.parameters.number == 2 * features  # running statistics are not parameters
