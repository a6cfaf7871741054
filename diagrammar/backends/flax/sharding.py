"""Backend flax: named axes onto a device mesh (weights created sharded, activations constrained by name).

`compile(rngs=..., mesh=mesh, shard={"heads": "model"}, batch="data")` makes a
`Layout` from the checker's validated `ShardMap` (check/sharding.py, which
states the rules). JAX's SPMD partitioner does the parallel work; this module
only says where each named axis lives:

  - weights are drawn inside one jitted program whose `out_shardings` are
    their `NamedSharding`s, so no weight is ever whole on one device;
  - the inputs, and the outputs of every box that contracts, gathers or owns
    weights (and of every call, repeat and scan), are constrained to the
    sharding their axis names give: `with_sharding_constraint` on a mesh of
    auto axes, `reshard` on a mesh of explicit axes;
  - on a mesh of explicit axes, a box whose output sharding JAX's typing rules
    cannot decide (a gather from a sharded table, a contraction of axes split
    differently: `ShardingTypeError`) runs with the mesh's axes in auto mode,
    its inputs and weights recast to auto and its outputs resharded to their
    named sharding afterwards, as `jax.sharding.auto_axes` does; every other
    box keeps the explicit types.
"""
from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jax._src.core import (
    ShardingTypeError as _ShardingTypeError,  # not re-exported by jax 0.10
)
from jax._src.core import (
    modify_spec_for_auto_manual as _spec_for_auto,  # what auto_axes recasts with
)
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from ...check.sharding import ShardMap, validate
from ...errors import InvalidArgument
from .values import _V

if TYPE_CHECKING:
    from .module import _Plan, _WeightSpec

_CALL_AXIS = re.compile(r"#(.+)@\d+$")  # an axis a call or scan is broadcast over: #<name>@<depth>

# boxes whose outputs are constrained: where the partitioner chooses how work is split
_CONSTRAINED = frozenset({"linear", "embed", "dot", "einsum", "gather", "conv", "conv_transpose", "call", "repeat",
                          "scan", "dispatch", "param"})



