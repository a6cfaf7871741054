"""Many seeds in one compiled step: each seed is its single run, its folder is a single run's folder."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import diagrammar
from diagrammar.cli import main
from diagrammar.cli.train import seed_list
from diagrammar.train import checkpoint as ckpt
from diagrammar.train.loop import chunk_fn, default_optimizer, train
from diagrammar.train.modadd import ModAdd
from diagrammar.train.seeds import SeedDiverged, seed_folder, seeds_chunk, stack, train_seeds, unstack

# Dropout makes the test bite on the RNG state each seed carries; minibatches on the data order.
TINY_DROPOUT = """
axis p = 11
axis arg = 2
axis hidden = 24

circuit Tiny(a: int[], b: int[]) -> [p]:
    x = stack(onehot(a, p), onehot(b, p), along = arg)
    h = dropout(relu(linear(x, (arg, p) -> hidden)), 0.1)
    return linear(h, hidden -> p)
"""
P = 11
KW = dict(optimizer=default_optimizer(3e-3, 1.0), steps_per_call=10, eval_every=10, progress=False)


@pytest.fixture(scope="module")
def diagram(tmp_path_factory):
    path = tmp_path_factory.mktemp("circuit") / "tiny.circuit"
    path.write_text(TINY_DROPOUT)
    return diagrammar.load(str(path))["Tiny"]


def make_model(diagram):
    return lambda seed: diagram.compile(rngs=nnx.Rngs(seed))


def make_task(seed):
    return ModAdd(p=P, train_frac=0.5, seed=seed, batch_size=16)


def leaves(model):
    return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
            for x in jax.tree_util.tree_leaves(nnx.state(model))]


STEPS = 40


@pytest.fixture(scope="module")
def singles(diagram, tmp_path_factory):
    """The reference: seeds 0-3, each trained alone for STEPS steps by the single-seed trainer."""
    out = {}
    for s in range(4):
        model = make_model(diagram)(s)
        folder = tmp_path_factory.mktemp(f"single-{s}")
        result = train(model, make_task(s), steps=STEPS, seed=s, out_dir=folder, **KW)
        out[s] = (model, result, folder)
    return out


def assert_same_weights(a_model, b_model):
    for x, y in zip(leaves(a_model), leaves(b_model), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)


def assert_same_history(a_history, b_history):
    assert [r["step"] for r in a_history] == [r["step"] for r in b_history]
    for r, q in zip(a_history, b_history):
        for key in ("train_loss", "test_loss", "train_acc", "test_acc"):
            assert r[key] == pytest.approx(q[key], rel=1e-4, abs=1e-5), (r["step"], key)


@pytest.mark.slow  # several compiled runs: 20-50 s on the shared 2-core machine
def test_each_seed_equals_its_single_run_and_its_folder_is_a_single_runs(diagram, singles, tmp_path):
    seeds = [0, 2]
    many = train_seeds(make_model(diagram), make_task, seeds, steps=STEPS, out_dir=tmp_path, **KW)
    assert list(many.results) == seeds
    assert not all(np.allclose(x, y) for x, y in zip(leaves(many.models[0]), leaves(many.models[2])))
    for s in seeds:
        single, ref, folder = singles[s]
        assert many.results[s].step == ref.step == STEPS
        assert_same_weights(many.models[s], single)
        assert_same_history(many.results[s].history, ref.history)
        mine = seed_folder(tmp_path, s)
        logged = [json.loads(line) for line in (mine / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in logged] == [0, 10, 20, 30, 40]
        assert (mine / "curves.png").is_file()
        # The same settings record as a single run's, so the single-seed trainer accepts the folder.
        assert ckpt.load_meta(mine / "checkpoint.npz")["config"] == ckpt.load_meta(folder / "checkpoint.npz")["config"]


@pytest.mark.slow  # several compiled runs: 20-50 s on the shared 2-core machine
def test_per_seed_checkpoints_resume_alone_or_together(diagram, singles, tmp_path):
    seeds = [1, 3]
    train_seeds(make_model(diagram), make_task, seeds, steps=20, out_dir=tmp_path, **KW)
    # Seed 3's folder continued by the single-seed trainer ...
    res = train(make_model(diagram)(3), make_task(3), steps=30, seed=3, out_dir=seed_folder(tmp_path, 3), **KW)
    assert res.resumed_from == 20 and res.step == 30
    # ... then the pair resumed together: seed 1 lags at 20 and is caught up before both go on.
    both = train_seeds(make_model(diagram), make_task, seeds, steps=STEPS, out_dir=tmp_path, **KW)
    assert both.results[1].resumed_from == both.results[3].resumed_from == 30
    for s in seeds:
        assert_same_weights(both.models[s], singles[s][0])
        assert_same_history(both.results[s].history, singles[s][1].history)


def test_the_many_seed_chunk_is_the_single_seed_chunk_vmapped_and_a_stopped_seed_keeps_its_state(diagram):
    """The compiled step both trainers run: one seed's slice of the vmapped chunk is that seed's own chunk."""
    tx = KW["optimizer"]
    states, tasks = [], [make_task(s) for s in (0, 1)]
    for s in (0, 1):
        model = make_model(diagram)(s)
        model.train()
        graph, params, rest = nnx.split(model, nnx.Param, ...)
        states.append((params, rest, tx.init(params), dict(tasks[s].train_data)))
    chunk = chunk_fn(tasks[0], graph, tx)
    start = jnp.int32(20)  # mid-run: the minibatches of steps 20-29, as a resumed run draws them
    (new, (losses, aux)) = jax.jit(seeds_chunk(chunk), static_argnames="length")(
        *stack(states), jnp.asarray([0, 1], "uint32"), jnp.asarray([True, False]), start, length=10)
    assert losses.shape == (2, 10) and aux["acc"].shape == (2, 10)
    alone, (alone_losses, _) = jax.jit(chunk, static_argnames="length")(
        *states[0], jnp.uint32(0), start, length=10)
    np.testing.assert_allclose(losses[0], alone_losses, rtol=1e-5, atol=1e-6)
    for x, y in zip(jax.tree.leaves(unstack(new, 0)), jax.tree.leaves(alone), strict=True):
        x, y = (jax.random.key_data(v) if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key) else v for v in (x, y))
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)
    # Seed 1 is not active: every leaf of its state comes back as it went in, bit for bit.
    for x, y in zip(jax.tree.leaves(unstack(new, 1)), jax.tree.leaves(states[1][:3]), strict=True):
        x, y = (jax.random.key_data(v) if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key) else v for v in (x, y))
        np.testing.assert_array_equal(x, y)


def test_a_seed_that_meets_the_stopping_rule_stops_as_its_single_run(diagram, singles):
    stop = lambda row: row["train_loss"] < 2.305  # noqa: E731  (seeds 0-3 cross it at steps 30, 20, 40, 30)
    many = train_seeds(make_model(diagram), make_task, range(4), steps=STEPS, stop_when=stop, **KW)
    stopped_at = {s: r.step for s, r in many.results.items()}
    assert len(set(stopped_at.values())) > 1, stopped_at
    for s in range(4):
        ref = singles[s][1].history
        cut = next(i for i, row in enumerate(ref) if stop(row))
        # A single run with the rule ends at that evaluation; its last row there reads the frozen weights.
        assert many.results[s].step == ref[cut]["step"] and many.results[s].stopped_early
        assert_same_history(many.results[s].history, ref[:cut + 1])


def test_a_diverging_seed_is_named(diagram):
    with pytest.raises(SeedDiverged, match=r"seed \d+: training diverged") as info:
        train_seeds(make_model(diagram), make_task, [0, 1], steps=20, **{**KW, "optimizer": default_optimizer(1e30)})
    assert info.value.seed in (0, 1)


def test_models_of_other_shapes_are_refused(diagram, tmp_path):
    path = tmp_path / "tiny.circuit"
    path.write_text(TINY_DROPOUT)
    other = diagrammar.load(str(path), sizes={"hidden": 8})["Tiny"]
    models = {0: diagram.compile(rngs=nnx.Rngs(0)), 1: other.compile(rngs=nnx.Rngs(1))}
    with pytest.raises(ValueError, match="seed 1 differs in structure or shapes"):
        train_seeds(models.__getitem__, make_task, [0, 1], steps=10, **KW)


@pytest.mark.parametrize("text,seeds", [("0-3", (0, 1, 2, 3)), ("0,3,5", (0, 3, 5)), ("0-2, 7", (0, 1, 2, 7)),
                                        ("4", (4,))])
def test_seed_lists_parse(text, seeds):
    assert seed_list(text) == seeds


@pytest.mark.parametrize("text,message", [
    ("3-1", "the range 3-1 runs backwards; write 1-3"),
    ("0,1,1", "seed 1 is given twice"),
    ("0-2,2", "seed 2 is given twice"),
    ("a-b", "is not a list of seeds"),
    ("", "is not a list of seeds"),
    ("-3", "is not a list of seeds"),
    ("0,,1", "is not a list of seeds"),
    ("4294967296", "over the largest seed"),
    ("0-99999", "more than 4096 seeds"),
])
def test_bad_seed_lists_exit_2_with_one_message(text, message, tiny, tmp_path, capsys):
    code = main(["train", tiny, "--circuit", "Tiny", "--seeds", text, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "--seeds" in err and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # several compiled runs: 20-50 s on the shared 2-core machine
def test_cli_seeds_train_together_as_single_seed_runs(tiny, tmp_path, capsys):
    common = [tiny, "--circuit", "Tiny", "--steps", "20", "--batch-size", "8", "--eval-every", "10",
              "--steps-per-call", "10", "--no-progress", "--no-stop"]
    assert main(["train", *common, "--seeds", "0,3", "--out", str(tmp_path / "many")]) == 0
    out = capsys.readouterr().out
    assert "Tiny seed 0: 20 steps" in out and "Tiny seed 3: 20 steps" in out
    # Seed 3's folder is a single run's: --seed 3 resumes it (finished, so nothing more to do) ...
    assert main(["train", *common, "--seed", "3", "--out", str(tmp_path / "many" / "seed-3")]) == 0
    assert "resumed from step 20" in capsys.readouterr().out
    # ... and holds the same numbers as a single run from scratch.
    assert main(["train", *common, "--seed", "3", "--out", str(tmp_path / "single")]) == 0
    rows = lambda folder: [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    for r, q in zip(rows(tmp_path / "many" / "seed-3"), rows(tmp_path / "single"), strict=True):
        assert r["step"] == q["step"] and r["test_loss"] == pytest.approx(q["test_loss"], rel=1e-4)
    # Another learning rate is another run: refused with exit 2, as for one seed.
    assert main(["train", *common, "--seeds", "0,3", "--lr", "0.01", "--out", str(tmp_path / "many")]) == 2
    assert "other settings" in capsys.readouterr().err
