"""Checkpoints that hold a leaf as pieces (the shards of a sharded weight), on one device: they load into any
template bit-for-bit, pieces that do not tile their array or disagree with the record are refused before any
data is read, and files without pieces (one-device runs, files written before pieces existed) load as before.

The 8-device save and restore across mesh shapes is in tests/sharding/test_checkpoint_shards.py."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from test_checkpoint_crafted import (
    npy,  # an .npy entry, real or with a hand-written header
)

from diagrammar.train import checkpoint as ckpt

W = np.arange(24, dtype=np.float32).reshape(4, 6) / 7  # not exactly representable sums: a wrong cut shows
B = np.linspace(-1, 1, 6, dtype=np.float32)


def tree() -> dict:
    """A small state: leaves in order b, n, w, z (keys sorted), z an empty array."""
    return {"w": jnp.asarray(W), "b": jnp.asarray(B), "n": jnp.asarray(3, jnp.int32), "z": jnp.zeros((0, 2))}


def template() -> dict:
    return {"w": jnp.zeros((4, 6)), "b": jnp.zeros(6), "n": jnp.zeros((), jnp.int32), "z": jnp.ones((0, 2))}


HALVES = [((0, 2), (0, 6)), ((2, 4), (0, 6))]                                 # split over rows
GRID = [((a, a + 2), (c, c + 3)) for a in (0, 2) for c in (0, 3)]             # rows x columns, 4 pieces


def piece_file(path: Path, state: dict, split: dict[str, list], *, change=None, replace=None) -> Path:
    """A checkpoint of ``state`` written by hand in the documented layout: the leaves named in ``split``
    as pieces ``leaf_NNNNN_KKKKK`` cut at the given boxes, the others whole; then the record changed by
    ``change(record)`` and entries replaced (None removes one)."""
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)]
    files, pieces = {}, {}
    for i, (name, leaf) in enumerate(zip(paths, jax.tree_util.tree_leaves(state))):
        leaf = np.asarray(leaf)
        key = name.strip("[]'")
        if key not in split:
            files[f"leaf_{i:05d}"] = npy(leaf)
            continue
        for k, box in enumerate(split[key]):
            files[f"leaf_{i:05d}_{k:05d}"] = npy(leaf[tuple(slice(a, b) for a, b in box)])
        pieces[str(i)] = {"shape": list(leaf.shape), "boxes": [[list(ab) for ab in box] for box in split[key]]}
    record = {"step": 7, "leaf_paths": paths, "n_leaves": len(paths), ckpt.PIECES: pieces}
    if change is not None:
        record = change(record)
    files["__meta__"] = npy(np.frombuffer(json.dumps(record).encode(), np.uint8))
    for name, data in (replace or {}).items():
        if data is None:
            files.pop(name)
        else:
            files[name] = data
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name + ".npy", data)
    return path


def same(got: dict, want: dict) -> None:
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("split", [HALVES, GRID, [((0, 4), (0, 6))]], ids=["halves", "grid", "one piece"])
def test_pieces_load_bit_for_bit_onto_one_device_and_a_one_device_mesh(tmp_path, split):
    state = tree()
    path = piece_file(tmp_path / "c.npz", state, {"w": split, "b": [((0, 3),), ((3, 6),)]})
    got, meta = ckpt.load(path, template())
    same(got, state)
    assert meta["step"] == 7
    # a template on a (one-device) mesh takes the make_array_from_callback path
    mesh = jax.make_mesh((1,), ("model",))
    on_mesh = dict(template(), w=jax.device_put(jnp.zeros((4, 6)), NamedSharding(mesh, P(None, "model"))))
    got, _ = ckpt.load(path, on_mesh)
    same(got, state)
    assert got["w"].sharding == on_mesh["w"].sharding


def test_each_piece_is_read_once_and_only_the_pieces_a_slice_overlaps(tmp_path, monkeypatch):
    state = tree()
    path = piece_file(tmp_path / "c.npz", state, {"w": GRID})
    reads: list[str] = []
    real = ckpt._Reader.array
    monkeypatch.setattr(ckpt._Reader, "array", lambda self, name: reads.append(name) or real(self, name))
    with ckpt._reader(path) as r:
        r.meta()
        reads.clear()
        leaf = ckpt._Stored(r, "w", 2, np.dtype(np.float32))
        # rows 1..3 of the last three columns: the two right-hand pieces, nothing else
        np.testing.assert_array_equal(leaf.cut(((1, 3), (3, 6))), W[1:3, 3:6])
        assert reads == ["leaf_00002_00001", "leaf_00002_00003"]
        np.testing.assert_array_equal(leaf.cut(((0, 4), (0, 6))), W)
        assert sorted(reads) == [f"leaf_00002_0000{k}" for k in range(4)]  # the two read already are not reread
        assert leaf.cut(((2, 4), (3, 6))) is leaf.read_pieces[3]  # a slice that is one piece is that piece


def test_a_one_device_state_round_trips_without_pieces(tmp_path):
    state = tree()
    path = ckpt.save(tmp_path / "c.npz", state, {"step": 1, ckpt.PIECES: {"0": "ignored"}})
    meta = ckpt.load_meta(path)
    assert ckpt.PIECES not in meta  # a caller's key of that name is not taken for pieces
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["__meta__.npy"] + [f"leaf_{i:05d}.npy" for i in range(4)]
    got, _ = ckpt.load(path, template())
    same(got, state)
    key = {"k": jax.random.key(5)}
    got, _ = ckpt.load(ckpt.save(tmp_path / "k.npz", key, {}), {"k": jax.random.key(0)})
    assert np.array_equal(jax.random.key_data(got["k"]), jax.random.key_data(key["k"]))


def test_a_checkpoint_written_before_pieces_existed_still_loads(tmp_path):
    """The old writer, verbatim: np.savez of np.asarray(leaf) for every leaf plus the JSON record."""
    state = tree()
    leaves = jax.tree_util.tree_leaves(state)
    arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    record = {"step": 3, "leaf_paths": ckpt._leaf_paths(state), "n_leaves": len(leaves)}
    arrays["__meta__"] = np.frombuffer(json.dumps(record).encode(), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", **arrays)
    got, meta = ckpt.load(tmp_path / "old.npz", template())
    same(got, state)
    assert meta == record
    # and today's writer gives the same entries for the same unsharded state
    with zipfile.ZipFile(tmp_path / "old.npz") as old, \
            zipfile.ZipFile(ckpt.save(tmp_path / "new.npz", state, {"step": 3})) as new:
        assert {n: old.read(n) for n in old.namelist()} == {n: new.read(n) for n in new.namelist()}


def test_subset_finds_leaves_by_path_whatever_else_the_file_holds(tmp_path):
    state = tree()
    path = piece_file(tmp_path / "c.npz", state, {"w": GRID})
    got, _ = ckpt.load(path, {"w": jnp.zeros((4, 6))}, subset=True)
    np.testing.assert_array_equal(np.asarray(got["w"]), W)
    with pytest.raises(ckpt.CheckpointMismatch, match=r"missing from the checkpoint: \[\"\['v'\]\"\]; needed in M"):
        ckpt.load(path, {"v": jnp.zeros(1)}, subset=True, here="in M")
    with pytest.raises(ckpt.CheckpointMismatch, match=r"\['w'\] is float32\[4, 6\] in the checkpoint but "
                                                      r"float32\[4, 5\] in M"):
        ckpt.load(path, {"w": jnp.zeros((4, 5))}, subset=True, here="in M")


def bad(record: dict, **pieces) -> dict:
    """``record`` with leaf 2 (w)'s pieces entry changed."""
    return {**record, ckpt.PIECES: {**record[ckpt.PIECES], "2": {**record[ckpt.PIECES]["2"], **pieces}}}


