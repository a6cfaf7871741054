"""Modular addition: the data, the Fourier analysis, finding the input weights, the train command."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diagrammar.cli import main
from diagrammar.cli import train as train_cli
from diagrammar.train.loop import train
from diagrammar.train.modadd import ModAdd, ModAddMLP, find_input_weight, fourier_basis, fourier_spectrum


def test_pairs_labels_and_split():
    t = ModAdd(p=11, train_frac=0.3, seed=4)
    tr, te = t.train_data, t.test_data
    assert tr["a"].dtype == jnp.int32 and tr["a"].shape == (36,) and te["a"].shape == (121 - 36,)
    pairs = {(int(a), int(b)) for d in (tr, te) for a, b in zip(d["a"], d["b"])}
    assert len(pairs) == 121  # every pair exactly once, train and test disjoint
    for d in (tr, te):
        assert np.array_equal(d["label"], (d["a"] + d["b"]) % 11)
    again, other = ModAdd(p=11, train_frac=0.3, seed=4), ModAdd(p=11, train_frac=0.3, seed=5)
    assert np.array_equal(again.train_data["a"], tr["a"]) and np.array_equal(again.train_data["b"], tr["b"])
    assert not np.array_equal(other.train_data["a"], tr["a"])
    with pytest.raises(ValueError, match="loss"):
        ModAdd(p=11, loss_kind="hinge")


@pytest.mark.parametrize("loss_kind", ["ce", "mse"])
def test_loss_and_accuracy(loss_kind):
    t = ModAdd(p=7, loss_kind=loss_kind)

    def perfect(a, b):
        return 10.0 * jax.nn.one_hot((a + b) % 7, 7)

    loss, aux = t.loss(perfect, t.test_data, False)
    assert float(aux["acc"]) == 1.0 and float(loss) < (1e-3 if loss_kind == "ce" else 100 * 1.01)
    loss0, aux0 = t.loss(lambda a, b: jnp.zeros(a.shape + (7,)), t.test_data, False)
    assert float(loss0) > float(loss) or loss_kind == "mse"


def test_token_inputs_for_transformers():
    t = ModAdd(p=5, inputs="tokens")
    (tokens,) = t.model_inputs(t.train_data)
    assert tokens.shape == (t.train_data["a"].shape[0], 3)
    assert np.all(tokens[:, 2] == 5) and np.array_equal(tokens[:, 0], t.train_data["a"])


def test_fourier_basis_is_orthonormal():
    for p in (6, 7, 97):
        f = fourier_basis(p)
        assert np.allclose(f @ f.T, np.eye(p), atol=1e-10)


@pytest.mark.parametrize("k", [1, 5, 11])
def test_pure_cosine_has_one_key_frequency_and_ipr_one(k):
    p, hidden = 23, 16
    x = np.arange(p)
    phases = np.linspace(0, np.pi, hidden)
    w = np.cos(2 * np.pi * k * x[:, None] / p + phases[None, :])  # [p, hidden], every column frequency k
    s = fourier_spectrum(w, p)
    assert s["key_freqs"] == [k] and s["top_freqs"] == [k]
    assert s["ipr"] == pytest.approx(1.0) and s["ipr_neuron"] == pytest.approx(1.0)
    assert np.argmax(s["norms"]) == k and len(s["norms"]) == p // 2 + 1
    # The same with the p axis in the middle of a stacked [2, p, hidden] weight.
    s3 = fourier_spectrum(np.stack([w, 2 * w]), p, axis=1)
    assert s3["key_freqs"] == [k] and s3["ipr"] == pytest.approx(1.0)


def test_two_equal_frequencies_give_ipr_one_half():
    p = 31
    x = np.arange(p)
    w = np.stack([np.cos(2 * np.pi * 3 * x / p), np.sin(2 * np.pi * 8 * x / p)], axis=1) + 0.5
    s = fourier_spectrum(w, p)
    assert s["key_freqs"] == [3, 8]
    assert s["ipr"] == pytest.approx(0.5) and s["ipr_neuron"] == pytest.approx(1.0)
    assert s["norms"][0] == pytest.approx(0.5 * np.sqrt(2 * p))  # the constant is kept apart


def test_finds_the_first_layer_or_the_embedding():
    m = ModAddMLP(13, 8, rngs=nnx.Rngs(0))
    name, w, axis = find_input_weight(m, 13)
    assert name == "w1" and w.shape == (2, 13, 8) and axis == 1

    class Tiny(nnx.Module):  # transformer-like: embedding over p + 1 tokens, unembedding [d, p]
        def __init__(self, rngs):
            self.embed = nnx.Embed(14, 6, rngs=rngs)
            self.unembed = nnx.Linear(6, 13, rngs=rngs)

    name, w, axis = find_input_weight(Tiny(nnx.Rngs(0)), 13)
    assert name == "embed.embedding" and w.shape == (13, 6) and axis == 0

    class Concat(nnx.Module):
        def __init__(self, rngs):
            self.out = nnx.Linear(8, 13, rngs=rngs)
            self.first = nnx.Linear(26, 8, rngs=rngs)

    name, w, axis = find_input_weight(Concat(nnx.Rngs(0)), 13)
    assert name == "first.kernel" and w.shape == (2, 13, 8) and axis == 1
    assert find_input_weight(Concat(nnx.Rngs(0)), 13, name="out.kernel")[0] == "out.kernel"
    with pytest.raises(LookupError):
        find_input_weight(Concat(nnx.Rngs(0)), 13, name="nope")


def test_lookup_and_onehot_forms_agree():
    a, b = jnp.arange(13), jnp.arange(13)[::-1]
    m1 = ModAddMLP(13, 8, rngs=nnx.Rngs(0))
    m2 = ModAddMLP(13, 8, rngs=nnx.Rngs(0), lookup=True)
    assert np.allclose(m1(a, b), m2(a, b), atol=1e-6)


def test_grokking_analysis_is_logged(tmp_path):
    task = ModAdd(p=13)
    res = train(ModAddMLP(13, 32, rngs=nnx.Rngs(0)), task, steps=20, steps_per_call=10, out_dir=tmp_path,
                progress=False)
    assert res.metrics["fourier_param"] == "w1"
    assert 0 < res.metrics["ipr"] <= 1 and all(1 <= k <= 6 for k in res.metrics["key_freqs"])
    assert (tmp_path / "fourier.png").read_bytes()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------- the command


def test_building_the_parser_does_not_import_jax():
    import subprocess

    code = ("import sys; from diagrammar.cli import build_parser; "
            "build_parser(); print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_train_command_runs_and_resumes(tmp_path, monkeypatch, capsys):
    built = []

    def fake_build(args, sizes, options):  # the circuit compiler is tested elsewhere
        built.append((args.file, args.circuit, args.seed, sizes))
        return ModAddMLP(sizes.get("p", 97), 64, rngs=nnx.Rngs(args.seed))

    monkeypatch.setattr(train_cli, "build_model", fake_build)
    out = tmp_path / "run"
    argv = ["train", "mlp.circuit", "--circuit", "ModAddMLP", "--p", "11", "--eval-every", "20",
            "--steps-per-call", "20", "--out", str(out), "--no-progress", "--no-stop"]
    assert main(argv + ["--steps", "40"]) == 0
    assert built == [("mlp.circuit", "ModAddMLP", 0, {"p": 11})]
    text = capsys.readouterr().out
    assert "ModAddMLP: 40 steps" in text and "test" in text and "key frequencies" in text and str(out) in text
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 20, 40]
    assert main(argv + ["--steps", "60"]) == 0  # continues the run
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 20, 40, 60]


def test_train_command_finds_p_and_token_inputs(tmp_path, monkeypatch, capsys):
    class Tok(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(8, 16, rngs=rngs)
            self.out = nnx.Linear(16, 7, rngs=rngs)

        def __call__(self, tokens):
            return self.out(self.embed(tokens).sum(-2))

    monkeypatch.setattr(train_cli, "build_model", lambda *a: Tok(nnx.Rngs(0)))
    argv = ["train", "t.circuit", "--circuit", "Tok", "--steps", "10", "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    assert "mod 7" in capsys.readouterr().err
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["fourier_param"] == "embed.embedding"


def test_train_command_reports_divergence_without_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_cli, "build_model", lambda args, sizes, options: ModAddMLP(11, 16, rngs=nnx.Rngs(0)))
    argv = ["train", "m.circuit", "--circuit", "M", "--lr", "1e30", "--steps", "50", "--out", str(tmp_path),
            "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error: training diverged" in err and "at step" in err and "Traceback" not in err
