"""Global workspace a + b: the circuits, the task, a real training run, the train command."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import diagrammar
from diagrammar.cli import main
from diagrammar.train.loop import default_optimizer, train
from diagrammar.train.workspace import (WorkspaceAdd, affine_images, answer_logits, augment_images, model_parts,
                                        parameter_count, probe_inputs)

WORKSPACE = "circuits/workspace.circuit"
BASELINES = "circuits/workspace_baselines.circuit"


@pytest.fixture(scope="module")
def program():
    return diagrammar.load(WORKSPACE)


@pytest.fixture(scope="module")
def baselines():
    return diagrammar.load(BASELINES)


def test_hand_designed_modules_shift_numbers(program):
    m = program["Modules"].compile(rngs=nnx.Rngs(0))
    oh = lambda k: jax.nn.one_hot(jnp.asarray(k), 19)  # noqa: E731
    values, counts, answers = m(oh([4, 0]), oh([2, 0]), oh([7, 7]), oh([3, 3]), oh([5, 5]))
    # input writes (a, b, keeps the answer); increment (value + 1, count - 1); output (answer = value)
    assert np.argmax(values, -1).tolist() == [[3, 5, 4], [3, 1, 0]]
    assert np.argmax(counts, -1).tolist() == [[5, 1, 2], [5, 0, 0]]
    assert float(counts[1, 1].sum()) == 0.0  # counting down from 0 leaves nothing: the counter is spent
    assert np.argmax(answers, -1).tolist() == [[7, 7, 4], [7, 7, 0]]


def test_patches_convolve_like_lax(program):
    img = jax.random.normal(jax.random.key(1), (3, 8, 8))
    p = program["Patches"].compile(rngs=nnx.Rngs(0))(img)
    w = jax.random.normal(jax.random.key(2), (3, 3, 4))
    ours = jnp.einsum("nykxl,klc->nyxc", p, w)
    ref = jax.lax.conv_general_dilated(img[..., None], w[:, :, None, :], (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    assert np.allclose(ours, ref, atol=1e-5)


def test_parameters_and_a_baseline_on_the_task(program, baselines):
    count = {name: prog[name].parameter_count().value for prog, names in
             ((program, ("Workspace", "WorkspaceDigits")),
              (baselines, ("LSTMAdder", "TransformerAdder", "LSTMDigits", "TransformerDigits"))) for name in names}
    ws = program["Workspace"].compile(rngs=nnx.Rngs(0))
    assert probe_inputs(ws) == ("ints", 19) and count["Workspace"] == parameter_count(ws) == 1283
    # the workspace models are the smaller ones, as the paper claims
    assert count["Workspace"] * 10 < min(count["LSTMAdder"], count["TransformerAdder"])
    assert count["WorkspaceDigits"] * 3 < min(count["LSTMDigits"], count["TransformerDigits"])
    # a baseline takes the task as it is: no steps, no routing
    lstm = baselines["LSTMAdder"].compile(rngs=nnx.Rngs(0))
    task = WorkspaceAdd()
    loss, aux = task.loss(lstm, task.train_data, False)
    assert probe_inputs(lstm) == ("ints", 19) and np.isfinite(float(loss)) and set(aux) == {"acc"}


def test_task_splits_horizons_and_losses():
    t = WorkspaceAdd()
    assert {k: len(v["a"]) for k, v in t.sets.items()} == {"seen": 56, "heldout": 14, "extrap": 24, "extrap_full": 30}
    assert t.horizons == {"seen": 8, "heldout": 8, "extrap": 11, "extrap_full": 11}
    assert t.increments.tolist() == list(range(15))

    def oracle(a, b, ready_at=None):
        """Answers per step: wrong until step b + 2 (or ready_at), then the sum."""
        steps = jnp.arange(11)[None, :]
        ready = (b[:, None] + 2 if ready_at is None else ready_at) <= steps + 1
        good = 20.0 * jax.nn.one_hot(a + b, 19)[:, None]
        return jnp.where(ready[..., None], good, 20.0 * jax.nn.one_hot(0 * a, 19)[:, None])

    loss, aux = t.loss(oracle, t.train_data, True)
    assert float(aux["acc"]) == 1.0 and float(loss) < 1e-6
    # an answer that is right at the horizon but late costs under the deadline, not without it
    late = lambda a, b: oracle(a, b, ready_at=8)  # noqa: E731
    assert float(t.loss(late, t.train_data, True)[1]["acc"]) == 1.0
    assert float(t.loss(late, t.train_data, True)[0]) > 1.0
    assert float(WorkspaceAdd(deadline=False).loss(late, t.train_data, True)[0]) < 1e-6
    # extrapolation is read after 11 steps, seen pairs after 8
    ans = oracle(t.sets["extrap"]["a"], t.sets["extrap"]["b"])
    assert np.all(np.argmax(answer_logits(ans, 11), -1) == t.sets["extrap"]["sum"])
    assert not np.all(np.argmax(answer_logits(ans, 8), -1) == t.sets["extrap"]["sum"])


def moved(img, dy, dx):
    """``img`` moved down by dy and right by dx whole pixels, zeros coming in."""
    out = np.zeros_like(img)
    h, w = img.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = img[max(-dy, 0):h - max(dy, 0),
                                                                    max(-dx, 0):w - max(dx, 0)]
    return out


def test_affine_images_rotate_scale_and_move():
    imgs = np.asarray(jax.random.uniform(jax.random.key(0), (3, 8, 8)))
    angle, scale = jnp.array([0.0, np.pi / 2, 0.0]), jnp.array([1.0, 1.0, 1.0])
    out = np.asarray(affine_images(jnp.asarray(imgs), angle, scale, jnp.array([[0.0, 0.0], [0.0, 0.0], [1.0, -1.0]])))
    assert np.allclose(out[0], imgs[0]) and np.allclose(out[1], np.rot90(imgs[1]), atol=1e-5)
    assert np.allclose(out[2], moved(imgs[2], 1, -1))
    half = np.asarray(affine_images(jnp.asarray(imgs[:1]), jnp.zeros(1), jnp.array([0.5]), jnp.zeros((1, 2))))
    assert half[0, 0].sum() == 0 and half[0, :, 0].sum() == 0  # shrunk: the border is background


def test_augment_images_draws_a_warp_per_image():
    imgs = jax.random.uniform(jax.random.key(0), (2, 20, 8, 8))
    assert augment_images(jax.random.key(1), imgs, 0.0, 0.0, 0.0) is imgs
    out = np.asarray(augment_images(jax.random.key(1), imgs, 10.0, 0.1, 0.5))
    assert out.shape == imgs.shape and not np.allclose(out, imgs)
    diffs = np.abs(out - np.asarray(imgs)).mean(axis=(2, 3)).ravel()
    assert len(np.unique(np.round(diffs, 5))) == diffs.size and diffs.max() < 0.5  # each its own, all small


def test_image_batches_come_from_the_train_pool():
    pytest.importorskip("sklearn")
    from diagrammar.train import tasks_data as td
    pool = td.split_digit_images(td.load_digit_images(), seed=0)["train"]
    plain = WorkspaceAdd(inputs="images", batch_size=64, eval_draws=2, rotate=0, rescale=0, move=0)
    warped = WorkspaceAdd(inputs="images", batch_size=64, eval_draws=2)
    batch, warped_batch = jax.jit(plain.sample)(jax.random.key(3)), jax.jit(warped.sample)(jax.random.key(3))
    assert batch["a_img"].shape == (64, 8, 8) and np.array_equal(batch["sum"], batch["a"] + batch["b"])
    seen = {(int(a), int(b)) for a, b in zip(plain.pairs["seen"]["a"], plain.pairs["seen"]["b"])}
    assert {(int(a), int(b)) for a, b in zip(batch["a"], batch["b"])} <= seen
    for img, label in zip(np.asarray(batch["b_img"][:16]), np.asarray(batch["b"][:16])):
        hits = np.nonzero(np.all(pool["images"] == img, axis=(1, 2)))[0]
        assert len(hits) and pool["labels"][hits[0]] == label
    # augmentation changes the training images, the same pairs and picks, and never the evaluation images
    assert np.array_equal(warped_batch["b"], batch["b"]) and not np.allclose(warped_batch["b_img"], batch["b_img"])
    assert np.array_equal(warped.sets["heldout"]["a_img"], plain.sets["heldout"]["a_img"])
    # held-out and extrapolation images never appear in training
    train_rows = {img.tobytes() for img in pool["images"]}
    assert not any(img.tobytes() in train_rows for img in np.asarray(plain.sets["heldout"]["a_img"]))


def test_workspace_learns_to_route_and_extrapolates(program):
    """Variant 1: only the controller learns; it must pick input, b increments, output, and run longer at test."""
    model = program["Workspace"].compile(rngs=nnx.Rngs(0))
    task = WorkspaceAdd(seed=0)
    train(model, task, steps=600, optimizer=default_optimizer(1e-2, 0.0), steps_per_call=200, progress=False)
    acc = task.evaluate(model)
    assert acc["seen"] == 1.0 and acc["heldout"] >= 0.95, acc
    assert acc["extrap"] >= 0.95 and acc["extrap_full"] >= 0.95, acc  # b = 7..9: up to 11 steps, trained on 8
    gates = np.asarray(model_parts(model(jnp.array([2]), jnp.array([9])), 19)["gates"])[0]
    assert np.argmax(gates, -1)[:11].tolist() == [0] + [1] * 9 + [2]


def test_learned_modules_learn_their_objectives(program):
    """Variant 2, briefly: the image encoder and the Increment module learn; the answer loss falls."""
    pytest.importorskip("sklearn")
    model = program["WorkspaceDigits"].compile(rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x, x), state, jnp.zeros((5, 8, 8)))
    parts = model_parts(out, 19)
    assert parts["answers"].shape == (5, 11, 19) and parts["gates"].shape == (5, 11, 3)
    assert parts["perceived"].shape == (5, 2, 19) and parts["successor"].shape == (19, 19)
    assert probe_inputs(model) == ("images", 19)
    task = WorkspaceAdd(inputs="images", batch_size=16, eval_draws=1)
    result = train(model, task, steps=200, optimizer=default_optimizer(3e-3, 0.0), steps_per_call=200,
                   progress=False)
    first, last = result.history[0], result.history[-1]
    assert last["train_increment_acc"] == 1.0 and last["train_perceive_acc"] > 0.8, last
    assert last["train_loss"] < 0.5 * first["train_loss"]


def test_train_command_runs_the_workspace_task(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", WORKSPACE, "--circuit", "Workspace", "--task", "workspace", "--steps", "200",
                 "--eval-every", "100", "--steps-per-call", "100", "--lr", "1e-2", "--no-progress", "--no-stop",
                 "--out", str(out)]) == 0
    text = capsys.readouterr()
    assert "a + b on digits" in text.err and "1,283 parameters" in text.err
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 100, 200]
    assert {"train_acc", "test_acc", "extrap_acc", "extrap_full_acc", "params"} <= set(rows[-1])
    for name in ("curves.png", "workspace_accuracy.png", "routing.png", "checkpoint.npz"):
        assert (out / name).stat().st_size > 0
    # a circuit that does not take (a, b)
    assert main(["train", "circuits/mlp.circuit", "--circuit", "MLP", "--task", "workspace", "--steps", "1",
                 "--no-progress", "--out", str(tmp_path / "bad")]) == 1
    assert "does not take a + b" in capsys.readouterr().err


def test_benchmark_table_and_comparison_plot_from_saved_runs(tmp_path, capsys, monkeypatch):
    import importlib.util
    import sys

    from matplotlib.image import imread

    spec = importlib.util.spec_from_file_location("bench_workspace", "benchmarks/workspace.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_workspace", bench)  # its dataclass looks itself up there
    spec.loader.exec_module(bench)

    def runs(*accs, params):
        return [{"seed": i, "seen": 1.0, "heldout": a, "extrap": a / 2, "extrap_full": a / 4, "params": params,
                 "seconds": 1.0} for i, a in enumerate(accs)]

    saved = {"Workspace/ints": runs(1.0, 0.9, params=1283), "LSTMAdder/ints": runs(0.0, 0.2, params=22803),
             "WorkspaceDigits/images": runs(0.96, params=9026)}
    (tmp_path / "runs.json").write_text(json.dumps(saved))
    assert bench.main(["--from-json", str(tmp_path / "runs.json"), "--out", str(tmp_path / "plots")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "| digits as numbers | Workspace | Workspace | 1,283 |" in table[2]
    assert "95.0 [ 90.0..100.0]" in table[2] and "10.0 [  0.0.. 20.0]" in table[3]
    assert "| 8x8 digit images | Workspace | WorkspaceDigits | 9,026 |" in table[4] and "96.0" in table[4]
    image = imread(tmp_path / "plots" / "workspace_accuracy.png")
    assert image.shape[1] > 2 * image.shape[0]  # two panels side by side: numbers and images
    assert not (tmp_path / "plots" / "routing.png").exists()  # nothing was trained
