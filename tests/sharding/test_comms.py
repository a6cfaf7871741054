"""The collectives the cost backend predicts for one training step are those in XLA's compiled program."""
import math
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
# replica groups as compiled HLO prints them: {{0,1,...},...}, [groups,size]<=[...], or mesh[...] {'axis',...}
_GROUPS = re.compile(r"replica_groups=(?:\{\{([\d,]*)\}|\[\d+,(\d+)\]<=|mesh\[([^\]]*)\]\s*\{([^}]*)\})")


def group_size(line: str) -> int:
    """How many devices each replica group of a collective's HLO line holds."""
    m = _GROUPS.search(line)
    assert m, line
    if m.group(1) is not None:
        return len(m.group(1).split(","))
    if m.group(2) is not None:
        return int(m.group(2))
    sizes = dict(re.findall(r"'([^']+)'=(\d+)", m.group(3)))
    return math.prod(int(sizes[a]) for a in re.findall(r"'([^']+)'", m.group(4)))


def hlo_collectives(text: str) -> dict[str, tuple[int, int]]:
    """kind -> (arrays, bytes) of every collective in compiled HLO text (each array of a combined tuple
    collective counts once; an all-gather's bytes are its result's, the others' their operand's: a
    reduce-scatter's result times the devices of its group)."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        m = _OP.search(line)
        if not m:
            continue
        arrays = _ARRAY.findall(m.group(1))
        n, b = out.get(m.group(2), (0, 0))
        size = sum(_ITEM[t] * math.prod(int(x) for x in dims.split(",") if x) for t, dims in arrays)
        if m.group(2) == "reduce-scatter":
            size *= group_size(line)
        out[m.group(2)] = (n + len(arrays), b + size)
    return dict(sorted(out.items()))


def test_the_hlo_reader_counts_operands():
    text = """
  %all-gather.1 = f32[128,512]{1,0} all-gather(%p), channel_id=1, replica_groups=mesh['axis_0'=8,'axis_1'=1] {'axis_0'}, dimensions={0}
  %all-reduce.2 = (f32[3,128]{1,0}, f32[]) all-reduce(%a, %b), channel_id=2, replica_groups={{0,1,2,3,4,5,6,7}}, to_apply=%add
  %reduce_scatter.3 = f32[16,4,32]{2,1,0} reduce-scatter(%c), channel_id=3, replica_groups={{0,1,2,3},{4,5,6,7}}, dimensions={0}
  %reduce-scatter.4 = f32[2]{0} reduce-scatter(%d), channel_id=4, replica_groups=[4,2]<=[8], dimensions={0}
"""
    assert hlo_collectives(text) == {"all-gather": (1, 128 * 512 * 4), "all-reduce": (2, 3 * 128 * 4 + 4),
                                     "reduce-scatter": (2, 16 * 4 * 32 * 4 * 4 + 2 * 4 * 2)}


LAYOUTS = {
    "data": ({"data": 8}, {}, "data"),
    "tensor": ({"data": 4, "model": 2}, {"heads": "model", "mlp": "model"}, "data"),
    # every weight with a d axis split eight ways; gathered where used, its gradient reduce-scattered
    "fsdp": ({"data": 8}, {"d": "data"}, "data"),
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
