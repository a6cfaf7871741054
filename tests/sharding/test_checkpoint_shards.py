"""Checkpoints of a sharded run hold each sharded weight as its distinct shards, and restore onto another mesh shape
(or one device) bit-for-bit, each device's slice cut from the pieces it overlaps: no whole weight is read for a
sharded target."""
import zipfile

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding

import diagrammar
from diagrammar.train import checkpoint as ckpt
from diagrammar.train import mesh as train_mesh
from diagrammar.train.loop import default_optimizer

TENSOR = {"heads": "model", "mlp": "model"}
TARGETS = {  # name: (mesh shape, shard); None: one device, no mesh
    "data=2 x model=4": ({"data": 2, "model": 4}, TENSOR),
    "data=8 (fully sharded)": ({"data": 8}, {"d": "data"}),
    "one device": (None, None),
}


def state(mesh_shape, shard, seed):
    """(params, rest, AdamW state) of GrokTransformer compiled on a mesh (or one device), as the trainer holds them."""
    grok = diagrammar.load("circuits/grok_transformer.circuit")["GrokTransformer"]
    if mesh_shape is None:
        model = grok.compile(rngs=nnx.Rngs(seed))
    else:
        model = grok.compile(rngs=nnx.Rngs(seed), mesh=train_mesh.make_mesh(mesh_shape), shard=shard, batch="data")
    _, params, rest = nnx.split(model, nnx.Param, ...)
    layout = train_mesh.layout_of(model)
    tx = default_optimizer()
    opt = tx.init(params) if layout is None else train_mesh.init_optimizer(tx, params, layout)
    return params, rest, opt


_TEMPLATES: dict = {}


def template(target):
    """A fresh state on ``target`` with other values than the saved one's (only shapes and shardings are used);
    one compile per target."""
    if target not in _TEMPLATES:
        _TEMPLATES[target] = state(*TARGETS[target], seed=1)
    return _TEMPLATES[target]


def arrays(tree):
    return [x for x in jax.tree_util.tree_leaves(tree) if isinstance(x, jax.Array)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A data=4 x model=2 tensor-parallel state and its checkpoint."""
    tree = state({"data": 4, "model": 2}, TENSOR, seed=0)
    path = ckpt.save(tmp_path_factory.mktemp("tp") / "checkpoint.npz", tree, {"step": 0})
    return tree, path


def test_sharded_leaves_are_stored_as_their_distinct_shards(saved):
    tree, path = saved
    meta = ckpt.load_meta(path)
    pieces = meta[ckpt.PIECES]
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
    split = 0
    for i, (name, leaf) in enumerate(zip(meta["leaf_paths"], jax.tree_util.tree_leaves(tree), strict=True)):
        if leaf.is_fully_replicated:  # the step count, and the weights with no heads or mlp axis
            assert str(i) not in pieces and f"leaf_{i:05d}.npy" in names, name
            continue
        split += 1
        # split in two over model (replicated four times over data): two pieces of half the weight, no whole entry
        assert len(pieces[str(i)]["boxes"]) == 2 and f"leaf_{i:05d}.npy" not in names, name
        with zipfile.ZipFile(path) as z:
            for k in range(2):
                with z.open(f"leaf_{i:05d}_{k:05d}.npy") as m:
                    np.lib.format.read_magic(m)
                    shape, _, dtype = np.lib.format.read_array_header_1_0(m)
                assert np.prod(shape) * dtype.itemsize == leaf.nbytes // 2, name
    # q, k, v, out of attention, linear's W and b, linear_2's W: params, and Adam's mu and nu of each
    assert split == 3 * 7
    linear = meta["leaf_paths"].index("[0]['linear']['W'].value")
    assert pieces[str(linear)] == {"shape": [128, 512], "boxes": [[[0, 128], [0, 256]], [[0, 128], [256, 512]]]}


@pytest.fixture
def reads(monkeypatch):
    """Every callback of make_array_from_callback: (the leaf's bytes, the bytes of each piece read to answer it,
    the bytes handed back)."""
    calls, pieces = [], []
    array, make = ckpt._Reader.array, jax.make_array_from_callback

    def counted_array(self, name):
        out = array(self, name)
        pieces.append(out.nbytes)
        return out

    def counted_make(shape, sharding, cb, *args, **kwargs):
        def counted(index):
            before = len(pieces)
            out = cb(index)
            calls.append((int(np.prod(shape)) * out.dtype.itemsize, pieces[before:], out.nbytes))
            return out
        return make(shape, sharding, counted, *args, **kwargs)

    monkeypatch.setattr(ckpt._Reader, "array", counted_array)
    monkeypatch.setattr(jax, "make_array_from_callback", counted_make)
    return calls


@pytest.mark.parametrize("target", list(TARGETS))
def test_restored_onto_another_mesh_bit_for_bit(saved, reads, target):
    tree, path = saved
    mesh_shape, _ = TARGETS[target]
    got, meta = ckpt.load(path, template(target))
    assert meta["step"] == 0
    for a, b, t in zip(arrays(tree), arrays(got), arrays(template(target)), strict=True):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
        assert b.sharding.is_equivalent_to(t.sharding, b.ndim)
        if mesh_shape is not None:
            assert isinstance(b.sharding, NamedSharding) and dict(b.sharding.mesh.shape) == mesh_shape
    if mesh_shape is None:
        assert not reads  # one device: the pieces are joined on the host
        return
    assert reads  # every leaf stored as pieces came through make_array_from_callback
    for whole, pieces, handed in reads:
        # a device's slice never needs the whole array read at once, unless it is the whole (replicated) array
        assert handed == whole or max(pieces, default=0) < whole
    if target == "data=2 x model=4":  # each device wants a quarter: half of one piece, no piece read twice
        split = [(whole, pieces, handed) for whole, pieces, handed in reads if handed < whole]
        assert split and all(handed * 4 == whole and all(p * 2 == whole for p in pieces) for whole, pieces, handed
                             in split)
        stored_split = sum(not x.is_fully_replicated for x in arrays(tree))
        assert sum(len(pieces) for _, pieces, _ in reads) == 2 * stored_split


def test_one_device_and_back(saved, tmp_path):
    tree, path = saved
    alone, _ = ckpt.load(path, template("one device"))
    again = ckpt.save(tmp_path / "alone.npz", alone, {"step": 0})
    assert ckpt.PIECES not in ckpt.load_meta(again)  # one device: whole arrays, as before pieces existed
    back, _ = ckpt.load(again, template("data=2 x model=4"))  # whole arrays placed onto a mesh again
    for a, b in zip(arrays(tree), arrays(back), strict=True):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
        assert dict(b.sharding.mesh.shape) == {"data": 2, "model": 4}
        assert b.sharding.spec == a.sharding.spec  # the same mapping, on the other mesh


def test_analysis_reads_the_weights_of_a_sharded_run(saved):
    """`diagrammar analyse --checkpoint` loads the model's leaves by path from the pieces (the optimiser's unread)."""
    from diagrammar.analysis.capture import load_checkpoint

    tree, path = saved
    grok = diagrammar.load("circuits/grok_transformer.circuit")["GrokTransformer"]
    model, meta = load_checkpoint(grok, path)
    assert meta["step"] == 0
    for a, b in zip(arrays(tree[0]), arrays(nnx.state(model, nnx.Param)), strict=True):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
