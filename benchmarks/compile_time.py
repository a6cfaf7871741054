"""Seconds `compile()` takes for every zoo circuit, against drawing each weight on its own as before.

`compile()` draws every weight in one compiled program (backends/flax/module.py,
`_init_all`); it used to draw each in a program of its own, compiled once per
initialiser, shape and scale, which made the transformer Decoder take 5-10 s.
For every circuit of circuits/*.circuit (free sizes bound to 4) this prints the
seconds of `compile(rngs=nnx.Rngs(0))` with jax's compiled programs cleared
before each (so each circuit pays its own compilation, as in a fresh process),
its CPU seconds (a steadier figure on a shared machine), the number of XLA
compilations, and the same for the old path (`--no-old` skips it). Goal: at
most 1 s for every zoo circuit.

    python benchmarks/compile_time.py [--no-old] [--free N] [--repeat N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

import diagrammar
from diagrammar import errors
from diagrammar.backends.flax import module

ROOT = Path(__file__).resolve().parent.parent
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def circuits():
    for path in sorted((ROOT / "circuits").glob("*.circuit")):
        program = diagrammar.load(path)
        for name in program.own_circuits():
            try:
                yield f"{path.stem}.{name}", program[name]
            except errors.CircuitError:  # generic over axis names: no diagram of its own
                continue


def measure(diagram, free: int, one_program: bool) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and XLA compilations of one compile(), starting from no compiled programs."""
    module.INIT_IN_ONE_PROGRAM = one_program
    sizes = {a: free for a in diagram.free_sizes()}
    jax.clear_caches()
    rngs = nnx.Rngs(0)
    jax.block_until_ready(rngs.params.key[...])
    compiles = []

    def listen(event, duration, **_):
        if event == COMPILE_EVENT:
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        model = diagram.compile(rngs=rngs, **sizes)
        jax.block_until_ready(nnx.state(model))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
        module.INIT_IN_ONE_PROGRAM = True
    return seconds, cpu, len(compiles)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-old", action="store_true", help="skip the old one-program-per-weight path")
    parser.add_argument("--free", type=int, default=4, help="the size bound to every free axis (default 4)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="measure the new path this many times and keep the fastest (default 3)")
    args = parser.parse_args(argv)
    jnp.zeros(1).block_until_ready()  # the backend starts outside the measurements
    rows = []
    header = f"{'circuit':42} {'weights':>7} {'compile s':>9} {'cpu s':>6} {'XLA':>4}"
    if not args.no_old:
        header += f" {'old s':>7} {'old XLA':>7} {'old/new':>7}"
    print(header)
    for label, d in circuits():
        n_weights = sum(1 for _ in d.weights())
        new, cpu, n_new = min(measure(d, args.free, True) for _ in range(max(args.repeat, 1)))
        line = f"{label:42} {n_weights:7d} {new:9.2f} {cpu:6.2f} {n_new:4d}"
        old = None
        if not args.no_old:
            old, _, n_old = measure(d, args.free, False)
            line += f" {old:7.2f} {n_old:7d} " + (f"{old / new:7.1f}" if n_weights else f"{'-':>7}")
        print(line, flush=True)
        rows.append((label, new, old))
    worst = max(rows, key=lambda r: r[1])
    print(f"\nslowest: {worst[0]} {worst[1]:.2f} s (goal: at most 1 s)"
          + (f"; old path {max(r[2] for r in rows):.2f} s at worst" if not args.no_old else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
