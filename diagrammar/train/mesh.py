"""Train stage: training on a device mesh (the model's layout decides where state and batches live).

A model compiled with `mesh=` carries its `Layout` (backends/flax/sharding.py).
The trainer asks this module for it and then: runs under `jax.set_mesh` (explicit
mesh axes need a mesh in context), creates the optimiser state with the
parameters' shardings, pins the state to those shardings at the end of every
compiled chunk (so the partitioner never moves it between chunks), and places
the data: split over the batch's mesh axes when the number of examples divides
evenly and the mesh axes are auto, else replicated (the model splits each drawn
batch on entry).
Nothing here runs for a model without a mesh.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import jax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from ..errors import BadArgument


def layout_of(model: Any):
    """The `Layout` of a compiled circuit placed on a mesh, or None."""
    plan = getattr(model, "_plan", None)
    return getattr(plan, "layout", None)


def context(model: Any):
    """`jax.set_mesh(mesh)` for a model on a mesh; a no-op context otherwise."""
    layout = layout_of(model)
    return jax.set_mesh(layout.mesh) if layout is not None else contextlib.nullcontext()


def shardings(tree: Any) -> Any:
    """Each leaf's sharding (the target the state is pinned to)."""
    return jax.tree.map(lambda a: a.sharding, tree)


def pin(tree: Any, target: Any) -> Any:
    """Constrain every leaf to its sharding in `target` (inside jit)."""
    return jax.tree.map(jax.lax.with_sharding_constraint, tree, target)


def place_data(data: Mapping[str, Any], layout) -> dict[str, jax.Array]:
    """Arrays with a leading example axis, split over the batch's mesh axes where the count divides evenly."""
    out = {}
    for name, value in data.items():
        value = jax.numpy.asarray(value)
        spec = P()
        # on explicit axes a minibatch drawn from split data is a gather JAX cannot type: keep the data whole
        if (layout.map.batch and not layout.explicit and value.ndim
                and value.shape[0] % layout.map.devices(layout.map.batch) == 0):
            batch = layout.map.batch
            spec = P(batch[0] if len(batch) == 1 else batch)
        out[name] = jax.device_put(value, NamedSharding(layout.mesh, spec))
    return out


def init_optimizer(tx, params: Any, layout) -> Any:
    """`tx.init(params)` created on the mesh: each parameter-shaped leaf (Adam's moments) sharded like its
    parameter, the rest (step counts) replicated."""
    import optax

    replicated = NamedSharding(layout.mesh, P())
    shapes = jax.eval_shape(tx.init, params)
    try:
        target = optax.tree_map_params(tx, lambda _, s: s, shapes, shardings(params),
                                       transform_non_params=lambda _: replicated)
    except (ValueError, TypeError):  # a state optax cannot line up with the parameters: let XLA choose
        return jax.jit(tx.init)(params)
    return jax.jit(tx.init, out_shardings=target)(params)


# ---------------------------------------------------------------- the command line

def make_mesh(shape: Mapping[str, int], explicit: bool = False) -> jax.sharding.Mesh:
    """A mesh of the given axis sizes over the first devices (a BadArgument when there are too few)."""
    need = 1
    for size in shape.values():
        need *= size
    have = jax.device_count()
    if need > have:
        raise BadArgument(f"the mesh {','.join(f'{k}={v}' for k, v in shape.items())} needs {need} devices; "
                          f"this process has {have} (on CPU: XLA_FLAGS=--xla_force_host_platform_device_count={need})")
    kind = AxisType.Explicit if explicit else AxisType.Auto
    return jax.make_mesh(tuple(shape.values()), tuple(shape), axis_types=(kind,) * len(shape),
                         devices=jax.devices()[:need])