class Layout:
    """Where every named axis of one compiled circuit lives on `mesh`."""

    def __init__(self, mesh: jax.sharding.Mesh, shard_map: ShardMap):
        self.mesh = mesh
        self.map = shard_map
        self.explicit = any(t == AxisType.Explicit for t in mesh.axis_types)
        self.replicated = NamedSharding(mesh, P())

    def __repr__(self) -> str:
        return f"<layout {dict(self.mesh.shape)} shard={self.map.axes} batch={self.map.batch}>"

    # -- specs
    def weight_spec(self, names: tuple[str, ...]) -> P:
        return P(*_entries(self.map.weight_axes(names)))

    def weight_sharding(self, spec: _WeightSpec) -> NamedSharding:
        return NamedSharding(self.mesh, self.weight_spec(_weight_names(spec)))

    def wire_spec(self, names: tuple[str, ...], shape: tuple[int, ...]) -> P:
        """An activation's spec from its axis names (internal `#` names resolved); a batch that does not
        split evenly stays whole."""
        plain = tuple(_plain_name(n) for n in names)
        batched = tuple(n == "#0" for n in names)  # the leading batch axis of the inputs
        axes = list(self.map.wire_axes(plain, batched))
        for i, mesh_axes in enumerate(axes):
            if mesh_axes and shape[i] % self.map.devices(mesh_axes):
                axes[i] = None
        return P(*_entries(tuple(axes)))

    def sharding(self, spec: P) -> NamedSharding:
        return NamedSharding(self.mesh, spec)

    # -- constraints
    def constrain(self, v: _V) -> _V:
        """`v` with its array constrained to the sharding its names give (lazy one-hots are left lazy)."""
        if v.hot is not None and v._a is None:
            return v
        a = v.a
        if a.ndim != len(v.names):
            return v
        spec = self.wire_spec(v.names, a.shape)
        return _V(self._put(a, spec), v.names)

    def _put(self, a, spec: P):
        if self.explicit:  # a NamedSharding, not a bare spec: works with or without `jax.set_mesh`
            return jax.sharding.reshard(a, NamedSharding(self.mesh, spec))
        return jax.lax.with_sharding_constraint(a, NamedSharding(self.mesh, spec))

    def run_box(self, runner, rule, d, b, index, prefix, ins, ctx, sub):
        """Run one box's lowering on the mesh: see the module's docstring."""
        try:
            result = _apply(runner, rule, d, b, index, prefix, ins, ctx, sub)
        except _ShardingTypeError:
            if not self.explicit:
                raise
            result = self._run_auto(runner, rule, d, b, index, prefix, ins, ctx, sub)
        if b.op not in _CONSTRAINED:
            return result
        outs, caps = result if b.body is not None else (result, None)
        outs = [self.constrain(v) for v in outs]
        return (outs, caps) if b.body is not None else outs

    def _run_auto(self, runner, rule, d, b, index, prefix, ins, ctx, sub):
        """The box with the mesh's axes in auto mode; its outputs back on explicit axes by name."""
        auto = self.mesh.abstract_mesh.update_axis_types({n: AxisType.Auto for n in self.mesh.axis_names})
        with jax.sharding.use_abstract_mesh(auto):
            # every weight, not only the box's own: a lowering may read its neighbours' (fused projections)
            weights = {k: _to_auto(w, auto) for k, w in runner.weights.items()}
            auto_runner = type(runner)(runner.plan, weights)
            ins = [_v_to_auto(v, auto) for v in ins]
            result = _apply(auto_runner, rule, d, b, index, prefix, ins, ctx, sub)
        runner.updates.update(auto_runner.updates)
        outs, caps = result if b.body is not None else (result, None)
        back = [_V(self._put(v.a, self.wire_spec(v.names, v.a.shape)), v.names) for v in outs]
        if caps is not None:
            caps = {k: (self._put(a, P()), names) for k, (a, names) in caps.items()}
        return (back, caps) if b.body is not None else back

    # -- placing
    def place_inputs(self, values: list[_V]) -> list[_V]:
        return [self.constrain(v) if _is_traced(v.a) else self._device_put(v) for v in values]

    def _device_put(self, v: _V) -> _V:
        spec = self.wire_spec(v.names, v.a.shape)
        return _V(jax.device_put(v.a, NamedSharding(self.mesh, spec)), v.names)

    def place_output(self, a, names: tuple[str, ...]):
        if a.ndim != len(names):
            return a
        spec = self.wire_spec(names, a.shape)
        if _is_traced(a):
            return self._put(a, spec)
        return jax.device_put(a, NamedSharding(self.mesh, spec))


def _apply(runner, rule, d, b, index, prefix, ins, ctx, sub):
    if b.body is not None:
        return rule(runner, d, b, index, prefix, ins, ctx, sub)
    return rule(runner, d, b, index, prefix, ins, ctx)


def _to_auto(a, auto_mesh):
    # what `jax.sharding.auto_axes` does to its arguments: the same array, typed on the auto mesh
    return jax.sharding.reshard(a, _spec_for_auto(jax.typeof(a).sharding.spec, auto_mesh))


def _v_to_auto(v: _V, auto_mesh) -> _V:
    if v.hot is not None and v._a is None:
        indices, n = v.hot
        return _V(None, v.names, hot=(_to_auto(indices, auto_mesh), n))
    return _V(_to_auto(v.a, auto_mesh), v.names)


def _is_traced(a) -> bool:
    return isinstance(a, jax.core.Tracer)


def _entries(axes: tuple[tuple[str, ...] | None, ...]) -> tuple:
    """PartitionSpec entries: None, one mesh axis name, or a tuple of them."""
    return tuple(None if not m else (m[0] if len(m) == 1 else tuple(m)) for m in axes)


