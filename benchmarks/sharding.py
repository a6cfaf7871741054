"""Step time and per-device memory of the zoo Decoder on 1, 2, 4 and 8 simulated CPU devices.

Three layouts, each as ratios to one device:
  data    batch="data"                                   (weights replicated, examples split)
  tensor  shard={"heads": "model", "mlp": "model"}       (mesh data=N/2 x model=2; examples over data)
  fsdp    shard={"d": "data"}, batch="data"              (weights and examples split over data)

The simulated devices are threads of one process sharing this machine's two cores, so
the time ratios show the overhead of partitioning (collectives, smaller kernels), never a
speed-up. Per-device parameter bytes are exact: they are what each device holds.

    python benchmarks/sharding.py [--steps 10] [--batch 16]
"""
from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import AxisType  # noqa: E402

import diagrammar  # noqa: E402
from diagrammar.backends.flax.sharding import per_device_bytes  # noqa: E402

SEQ = 16  # the Decoder declares its sequence length


def layouts(n: int):
    yield "data", {"data": n}, {}, "data"
    if n >= 2:
        yield "tensor", ({"data": n // 2, "model": 2}), {"heads": "model", "mlp": "model"}, "data"
    yield "fsdp", {"data": n}, {"d": "data"}, "data"


def measure(diagram, shape, shard, batch_axis, batch: int, steps: int):
    seq = SEQ
    mesh = jax.make_mesh(tuple(shape.values()), tuple(shape), axis_types=(AxisType.Auto,) * len(shape),
                         devices=jax.devices()[:int(jnp.prod(jnp.array(list(shape.values()))))])
    model = diagram.compile(rngs=nnx.Rngs(0), mesh=mesh, shard=shard, batch=batch_axis)
    model.eval()
    tx = optax.adamw(1e-3)
    gdef, params, rest = nnx.split(model, nnx.Param, ...)
    from diagrammar.train.mesh import init_optimizer

    opt = init_optimizer(tx, params, model._plan.layout)
    tokens = jax.random.randint(jax.random.key(0), (batch, seq), 0, 256)

    @jax.jit
    def step(params, opt, tokens):
        def loss(p):
            logits = nnx.merge(gdef, p, rest)(tokens)
            return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], tokens[:, 1:]).mean()
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, value

    with jax.set_mesh(mesh):
        for _ in range(3):  # compile, then warm up
            params, opt, value = step(params, opt, tokens)
        value.block_until_ready()
        t0 = time.perf_counter()
        for _ in range(steps):
            params, opt, value = step(params, opt, tokens)
        value.block_until_ready()
    seconds = (time.perf_counter() - t0) / steps
    stats = step.lower(params, opt, tokens).compile().memory_analysis()
    temp = getattr(stats, "temp_size_in_bytes", 0) if stats is not None else 0
    return seconds, per_device_bytes(model), temp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    diagram = diagrammar.load("circuits/transformer.circuit")["Decoder"]
    print(f"Decoder, batch {args.batch} x seq {SEQ}, AdamW step; {jax.device_count()} simulated CPU devices "
          f"on {os.cpu_count()} cores")
    print("NOTE: the simulated devices share the same cores, so time ratios measure overhead, not speed-up.")
    base_time, base_bytes, base_temp = measure(diagram, {"data": 1}, {}, "data", args.batch, args.steps)
    print(f"1 device: {base_time * 1e3:.1f} ms/step, parameters {base_bytes:,} B, XLA temporaries {base_temp:,} B")
    print(f"{'layout':8} {'devices':>7} {'ms/step':>9} {'time ratio':>10} {'params/device':>14} {'ratio':>6} "
          f"{'temp/device':>12} {'ratio':>6}")
    for n in (1, 2, 4, 8):
        for name, shape, shard, batch_axis in layouts(n):
            t, b, temp = measure(diagram, shape, shard, batch_axis, args.batch, args.steps)
            print(f"{name:8} {n:>7} {t * 1e3:>9.1f} {t / base_time:>10.2f} {b:>14,} {b / base_bytes:>6.3f} "
                  f"{temp:>12,} {temp / max(base_temp, 1):>6.2f}")


if __name__ == "__main__":
    main()