# name -> (split of w, change of the record, entries replaced, a piece of the message)
CRAFTED = {
    "a gap": (HALVES[:1] + [((3, 4), (0, 6))], None, None, "do not tile its shape [4, 6]: nothing covers [2:3, 0:6]"),
    "an overlap": ([((0, 3), (0, 6)), ((2, 4), (0, 6))], None, None, "pieces overlap at [2:3, 0:6]"),
    "a piece outside": ([((0, 2), (0, 6)), ((2, 5), (0, 6))], None, None, "a piece at [2:5, 0:6] lies outside it"),
    "the same piece twice": (HALVES + HALVES[:1], None, None, "pieces overlap at [0:2, 0:6]"),
    "a box of the wrong rank": (HALVES, lambda r: bad(r, boxes=[[[0, 4]]]), None,
                                "a piece at [[0, 4]], not [start, stop] for each of its 2 dimensions"),
    "a negative start": (HALVES, lambda r: bad(r, boxes=[[[-2, 2], [0, 6]], [[2, 4], [0, 6]]]), None,
                         "not [start, stop]"),
    "a fractional stop": (HALVES, lambda r: bad(r, boxes=[[[0, 2.5], [0, 6]], [[2.5, 4], [0, 6]]]), None,
                          "not [start, stop]"),
    "no whole shape": (HALVES, lambda r: bad(r, shape="4x6"), None, "have no whole shape (it is '4x6')"),
    "no pieces": (HALVES, lambda r: bad(r, boxes=[]), None, "is not split into 1 to 65,536 pieces"),
    "a leaf it does not have": (HALVES, lambda r: {**r, ckpt.PIECES: {**r[ckpt.PIECES], "9": r[ckpt.PIECES]["2"]}},
                                None, "names leaf '9', not one of its 4 leaves"),
    "a leaf number with a sign": (HALVES, lambda r: {**r, ckpt.PIECES: {"+2": r[ckpt.PIECES]["2"]}}, None,
                                  "names leaf '+2'"),
    "pieces as a list": (HALVES, lambda r: {**r, ckpt.PIECES: [1]}, None, "its leaf_pieces is not a JSON object"),
    "more pieces than entries": (HALVES, lambda r: bad(r, boxes=[[[0, 1], [0, 1]]] * 100), None,
                                 "lists more pieces than it has entries"),
    "a grid too fine to check": (  # 21 dimensions each cut in three: 3 ** 21 cells from two pieces
        HALVES, lambda r: bad(r, shape=[3] * 21, boxes=[[[1, 2]] * 21, [[0, 3]] * 21]), None,
        "the pieces cut it into more than 1,048,576 cells"),
    "a missing piece entry": (HALVES, None, {"leaf_00002_00001": None}, "missing: ['leaf_00002_00001.npy']"),
    "a whole entry beside the pieces": (HALVES, None, {"leaf_00002": npy(W)}, "unexpected: ['leaf_00002.npy']"),
    "a piece whose header is not its box": (HALVES, None, {"leaf_00002_00001": npy(W[:1])},
                                            "entry leaf_00002_00001 holds [1, 6] but the record places it at [2:4, 0:6]"),
    "a piece claiming 4 TiB": (HALVES, None, {"leaf_00002_00001": npy(header={
        "descr": "<f4", "fortran_order": False, "shape": (2, 2 ** 38)})}, "(2,199,023,255,552 bytes) but holds 0"),
    "pieces of two dtypes": (HALVES, None, {"leaf_00002_00001": npy(W[2:].astype(np.float64))},
                             "the pieces of leaf 2 hold different dtypes ['float32', 'float64']"),
    "a NaN in a piece": (HALVES, None, {"leaf_00002_00001": npy(np.full((2, 6), np.nan, np.float32))},
                         "['w'] holds NaN or infinite values"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_pieces_are_refused_by_name(tmp_path, monkeypatch, case):
    split, change, replace, message = CRAFTED[case]
    path = piece_file(tmp_path / "c.npz", tree(), {"w": split}, change=change, replace=replace)
    reads: list[str] = []
    real = ckpt._Reader.array
    monkeypatch.setattr(ckpt._Reader, "array", lambda self, name: reads.append(name) or real(self, name))
    with pytest.raises(ckpt.CheckpointMismatch) as info:
        ckpt.load(path, template())
    assert message in str(info.value)
    if case != "a NaN in a piece":  # refused from the record and the headers alone
        assert reads == ["__meta__"]


def test_pieces_of_another_model_are_named_as_such(tmp_path):
    path = piece_file(tmp_path / "c.npz", tree(), {"w": HALVES})
    with pytest.raises(ckpt.CheckpointMismatch, match=r"different model: \['w'\] is float32\[4, 6\] in the "
                                                      r"checkpoint but float32\[4, 8\] here"):
        ckpt.load(path, dict(template(), w=jnp.zeros((4, 8))))
    with pytest.raises(ckpt.CheckpointMismatch, match=r"is float32\[4, 6\] in the checkpoint but int32\[4, 6\]"):
        ckpt.load(path, dict(template(), w=jnp.zeros((4, 6), jnp.int32)))
