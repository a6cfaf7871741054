"""The training loop: it learns, resumes bit-exactly, stops on NaN, never leaves a partial checkpoint."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diagrammar.train import checkpoint as ckpt
from diagrammar.train.loop import TrainingDiverged, batch_at, default_optimizer, train
from diagrammar.train.modadd import ModAdd

P = 23


class MLP(nnx.Module):
    """onehot(a), onehot(b) stacked -> Linear(2p -> hidden) -> relu [-> dropout] -> Linear(hidden -> p)."""

    def __init__(self, p, hidden, *, rngs, dropout=0.0):
        self.p = p
        self.l1 = nnx.Linear(2 * p, hidden, rngs=rngs)
        self.l2 = nnx.Linear(hidden, p, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs) if dropout else None

    def __call__(self, a, b):
        x = jnp.concatenate([jax.nn.one_hot(a, self.p), jax.nn.one_hot(b, self.p)], axis=-1)
        h = jax.nn.relu(self.l1(x))
        if self.drop is not None:
            h = self.drop(h)
        return self.l2(h)


def leaves(model):
    return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
            for x in jax.tree_util.tree_leaves(nnx.state(model))]


def test_mlp_learns_modadd_to_full_train_accuracy(tmp_path):
    task = ModAdd(p=P, train_frac=0.5, seed=0)
    model = MLP(P, 128, rngs=nnx.Rngs(0))
    result = train(model, task, steps=3000, optimizer=default_optimizer(3e-3, 1.0), steps_per_call=50,
                   out_dir=tmp_path, progress=False, stop_when=lambda m: m["train_acc"] == 1.0)
    assert result.metrics["train_acc"] == 1.0
    assert result.stopped_early and result.step < 3000
    # The model object now holds the trained weights.
    loss, aux = task.loss(model, task.train_data, False)
    assert float(aux["acc"]) == 1.0
    # Running the same thing again resumes a finished run: nothing more to do.
    again = train(MLP(P, 128, rngs=nnx.Rngs(0)), task, steps=3000, optimizer=default_optimizer(3e-3, 1.0),
                  steps_per_call=50, out_dir=tmp_path, progress=False, stop_when=lambda m: m["train_acc"] == 1.0)
    assert again.step == result.step and again.resumed_from == result.step and again.stopped_early


@pytest.mark.parametrize("interrupt", ["stop", "keyboard"])
def test_killed_and_resumed_run_matches_uninterrupted_run(tmp_path, interrupt):
    # Dropout and minibatches make the test bite: both RNG streams must be restored exactly.
    task = ModAdd(p=P, train_frac=0.5, seed=1, batch_size=64)
    kw = dict(optimizer=default_optimizer(1e-3, 1.0), steps_per_call=25, eval_every=50, seed=3, progress=False)
    make = lambda: MLP(P, 64, rngs=nnx.Rngs(7), dropout=0.1)  # noqa: E731

    full = make()
    ref = train(full, task, steps=200, out_dir=tmp_path / "full", **kw)

    first = make()
    if interrupt == "stop":
        train(first, task, steps=100, out_dir=tmp_path / "cut", **kw)
    else:
        def kill(row):
            if row["step"] == 150:
                raise KeyboardInterrupt
            return False

        with pytest.raises(KeyboardInterrupt):
            train(first, task, steps=200, out_dir=tmp_path / "cut", checkpoint_every=1000, stop_when=kill, **kw)
        assert ckpt.load_meta(tmp_path / "cut" / "checkpoint.npz")["step"] == 150
    second = make()  # a fresh process would build the model from its seed again
    res = train(second, task, steps=200, out_dir=tmp_path / "cut", **kw)

    assert res.step == ref.step == 200
    for x, y in zip(leaves(full), leaves(second), strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time"} for r in h]  # noqa: E731
    assert strip(res.history) == strip(ref.history)
    logged = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert strip(logged) == strip(ref.history)


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    task = ModAdd(p=P, seed=0)
    train(MLP(P, 32, rngs=nnx.Rngs(0)), task, steps=10, steps_per_call=10, out_dir=tmp_path, progress=False)
    with pytest.raises(ckpt.CheckpointMismatch, match="seed"):
        train(MLP(P, 32, rngs=nnx.Rngs(0)), task, steps=20, out_dir=tmp_path, seed=1, progress=False)
    with pytest.raises(ckpt.CheckpointMismatch, match="different model"):
        train(MLP(P, 48, rngs=nnx.Rngs(0)), task, steps=20, out_dir=tmp_path, progress=False)
    # resume=False starts afresh instead.
    res = train(MLP(P, 48, rngs=nnx.Rngs(0)), task, steps=10, steps_per_call=10, out_dir=tmp_path,
                resume=False, progress=False)
    assert res.step == 10 and [r["step"] for r in res.history] == [0, 10]


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    task = ModAdd(p=P, seed=0)
    model = MLP(P, 32, rngs=nnx.Rngs(0))
    tx = default_optimizer(1e30)
    with pytest.raises(TrainingDiverged) as info:
        train(model, task, steps=100, optimizer=tx, steps_per_call=5, out_dir=tmp_path, progress=False)
    err = info.value
    assert 0 < err.step < 100 and f"at step {err.step}" in str(err)
    assert not np.isfinite(err.loss)
    assert err.checkpoint == tmp_path / "checkpoint.npz" and err.checkpoint_step <= err.step
    assert str(err.checkpoint) in str(err)
    # The checkpoint left behind loads and holds finite weights.
    state = nnx.split(MLP(P, 32, rngs=nnx.Rngs(0)), nnx.Param, ...)[1:]
    tree, meta = ckpt.load(err.checkpoint, (*state, tx.init(state[0])))
    assert meta["step"] == err.checkpoint_step
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(tree[0]))
    # The model is left at the last finite state.
    assert all(np.isfinite(x).all() for x in leaves(model))


def test_a_task_whose_loss_is_nan_names_step_zero(tmp_path):
    class Broken(ModAdd):
        def loss(self, model, batch, train):
            loss, aux = super().loss(model, batch, train)
            return loss * jnp.nan, aux

    with pytest.raises(TrainingDiverged, match="at step 0"):
        train(MLP(P, 16, rngs=nnx.Rngs(0)), Broken(p=P), steps=10, steps_per_call=5, out_dir=tmp_path,
              progress=False)
    assert ckpt.load_meta(tmp_path / "checkpoint.npz")["step"] == 0


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_checkpoint_is_never_partial(tmp_path, monkeypatch, failing):
    path = tmp_path / "checkpoint.npz"
    old = {"w": jnp.arange(6.0).reshape(2, 3), "k": jax.random.key(1)}
    ckpt.save(path, old, {"step": 1})
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save(path, {"w": jnp.ones((2, 3)), "k": jax.random.key(2)}, {"step": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz"]  # no temp file left behind
    tree, meta = ckpt.load(path, old)
    assert meta["step"] == 1 and np.array_equal(tree["w"], old["w"])
    assert np.array_equal(jax.random.key_data(tree["k"]), jax.random.key_data(old["k"]))


def test_truncated_checkpoint_is_refused_by_name(tmp_path):
    path = tmp_path / "checkpoint.npz"
    ckpt.save(path, {"w": jnp.zeros(3)}, {"step": 1})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ckpt.CheckpointMismatch, match="not a readable checkpoint"):
        ckpt.load(path, {"w": jnp.zeros(3)})


def test_metrics_log_and_plots(tmp_path):
    task = ModAdd(p=P, seed=0)
    res = train(MLP(P, 32, rngs=nnx.Rngs(0)), task, steps=40, steps_per_call=10, eval_every=20,
                out_dir=tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 20, 40]
    for r in rows:
        assert {"train_loss", "train_acc", "test_loss", "test_acc", "time", "ipr", "key_freqs"} <= set(r)
    assert rows == res.history
    for name in ("curves.png", "fourier.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert tmp_path / name in res.files
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    # Running again with the same target is a no-op that reports the finished run.
    again = train(MLP(P, 32, rngs=nnx.Rngs(5)), task, steps=40, out_dir=tmp_path, progress=False)
    assert again.step == 40 and again.history == res.history


def test_progress_bar_runs(tmp_path, capsys):
    train(MLP(P, 16, rngs=nnx.Rngs(0)), ModAdd(p=P), steps=20, steps_per_call=10, progress=True)
    err = capsys.readouterr().err
    assert "20/20" in err and "test_acc" in err


def test_batches_are_a_pure_function_of_seed_and_step():
    data = {"x": jnp.arange(100), "y": jnp.arange(100) * 2}
    b1, b2 = batch_at(data, 0, 5, 10), batch_at(data, 0, 5, 10)
    assert np.array_equal(b1["x"], b2["x"]) and np.array_equal(b1["y"], b1["x"] * 2)
    assert len(set(np.asarray(b1["x"]).tolist())) == 10
    assert not np.array_equal(b1["x"], batch_at(data, 0, 6, 10)["x"])
    assert not np.array_equal(b1["x"], batch_at(data, 1, 5, 10)["x"])
    assert batch_at(data, 0, 5, None)["x"].shape == (100,)


def test_batches_walk_shuffled_epochs_and_the_trainer_draws_the_same():
    """Each epoch visits every example once (batches may straddle epochs); the trainer's per-chunk
    draw (one permutation per epoch) gives exactly batch_at's batches."""
    data = {"x": jnp.arange(30)}
    seen = np.concatenate([np.asarray(batch_at(data, 3, s, 7)["x"]) for s in range(30)])  # 210 = 7 epochs
    for e in range(7):
        assert sorted(seen[30 * e:30 * (e + 1)].tolist()) == list(range(30))
    assert not np.array_equal(seen[:30], seen[30:60])
    from diagrammar.train.loop import _chunk_batches
    for start, length in ((0, 30), (11, 5), (4, 1)):
        chunk = np.asarray(jax.jit(_chunk_batches, static_argnums=(3, 4))(data, 3, jnp.int32(start), length, 7))
        want = np.stack([np.asarray(batch_at(data, 3, s, 7)["x"]) for s in range(start, start + length)])
        np.testing.assert_array_equal(chunk, want)


