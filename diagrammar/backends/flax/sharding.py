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
    box keeps the explicit types;
  - a weight split over a mesh axis the batch is also split over (fully
    sharded data parallel, FSDP) is gathered where it is used. A box of
    `cost.comms.GATHERED_IN_BOX` (linear, embed, the norms) that reads such
    weights, on an input whose batch splits evenly, runs as a `shard_map`
    manual over the batch's mesh axes: its weights are all-gathered inside
    and it works on its own examples, so the transpose of that gather
    reduce-scatters the gradient back to the weight's shards (the textbook
    FSDP/ZeRO-3 step). Any other box that reads one gets it gathered whole
    (its gradient is then all-reduced whole and each device keeps its
    shard); a `param` box's output is the weight, placed by the wire rule.
    Left alone, XLA's partitioner neither gathers a weight where it is used
    nor reduce-scatters a gradient (its CPU pipeline has no pass that makes
    one of an all-reduce and a slice): docs/sharding.md. The cost backend
    (backends/cost/comms.py) counts the same collectives.
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
from jax._src.lax.parallel import (
    all_gather_invariant as _all_gather_invariant,  # not re-exported by jax 0.10; transposes to a slice
)
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from ...check.sharding import ShardMap, validate
from ...errors import InvalidArgument
from ..cost.comms import GATHERED_IN_BOX
from .values import _V, _Ctx

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
        self._weight_specs: dict[str, P] = {}  # dotted name -> the weight's spec (filled on first use)

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
        fsdp = self._fsdp_weights(runner, b, prefix)
        if fsdp:
            result = self._run_mapped(runner, rule, d, b, index, prefix, ins, ctx, fsdp)
            if result is not None:
                return [self.constrain(v) for v in result]
            runner = self._gathered(runner, fsdp)
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

    # -- fully sharded weights: gathered where they are used
    def _spec_of(self, runner, dotted: str, ndim: int) -> P:
        """The spec of weight `dotted` as the runner holds it (inside a repeat, one copy: its copy axes gone)."""
        if not self._weight_specs:
            self._weight_specs = {s.dotted: self.weight_spec(_weight_names(s)) for s in runner.plan.weights}
        spec = tuple(self._weight_specs[dotted])
        return P(*spec[len(spec) - ndim:])

    def _fsdp_weights(self, runner, b, prefix: str) -> dict[str, P]:
        """The weights box `b` reads that are split over a mesh axis the batch is also split over, each
        with its spec; empty when the batch is not split or no weight shares its mesh axes."""
        if not self.map.batch or b.body is not None or b.op == "param":
            # a param box's output is the weight itself, placed by the wire rule (its axes split as the
            # weight's, no batch on it): the box that adds it to batched values gathers it
            return {}
        out = {}
        for dotted in self._box_weights(runner, b, prefix):
            spec = self._spec_of(runner, dotted, runner.weights[dotted].ndim)
            if any(m in self.map.batch for e in spec for m in _axes(e)):
                out[dotted] = spec
        return out

    def _box_weights(self, runner, b, prefix: str) -> list[str]:
        """Dotted names of the weights `b`'s lowering reads: its own, and for the lead of fused sibling
        projections (passes/fuse_siblings.py) its members' too."""
        own = f"{prefix}{b.name}"
        names = [own + (f".{w.name}" if w.name else "") for w in b.weights]
        fused = dict(b.attr("pass", ())).get("fuse_siblings")
        if fused is not None and fused[0] == "lead":
            names += [k for m in fused[1] for k in runner.weights if k.startswith(f"{prefix}{m[0]}.")]
        return sorted({k for k in names if k in runner.weights})

    def _gathered(self, runner, fsdp: dict[str, P]):
        """A runner whose FSDP weights are whole over the batch's mesh axes (still split over any other);
        the box's state updates still reach `runner`.

        A weight split over those axes alone is gathered by a `shard_map` whose result is replicated
        (`all_gather_invariant`): the partitioner then sums its gradient whole over the batch's mesh axes
        (an all-reduce) and the gather's transpose keeps each device's shard of it. Left to a sharding
        constraint, XLA gathers such a weight again in the backward pass."""
        weights = dict(runner.weights)
        batch = self.map.batch
        for dotted, spec in fsdp.items():
            if all(set(_axes(e)) <= set(batch) for e in spec):
                weights[dotted] = jax.shard_map(
                    lambda w, spec=spec: _all_gather(w, spec, _all_gather_invariant), mesh=self.mesh,
                    in_specs=spec, out_specs=P(), axis_names=set(batch))(weights[dotted])
            else:
                weights[dotted] = self._put(weights[dotted], self._without_batch(spec))
        inner = type(runner)(runner.plan, weights)
        inner.updates = runner.updates
        return inner

    def _without_batch(self, spec: P) -> P:
        return P(*(_entry(tuple(m for m in _axes(e) if m not in self.map.batch)) for e in spec))

    def _run_mapped(self, runner, rule, d, b, index, prefix, ins, ctx, fsdp: dict[str, P]):
        """`b` as a `shard_map` manual over the batch's mesh axes, its FSDP weights all-gathered inside; None
        when it cannot run so (another op, no evenly split batch on its input, a weight whose split mixes
        the batch's mesh axes with others). Every output keeps the batch, split as on the input."""
        batch = self.map.batch
        if b.op not in GATHERED_IN_BOX or not ins or "#0" not in ins[0].names:
            return None
        if any(any(m in batch for m in _axes(e)) and not set(_axes(e)) <= set(batch) for s in fsdp.values()
               for e in s):
            return None
        n = self.map.devices(batch)
        flat, in_specs, kinds = [], [], []
        for v in ins:
            if v.hot is not None and v._a is None:  # a lazy one-hot stays lazy: its indices go in
                a, names = v.hot[0], v.names[:-1]
                kinds.append(("hot", v.names, v.hot[1]))
            else:
                a, names = v.a, v.names
                kinds.append(("dense", v.names, None))
            if "#0" in names and a.shape[names.index("#0")] % n:
                return None
            flat.append(a)
            in_specs.append(P(*(_entry(batch) if x == "#0" else None for x in names)))
        weights = {k: runner.weights[k] for k in fsdp}
        w_specs = {k: P(*(_entry(tuple(m for m in _axes(e) if m in batch)) for e in s)) for k, s in fsdp.items()}
        # the box's other weights (split over no mesh axis of the batch) enter whole on those axes: their
        # gradients are summed over the batch, as data parallelism sums them
        others = {k: runner.weights[k] for k in self._box_weights(runner, b, prefix) if k not in fsdp}
        local = _Ctx(ctx.batch, {k: (v // n if k == "#0" else v) for k, v in ctx.sizes.items()}, ctx.training,
                     ctx.key)
        out_names: list[tuple[str, ...]] = []

        def body(arrays, ws, rest):
            vals = [_V(None, names, hot=(a, size)) if kind == "hot" else _V(a, names)
                    for a, (kind, names, size) in zip(arrays, kinds)]
            gathered = {k: _all_gather(w, w_specs[k]) for k, w in ws.items()}
            inner = type(runner)(runner.plan, {**rest, **gathered})
            outs = _apply(inner, rule, d, b, index, prefix, vals, local, None)
            if inner.updates:  # state written from one shard of the batch: not this path's business
                raise _NotMapped
            out_names.clear()
            moved = []
            for v in outs:
                if "#0" not in v.names:
                    raise _NotMapped
                at = v.names.index("#0")
                moved.append(jnp.moveaxis(v.a, at, 0))
                out_names.append(("#0",) + v.names[:at] + v.names[at + 1:])
            return moved

        mapped = jax.shard_map(body, mesh=self.mesh, in_specs=(in_specs, w_specs, {k: P() for k in others}),
                               out_specs=P(_entry(batch)), axis_names=set(batch))
        try:
            outs = mapped(flat, weights, others)
        except (_NotMapped, _ShardingTypeError):
            return None
        return [_V(a, names) for a, names in zip(outs, out_names)]

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


class _NotMapped(Exception):
    """A box found, while traced per shard of the batch, not to fit `Layout._run_mapped`."""


def _axes(entry) -> tuple[str, ...]:
    """A PartitionSpec entry's mesh axes."""
    if entry is None:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def _entry(axes: tuple[str, ...]):
    return None if not axes else (axes[0] if len(axes) == 1 else tuple(axes))


def _all_gather(w, spec: P, gather=jax.lax.all_gather):
    """Inside a `shard_map`: `w` whole along every dimension `spec` splits (over manual mesh axes)."""
    for dim, e in enumerate(spec):
        if e is not None:
            w = gather(w, _axes(e), axis=dim, tiled=True)
    return w


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
