"""`diagrammar analyse` on tiny checkpoints trained here: the numbers match a hand-written forward pass,
every mode writes its table, heatmap and numbers, and bad arguments exit 2 with a message."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diagrammar.analysis import metrics as M
from diagrammar.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_source):
    """Two tiny runs (seeds 0 and 1) of 10 steps each, and the .circuit file they trained."""
    root = tmp_path_factory.mktemp("analyse")
    src = root / "tiny.circuit"
    src.write_text(tiny_source)
    out = []
    for seed in (0, 1):
        run = root / f"s{seed}"
        assert main(["train", str(src), "--circuit", "Tiny", "--steps", "10", "--steps-per-call", "10",
                     "--eval-every", "10", "--no-progress", "--no-stop", "--seed", str(seed),
                     "--out", str(run)]) == 0
        out.append(run)
    return src, out


def analyse(src, *more):
    return main(["analyse", str(src), "--circuit", "Tiny", "--task", "modadd", *more])


def _by_hand(run: Path):
    """x and h of every pair (a, b), in the order analyse uses (all 49 pairs, a major), from the raw weights."""
    with np.load(run / "checkpoint.npz") as z:
        meta = json.loads(z["__meta__"].tobytes())
        leaves = {path: z[f"leaf_{i:05d}"] for i, path in enumerate(meta["leaf_paths"])}
    W, b = leaves["[0]['h']['W'].value"], leaves["[0]['h']['b'].value"]
    a, c = np.divmod(np.arange(49), 7)
    x = np.stack([np.eye(7)[a], np.eye(7)[c]], axis=1)  # [pairs, arg, p]
    h = np.maximum(np.einsum("nap,aph->nh", x, W) + b, 0)
    return x.reshape(49, -1), h


def test_wire_by_wire_matches_a_hand_written_forward_pass(runs, tmp_path, capsys):
    src, (s0, _) = runs
    assert analyse(src, "--checkpoint", str(s0), "--wires", "x,h", "--metric", "cka", "--out", str(tmp_path)) == 0
    printed = capsys.readouterr().out
    x, h = _by_hand(s0)
    want = M.linear_cka(x, h)
    result = json.loads((tmp_path / "analysis-cka.json").read_text())
    assert result["rows"] == result["columns"] == ["x", "h"]
    assert result["values"][0][1] == pytest.approx(want, abs=1e-5)
    assert result["values"][0][0] == pytest.approx(1.0)
    assert f"{want:.3f}" in printed and "all 49 pairs (a, b) mod 7, streamed" in printed
    assert (tmp_path / "analysis-cka.png").read_bytes().startswith(PNG)


@pytest.mark.parametrize("metric", ["rsa", "svcca", "procrustes", "match", "rbf-cka"])
def test_against_another_seed_compares_wire_by_wire(runs, tmp_path, metric):
    src, (s0, s1) = runs
    assert analyse(src, "--checkpoint", str(s0), "--against", str(s1), "--wires", "x,h", "--metric", metric,
                   "--out", str(tmp_path)) == 0
    x0, h0 = _by_hand(s0)
    _, h1 = _by_hand(s1)
    direct = {"rsa": M.rsa, "svcca": M.svcca, "procrustes": M.procrustes_distance,
              "match": lambda X, Y: M.match_units(X, Y)[1].mean(), "rbf-cka": M.rbf_cka}[metric]
    values = json.loads((tmp_path / f"analysis-{metric}.json").read_text())["values"]
    tol = 1e-4 if metric != "rbf-cka" else 1e-3  # the pairwise sample is kept in float32
    assert values[1][1] == pytest.approx(direct(h0, h1), abs=tol)
    assert values[0][1] == pytest.approx(direct(x0, h1), abs=tol)
    overlay = json.loads((tmp_path / f"overlay-{metric}.json").read_text())
    assert overlay["wires"]["h"] == pytest.approx(values[1][1], abs=1e-6)  # each wire with itself in the other run


def test_several_checkpoints_give_wire_by_checkpoint(runs, tmp_path, capsys):
    src, (s0, s1) = runs
    assert analyse(src, "--checkpoint", str(s0), "--checkpoint", str(s1), "--wires", "x,h", "--out",
                   str(tmp_path)) == 0
    result = json.loads((tmp_path / "analysis-cka.json").read_text())
    assert result["rows"] == ["x", "h"] and result["columns"] == ["s0"]  # each against the last checkpoint, s1
    assert result["values"][0][0] == pytest.approx(1.0)  # the inputs do not depend on the weights
    _, h0 = _by_hand(s0)
    _, h1 = _by_hand(s1)
    assert result["values"][1][0] == pytest.approx(M.linear_cka(h0, h1), abs=1e-5)


def test_kernel_analysis_curves(runs, tmp_path, capsys):
    src, (s0, _) = runs
    assert analyse(src, "--checkpoint", str(s0), "--wires", "x,h", "--metric", "kernel", "--out",
                   str(tmp_path)) == 0
    result = json.loads((tmp_path / "analysis-kernel.json").read_text())
    _, h = _by_hand(s0)
    labels = np.sum(np.divmod(np.arange(49), 7), axis=0) % 7
    assert result["curves"]["h"] == pytest.approx(M.kernel_analysis(h, labels).tolist(), abs=1e-3)
    assert len(result["curves"]["x"]) == 49
    assert (tmp_path / "analysis-kernel.png").read_bytes().startswith(PNG)
    assert "d=1" in capsys.readouterr().out


@pytest.mark.parametrize("more, message", [
    (["--wires", "x,nope"], "has no wire 'nope'"),
    (["--wires", "x,,h"], "wire names separated by commas"),
    (["--wires", "h"], "nothing to compare"),
    (["--wires", "x,h", "--metric", "kernel", "--against", "S1"], "takes no --against"),
    (["--wires", "x,h", "--examples", "3"], "at least 4"),
    (["--wires", "x,h", "--metric", "nope"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_a_message(runs, tmp_path, capsys, more, message):
    src, (s0, s1) = runs
    more = [str(s1) if m == "S1" else m for m in more]
    assert analyse(src, "--checkpoint", str(s0), "--out", str(tmp_path), *more) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_or_foreign_checkpoints_exit_2(runs, tmp_path, capsys):
    src, (s0, _) = runs
    assert analyse(src, "--checkpoint", str(tmp_path / "none"), "--wires", "x,h") == 2
    assert "no such file" in capsys.readouterr().err
    assert analyse(src, "--checkpoint", str(tmp_path), "--wires", "x,h") == 2
    assert "holds no checkpoint.npz" in capsys.readouterr().err
    # the same circuit at another width cannot hold these weights
    assert analyse(src, "--checkpoint", str(s0), "--wires", "x,h", "--size", "hidden=4", "--out",
                   str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "different model" in err and "Traceback" not in err