def test_a_loss_of_exactly_zero_stays_on_the_log_plot(tmp_path):
    from diagrammar.train.plots import _floor_zeros, plot_history

    assert _floor_zeros([1.0, 1e-8, 0.0, 1e-3]) == [1.0, 1e-8, 1e-8, 1e-3]
    assert _floor_zeros([0.0, 0.0]) == [0.0, 0.0]
    rows = [{"step": s, "train_loss": l, "test_loss": 1.0} for s, l in ((0, 1.0), (100, 0.0), (200, 1e-6))]
    assert plot_history(rows, tmp_path / "c.png").stat().st_size > 0


def test_unrolled_scan_trains_the_same_steps():
    """`unroll` changes how the compiled loop is laid out, not which steps it takes."""
    task = ModAdd(p=P, batch_size=32)
    runs = [train(MLP(P, 16, rngs=nnx.Rngs(0)), task, steps=12, steps_per_call=6, progress=False, unroll=u)
            for u in (1, 3)]
    assert [r["step"] for r in runs[0].history] == [r["step"] for r in runs[1].history] == [0, 6, 12]
    np.testing.assert_allclose(runs[0].metrics["train_loss"], runs[1].metrics["train_loss"], rtol=1e-4)
    assert runs[0].metrics["train_loss"] < runs[0].history[0]["train_loss"]
