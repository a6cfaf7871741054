"""Crafted checkpoints that pass the zip checks: each is refused by name, before anything is allocated, and never
resumed wrongly."""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diagrammar.cli import main
from diagrammar.train import checkpoint as ckpt
from diagrammar.train.loop import train
from diagrammar.train.modadd import ModAdd

P = 5


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(2 * P, 8, rngs=rngs)
        self.l2 = nnx.Linear(8, P, rngs=rngs)

    def __call__(self, a, b):
        return self.l2(jax.nn.relu(self.l1(jnp.concatenate([jax.nn.one_hot(a, P), jax.nn.one_hot(b, P)], -1))))


def run(out: Path, steps: int = 20):
    return train(MLP(nnx.Rngs(0)), ModAdd(p=P), steps=steps, steps_per_call=10, out_dir=out, progress=False)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A real checkpoint at step 20, with history rows at 0, 10 and 20."""
    out = tmp_path_factory.mktemp("good")
    run(out)
    return out / "checkpoint.npz"


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def npy(array: np.ndarray | None = None, *, header: dict | None = None, data: bytes = b"") -> bytes:
    """An .npy entry: a real array, or a hand-written header followed by ``data``."""
    buf = io.BytesIO()
    if header is None:
        np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    else:
        np.lib.format.write_array_header_1_0(buf, header)
        buf.write(data)
    return buf.getvalue()


def craft(good: Path, tmp_path: Path, *, meta=None, **replace: bytes | None) -> Path:
    """A copy of ``good`` in a fresh run folder with some entries replaced (None removes one), or its
    metadata record changed by ``meta(record)``."""
    out = tmp_path / "run"
    out.mkdir(exist_ok=True)
    files = entries(good)
    if meta is not None:
        record = json.loads(np.load(io.BytesIO(files["__meta__.npy"])).tobytes())
        record = meta(record)
        text = record if isinstance(record, bytes) else json.dumps(record).encode()
        files["__meta__.npy"] = npy(np.frombuffer(text, np.uint8))
    for name, data in replace.items():
        if data is None:
            files.pop(name + ".npy")
        else:
            files[name + ".npy"] = data
    path = out / "checkpoint.npz"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def template():
    """What the loop loads a checkpoint into: (params, rest, optimiser state) of a fresh model."""
    from diagrammar.train.loop import default_optimizer

    _, params, rest = nnx.split(MLP(nnx.Rngs(0)), nnx.Param, ...)
    return params, rest, default_optimizer().init(params)


def leaf(good: Path, i: int) -> np.ndarray:
    return np.load(io.BytesIO(entries(good)[f"leaf_{i:05d}.npy"]))


def test_the_real_checkpoint_loads(good):
    tree, meta = ckpt.load(good, template())
    assert meta["step"] == 20 and [r["step"] for r in meta["history"]] == [0, 10, 20]


# name -> (entries to replace, a piece of the message); all refused by ckpt.load before any array is read
def _crafted_entries(good: Path) -> dict[str, tuple[dict, str]]:
    w = leaf(good, 0)
    shape = list(w.shape)
    return {
        "a header claiming 4 TiB": ({"leaf_00000": npy(header={"descr": "<f4", "fortran_order": False,
                                                               "shape": (2 ** 40,)})},
                                    "declares [1099511627776] float32 (4,398,046,511,104 bytes) but holds 0 bytes"),
        "another shape": ({"leaf_00000": npy(np.zeros(w.size * 2, w.dtype))},
                          f"{w.dtype}[{w.size * 2}] in the checkpoint but {w.dtype}{shape} here"),
        "the right header, too few bytes": (
            {"leaf_00000": npy(header={"descr": w.dtype.str, "fortran_order": False, "shape": w.shape},
                               data=b"\0" * 4)}, f"declares {shape} {w.dtype}"),
        "the right header, too many bytes": (
            {"leaf_00000": npy(header={"descr": w.dtype.str, "fortran_order": False, "shape": w.shape},
                               data=b"\0" * (w.nbytes + 4))}, f"({w.nbytes} bytes) but holds {w.nbytes + 4} bytes"),
        "Python objects": ({"leaf_00000": npy(header={"descr": "|O", "fortran_order": False, "shape": w.shape},
                                              data=b"\0" * 8)}, "holds Python objects"),
        "big-endian floats": ({"leaf_00000": npy(w.astype(">f4"))}, "in the checkpoint but"),
        "not an array": ({"leaf_00000": b"PK not numpy at all"}, "entry leaf_00000"),
        "NaN weights": ({"leaf_00000": npy(np.full_like(w, np.nan))}, "holds NaN or infinite values"),
        "an extra entry": ({"leaf_99999": npy(np.zeros(1))}, "unexpected: ['leaf_99999.npy']"),
        "a missing entry": ({"leaf_00001": None}, "missing: ['leaf_00001.npy']"),
        "a 1 TiB metadata record": ({"__meta__": npy(header={"descr": "|u1", "fortran_order": False,
                                                             "shape": (2 ** 40,)})},
                                    "entry __meta__ declares [1099511627776] uint8"),
    }


CASES = ["a header claiming 4 TiB", "another shape", "the right header, too few bytes",
         "the right header, too many bytes", "Python objects", "big-endian floats", "not an array", "NaN weights",
         "an extra entry", "a missing entry", "a 1 TiB metadata record"]


@pytest.mark.parametrize("case", CASES)
def test_crafted_entries_are_refused_before_loading(good, tmp_path, case):
    replace, message = _crafted_entries(good)[case]
    path = craft(good, tmp_path, **replace)
    with pytest.raises(ckpt.CheckpointMismatch) as info:
        ckpt.load(path, template())
    assert message in str(info.value)


RECORDS = {
    "not JSON": (lambda r: b"{not json", "its metadata record is not JSON"),
    "a JSON list": (lambda r: [1, 2], "not a JSON object"),
    "n_leaves as text": (lambda r: {**r, "n_leaves": str(r["n_leaves"])}, "n_leaves is"),
    "n_leaves huge": (lambda r: {**r, "n_leaves": 10 ** 12}, "n_leaves is 1000000000000"),
    "no leaf_paths": (lambda r: {k: v for k, v in r.items() if k != "leaf_paths"}, "leaf_paths does not list"),
}


@pytest.mark.parametrize("case", list(RECORDS))
def test_crafted_records_are_refused(good, tmp_path, case):
    change, message = RECORDS[case]
    path = craft(good, tmp_path, meta=change)
    with pytest.raises(ckpt.CheckpointMismatch, match="not a readable checkpoint") as info:
        ckpt.load_meta(path)
    assert message in str(info.value)


# these pass every structural check; resuming them used to go wrong silently or with a traceback
RESUMES = {
    "a fractional step": (lambda r: {**r, "step": 15.7}, "its step is 15.7, not a whole number"),
    "a step of True": (lambda r: {**r, "step": True}, "its step is True"),
    "a negative step": (lambda r: {**r, "step": -1}, "its step is -1"),
    "a step past int32": (lambda r: {**r, "step": 2 ** 40}, "its step is 1099511627776"),
    "a step as text": (lambda r: {**r, "step": "20"}, "its step is '20'"),
    "an earlier step than the weights'": (
        lambda r: {**r, "step": 10, "history": r["history"][:2]},
        "its step is 10 but its optimiser state has made 20 updates"),
    "history past the step": (lambda r: {**r, "step": 20, "history": r["history"] + [{"step": 30}]},
                              "a record at step 30, out of order or past the checkpoint's step 20"),
    "history out of order": (lambda r: {**r, "history": r["history"][::-1]}, "out of order"),
    "history not a list": (lambda r: {**r, "history": {"step": 0}}, "its history is not a list"),
    "a wall time as text": (lambda r: {**r, "wall_time": "soon"}, "its wall time is 'soon'"),
    "a seed as text": (lambda r: {**r, "seed": "0"}, "its seed is '0'"),
}


@pytest.mark.parametrize("case", list(RESUMES))
def test_crafted_run_records_are_never_resumed(good, tmp_path, case):
    change, message = RESUMES[case]
    path = craft(good, tmp_path, meta=change)
    before = path.read_bytes()
    with pytest.raises(ckpt.CheckpointMismatch) as info:
        run(path.parent, steps=30)
    assert message in str(info.value)
    assert path.read_bytes() == before  # refused, not overwritten


def test_the_command_line_reports_a_crafted_checkpoint_without_traceback(good, tmp_path, monkeypatch, capsys):
    from diagrammar.cli import train as train_cli

    path = craft(good, tmp_path, meta=lambda r: {**r, "step": 15.7})
    monkeypatch.setattr(train_cli, "build_model", lambda args, sizes, options: MLP(nnx.Rngs(0)))
    code = main(["train", "m.circuit", "--circuit", "M", "--p", str(P), "--steps", "30", "--out", str(path.parent),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"diagrammar train: error: {path}: not a readable checkpoint (its step is 15.7" in err
    assert "--fresh" in err


def test_a_copied_good_checkpoint_still_resumes(good, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(good, out / "checkpoint.npz")
    result = run(out, steps=30)
    assert result.resumed_from == 20 and result.step == 30
