"""Sharded forward passes equal unsharded ones; weights are created on the devices the mapping says."""
import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import diagrammar
from diagrammar.backends.flax.sharding import per_device_bytes

TENSOR = {"heads": "model", "mlp": "model"}
LAYOUTS = {  # name: (mesh shape, shard, batch)
    "data8": ({"data": 8}, {}, "data"),
    "data4_model2": ({"data": 4, "model": 2}, TENSOR, "data"),
    "fsdp8": ({"data": 8}, {"d": "data"}, "data"),
}
CIRCUITS = {
    "Decoder": ("circuits/transformer.circuit", {"seq": 16}, lambda k: jax.random.randint(k, (8, 16), 0, 256)),
    "GrokTransformer": ("circuits/grok_transformer.circuit", {}, lambda k: jax.random.randint(k, (16, 3), 0, 114)),
}


def mesh_of(shape: dict, explicit: bool):
    kind = AxisType.Explicit if explicit else AxisType.Auto
    return jax.make_mesh(tuple(shape.values()), tuple(shape), axis_types=(kind,) * len(shape))


@pytest.fixture(scope="module")
def references():
    out = {}
    for name, (path, sizes, make) in CIRCUITS.items():
        d = diagrammar.load(path)[name]
        model = d.compile(rngs=nnx.Rngs(0), **sizes)
        model.eval()
        tokens = make(jax.random.key(1))
        out[name] = (d, sizes, tokens, np.asarray(model(tokens)), nnx.state(model, nnx.Param))
    return out


# each circuit under every layout; auto and explicit mesh axes alternate to keep the run short
CASES = [(c, lay, explicit) for c in CIRCUITS for lay in LAYOUTS for explicit in (False, True)
         if (c == "Decoder") == explicit or lay == "fsdp8"]


@pytest.mark.parametrize("circuit,layout,explicit", CASES)
def test_sharded_forward_equals_unsharded(references, circuit, layout, explicit):
    d, sizes, tokens, want, ref_params = references[circuit]
    shape, shard, batch = LAYOUTS[layout]
    mesh = mesh_of(shape, explicit)
    model = d.compile(rngs=nnx.Rngs(0), mesh=mesh, shard=shard, batch=batch, **sizes)
    model.eval()
    with jax.set_mesh(mesh):
        got = nnx.jit(lambda m, t: m(t))(model, tokens)
    assert np.abs(np.asarray(got) - want).max() < 1e-5
    assert got.sharding.spec[0] == "data"  # the batch stays split over data to the end
    # every weight lives where the mapping says, and holds the unsharded model's values
    layout_axes = dict(shard)
    for path, param in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        axes = param.get_metadata()["axes"]
        want_spec = P(*(layout_axes.get(a) for a in axes))
        value = param[...]
        assert value.sharding.is_equivalent_to(NamedSharding(mesh, want_spec), value.ndim), (path, value.sharding)
        ref = ref_params
        for part in path:
            ref = ref[part]
        np.testing.assert_allclose(np.asarray(value), np.asarray(ref[...]), atol=1e-7)


def test_fsdp_holds_an_eighth_of_every_weight_per_device(references):
    d, sizes, tokens, want, _ = references["Decoder"]
    model = d.compile(rngs=nnx.Rngs(0), mesh=mesh_of({"data": 8}, False), shard={"d": "data"}, batch="data",
                      **sizes)
    params = [(p.get_metadata()["axes"], p[...]) for _, p in nnx.to_flat_state(nnx.state(model, nnx.Param))]
    for axes, value in params:  # a weight with a d axis is split eight ways; the rest (biases over mlp) whole
        want = value.size // 8 if "d" in axes else value.size
        assert {s.data.size for s in value.addressable_shards} == {want}
    axes, biggest = max(params, key=lambda p: p[1].size)
    assert {s.data.size for s in biggest.addressable_shards} == {biggest.size // 8}
    assert per_device_bytes(model) == sum(v.nbytes // 8 if "d" in a else v.nbytes for a, v in params)


def test_repeat_copies_can_be_split(references):
    d, sizes, tokens, want, _ = references["Decoder"]
    mesh = mesh_of({"stage": 4, "data": 2}, False)
    model = d.compile(rngs=nnx.Rngs(0), mesh=mesh, shard={"repeat#copy": "stage"}, batch="data", **sizes)
    model.eval()
    w = model.weight("repeat.x.causal_self_attention.out.W")
    assert w[...].sharding.is_equivalent_to(NamedSharding(mesh, P("stage")), 4)
    with jax.set_mesh(mesh):
        got = model(tokens)
    assert np.abs(np.asarray(got) - want).max() < 1e-5


def test_a_bad_mapping_is_a_span_error_and_allocates_nothing(references):
    d, sizes, tokens, _, _ = references["Decoder"]
    mesh = mesh_of({"data": 4, "model": 2}, False)
    rngs = nnx.Rngs(0)
    before = len(jax.live_arrays())
    for shard, batch, kind, words in [
        ({"head": "model"}, "data", "UnknownName", "no axis 'head'"),
        ({"heads": "tensor"}, "data", "UnknownName", "mesh axis 'tensor'"),
        ({"heads": "model", "dk": "model"}, "data", "InvalidArgument", "mesh axis model twice"),
        ({"heads": "model"}, "batch", "UnknownName", "batch is split over mesh axis 'batch'"),
    ]:
        with pytest.raises(diagrammar.CircuitError) as info:
            d.compile(rngs=rngs, mesh=mesh, shard=shard, batch=batch, **sizes)
        err = info.value
        assert type(err).__name__ == kind
        assert err.span is not None and err.span.file.endswith(".circuit") and err.span.line > 0
        assert words in err.message
    # heads = 4 does not split over 8 devices: the error points at the box that makes the weight
    with pytest.raises(diagrammar.CircuitError) as info:
        d.compile(rngs=rngs, mesh=mesh_of({"model": 8}, False), shard={"heads": "model"}, **sizes)
    assert "heads = 4 does not split evenly over mesh axis model=8" in info.value.message
    assert info.value.span.file.endswith("attention.circuit")
    assert len(jax.live_arrays()) == before
    assert int(rngs.params.count[...]) == 0  # not one weight was drawn
