"""The collectives the cost backend predicts for one training step are those in XLA's compiled program."""
import re

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import diagrammar
from diagrammar.backends.cost.comms import analyse_sharding
from diagrammar.check.sharding import validate

_OP = re.compile(r"=\s*(.*?)\s(all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute)(?:-start)?\(")
_ARRAY = re.compile(r"\b(f32|s32|u32|bf16|f16|pred|f64|s64)\[([\d,]*)\]")
_ITEM = {"f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2, "pred": 1, "f64": 8, "s64": 8}


def hlo_collectives(text: str) -> dict[str, tuple[int, int]]:
    """kind -> (arrays, bytes) of every collective in compiled HLO text (each array of a combined tuple
    collective counts once; an all-reduce's bytes are its operand's, an all-gather's its result's)."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        m = _OP.search(line)
        if not m:
            continue
        arrays = _ARRAY.findall(m.group(1))
        n, b = out.get(m.group(2), (0, 0))
        size = sum(_ITEM[t] * (eval("*".join(dims.split(",")) or "1") if dims else 1) for t, dims in arrays)
        out[m.group(2)] = (n + len(arrays), b + size)
    return dict(sorted(out.items()))


LAYOUTS = {
    "data": ({"data": 8}, {}, "data"),
    "tensor": ({"data": 4, "model": 2}, {"heads": "model", "mlp": "model"}, "data"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_predicted_collectives_match_xla(layout):
    shape, shard, batch_axis = LAYOUTS[layout]
    diagram = diagrammar.load("circuits/grok_transformer.circuit")["GrokTransformer"]
    mesh = jax.make_mesh(tuple(shape.values()), tuple(shape), axis_types=(AxisType.Auto,) * len(shape))
    # passes=False: the cost backend reads the circuit as written (the fused q/k/v projection of the
    # optimisation passes would make XLA communicate one array where the circuit has three)
    model = diagram.compile(rngs=nnx.Rngs(0), mesh=mesh, shard=shard, batch=batch_axis, passes=False)
    gdef, params, rest = nnx.split(model, nnx.Param, ...)
    target = jax.tree.map(lambda a: a.sharding, params)
    batch = 64
    split = NamedSharding(mesh, P("data"))
    tokens = jax.device_put(jnp.zeros((batch, 3), jnp.int32), split)
    labels = jax.device_put(jnp.zeros((batch,), jnp.int32), split)

    def step(params, tokens, labels):
        def loss(p):
            logits = nnx.merge(gdef, p, rest)(tokens)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        value, grads = jax.value_and_grad(loss)(params)
        new = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
        return jax.tree.map(jax.lax.with_sharding_constraint, new, target), value

    text = jax.jit(step).lower(params, tokens, labels).compile().as_text()
    seen = hlo_collectives(text)
    predicted = analyse_sharding(diagram, validate(diagram, shape, shard, batch_axis), batch=batch).totals()
    assert set(seen) == set(predicted), (seen, predicted)
    for kind, (n, size) in predicted.items():
        assert seen[kind][0] == n, (kind, seen, predicted)
        assert abs(seen[kind][1] - size) <= 0.1 * size, (kind, seen, predicted)