def _plain_name(name: str) -> str:
    m = _CALL_AXIS.match(name)
    if m:
        return m.group(1)
    return name


def _weight_names(spec: _WeightSpec) -> tuple[str, ...]:
    return tuple(name for name, _ in spec.copies) + spec.weight.type.names


def mesh_shape(mesh) -> dict[str, int]:
    """A jax `Mesh`'s axis names and sizes, in order."""
    return {str(k): int(v) for k, v in dict(mesh.shape).items()}


def make_layout(diagram, mesh, shard, batch, bindings: dict[str, int]) -> Layout:
    """Validate the mapping (span errors, nothing allocated) and build the layout."""
    if not isinstance(mesh, jax.sharding.Mesh):
        raise InvalidArgument(f"mesh must be a jax.sharding.Mesh (jax.make_mesh(...)), got {type(mesh).__name__}",
                              diagram.span)
    return Layout(mesh, validate(diagram, mesh_shape(mesh), shard, batch, bindings))


def initial_values(plan: _Plan, stream, recipes: tuple) -> list:
    """Every weight drawn in one jitted program whose outputs are already sharded (never whole on one device).

    Weight j is drawn from `fold_in(key, count + j)` in its own shape, which gives the values the unsharded
    path draws (`module._init_all` cuts them from longer rows; JAX's partitionable threefry makes the two
    equal), and each draw is partitioned over the devices that hold the weight.
    """
    from .module import _init_expression, _init_weight

    layout: Layout = plan.layout
    shardings = [layout.weight_sharding(spec) for spec in plan.weights]
    key, count = stream.key[...], stream.count[...]
    if key.shape == () and count.shape == ():
        out_shardings = ([None if r[0] == "expr" else s for r, s in zip(recipes, shardings)], layout.replicated)
        init = jax.jit(_draw_each, static_argnums=(2,), out_shardings=out_shardings)
        values, new_count = init(key, count, recipes)
        stream.count[...] = jax.device_get(new_count)
        values = list(values)
    else:  # a stream of split keys: one weight at a time, each jitted onto its devices
        values = []
        for spec, recipe, sharding in zip(plan.weights, recipes, shardings):
            if recipe[0] == "expr":
                values.append(None)
                continue
            draw = jax.jit(lambda k, spec=spec, recipe=recipe: _init_weight(
                k, spec.weight, recipe[1][:len(spec.copies)], plan.sizes), out_shardings=sharding)
            values.append(draw(stream()))
    exprs = [j for j, v in enumerate(values) if v is None]
    if exprs:
        made = jax.jit(lambda: [_init_expression(plan.weights[j].weight, recipes[j][1], plan.sizes) for j in exprs],
                       out_shardings=[shardings[j] for j in exprs])()
        for j, value in zip(exprs, made):
            values[j] = value
    return values


def _draw_each(key, count, recipes: tuple):
    """`module._init_all`'s values, each weight drawn in its own shape (so the partitioner can split it)."""
    from .module import _draw

    out: list = []
    for j, recipe in enumerate(recipes):
        kind, shape, a, _ = recipe
        if kind == "expr":
            out.append(None)
        elif kind in ("zeros", "ones"):
            out.append(_draw(None, recipe))
        else:
            k = jax.random.fold_in(key, count + jnp.uint32(j))
            out.append(_draw(k, recipe) if kind == "uniform" else a * _draw(k, (kind, shape, 1.0, 0.0)))
    return out, count + len(recipes)


def per_device_bytes(model) -> int:
    """The largest number of bytes of parameters any one device holds."""
    from flax import nnx

    totals: dict[Any, int] = {}
    for leaf in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)):
        for shard in leaf.addressable_shards:
            totals[shard.device] = totals.get(shard.device, 0) + math.prod(shard.data.shape) * shard.data.dtype.itemsize
    return max(totals.values(), default=0)
