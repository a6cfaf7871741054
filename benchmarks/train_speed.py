"""Benchmark: how fast a compiled circuit trains (ModAddMLP, p = 97, AdamW), measured as ratios in one run.

  (a) train-step time of the compiled circuit over the same model written by hand
      in Flax NNX (one-hot inputs, nnx.Linear), both stepped with nnx.jit and
      nnx.Optimizer(AdamW); goal <= 1.05.
  (b) steady-state steps per second of the diagrammar trainer (diagrammar.train,
      which fuses steps with lax.scan) over a plain nnx.jit Python loop running
      the same step (same minibatch rule, same loss) on the same model; goal >= 1.2.
  (c) where torch is importable: the trainer's steps per second over the same
      model in a PyTorch eager loop, as most grokking code is written; goal >= 1.5.
  (d) achieved GFLOP/s of the compiled train step (XLA's own flop count from
      cost_analysis(), over its measured time) over the GFLOP/s of a large
      matmul measured in the same run; goal >= 0.7.

The machine may be shared: timings interleave the contenders and report medians.
Run:  python benchmarks/train_speed.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import diagrammar
from diagrammar._resources import circuits_dir
from diagrammar.backends.flax import compile_diagram
from diagrammar.train import ModAdd, batch_at, default_optimizer, train

P, HIDDEN = 97, 512
LR, WD, B1, B2 = 1e-3, 1.0, 0.9, 0.98
RESULTS: list[tuple[str, float, str, bool]] = []


def report(label: str, ratio: float, goal: str, ok: bool) -> None:
    RESULTS.append((label, ratio, goal, ok))
    print(f"  => {label}: {ratio:.3f}  (goal {goal}: {'met' if ok else 'MISSED'})", flush=True)


class HandModAddMLP(nnx.Module):
    """ModAddMLP written by hand in Flax NNX: concatenated one-hots, nnx.Linear, relu, nnx.Linear."""

    def __init__(self, p: int, hidden: int, *, rngs: nnx.Rngs):
        self.p = p
        self.hidden = nnx.Linear(2 * p, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, p, rngs=rngs)

    def __call__(self, a, b):
        x = jnp.concatenate([jax.nn.one_hot(a, self.p), jax.nn.one_hot(b, self.p)], axis=-1)
        return self.out(nnx.relu(self.hidden(x)))


def compiled_model(seed: int = 0):
    return compile_diagram(diagrammar.load(circuits_dir() / "modadd_mlp.circuit")["ModAddMLP"],
                           rngs=nnx.Rngs(seed))


def median_ms(ts) -> float:
    return 1e3 * statistics.median(ts)


# ---------------------------------------------------------------- (a) compiled vs hand-written


def nnx_step(task: ModAdd, batch_size: int | None):
    """A plain nnx.jit train step; the minibatch is drawn inside it exactly as the trainer draws it."""
    data = dict(task.train_data)

    @nnx.jit
    def step(model, opt, i):
        batch = batch_at(data, 0, i, batch_size)

        def loss_fn(m):
            return task.loss(m, batch, True)[0]

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    return step


def part_a(task: ModAdd, rounds: int, steps_per_round: int) -> None:
    print("(a) train step, compiled circuit vs hand-written Flax NNX (nnx.jit + AdamW)", flush=True)
    for batch_size in (None, 128):
        models = {"compiled": compiled_model(), "hand": HandModAddMLP(P, HIDDEN, rngs=nnx.Rngs(0))}
        runners = {}
        for name, m in models.items():
            opt = nnx.Optimizer(m, default_optimizer(LR, WD, B1, B2), wrt=nnx.Param)
            step = nnx_step(task, batch_size)
            for i in range(3):
                step(m, opt, jnp.int32(i)).block_until_ready()
            runners[name] = (m, opt, step)
        times: dict[str, list[float]] = {k: [] for k in runners}
        for r in range(rounds):
            for name in (("compiled", "hand") if r % 2 == 0 else ("hand", "compiled")):
                m, opt, step = runners[name]
                t = time.perf_counter()
                for i in range(steps_per_round):
                    loss = step(m, opt, jnp.int32(i))
                loss.block_until_ready()
                times[name].append((time.perf_counter() - t) / steps_per_round)
        c, h = median_ms(times["compiled"]), median_ms(times["hand"])
        what = "full batch (4704 pairs)" if batch_size is None else f"batch {batch_size}"
        print(f"  {what}: compiled {c:.3f} ms/step, hand-written {h:.3f} ms/step", flush=True)
        if batch_size is None:
            report("(a) step time, compiled / hand-written Flax (full batch)", c / h, "<= 1.05", c / h <= 1.05)
        else:
            print(f"  (ratio at batch {batch_size}: {c / h:.3f})")


# ---------------------------------------------------------------- (b) trainer vs plain loop


def trainer_rate(task: ModAdd, n1: int, n2: int, steps_per_call: int, repeats: int) -> tuple[float, float]:
    """Steady-state steps/s of diagrammar.train: (n2 - n1) / (t2 - t1), so compilation and the
    evaluations at the start and end (identical in both runs) cancel. Also returns the end-to-end rate."""

    def run(n):
        model = compiled_model()
        t = time.perf_counter()
        train(model, task, steps=n, steps_per_call=steps_per_call, eval_every=n, progress=False, seed=0)
        return time.perf_counter() - t

    t1 = statistics.median(run(n1) for _ in range(repeats))
    t2 = statistics.median(run(n2) for _ in range(repeats))
    return (n2 - n1) / max(t2 - t1, 1e-9), n2 / t2


def loop_rate(task: ModAdd, batch_size: int | None, n: int, repeats: int) -> float:
    model = compiled_model()
    opt = nnx.Optimizer(model, default_optimizer(LR, WD, B1, B2), wrt=nnx.Param)
    step = nnx_step(task, batch_size)
    for i in range(3):
        step(model, opt, jnp.int32(i)).block_until_ready()
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(n):
            loss = step(model, opt, jnp.int32(i))
        loss.block_until_ready()
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def part_b(quick: bool) -> dict:
    print("(b) diagrammar trainer (lax.scan over steps) vs a plain nnx.jit Python loop, same model and step",
          flush=True)
    rates = {}
    for batch_size, n1, n2, spc in ((128, 500, 2500, 500), (None, 40, 200, 40)):
        if quick:
            n1, n2 = n1 // 2, n2 // 2
            spc //= 2
        task = ModAdd(p=P, train_frac=0.5, seed=0, batch_size=batch_size)
        trainer, end_to_end = trainer_rate(task, n1, n2, spc, repeats=1 if quick else 2)
        loop = loop_rate(task, batch_size, n2 - n1, repeats=1 if quick else 2)
        what = "full batch" if batch_size is None else f"batch {batch_size}"
        print(f"  {what}: trainer {trainer:.1f} steps/s (end to end, compile and 2 evals included: "
              f"{end_to_end:.1f}), plain loop {loop:.1f} steps/s", flush=True)
        rates[batch_size] = trainer
        if batch_size == 128:
            report("(b) steps/s, trainer / plain nnx.jit loop (batch 128)", trainer / loop, ">= 1.2",
                   trainer / loop >= 1.2)
        else:
            print(f"  (ratio at full batch: {trainer / loop:.3f}; a 40 ms step leaves little loop overhead to remove)")
    return rates


# ---------------------------------------------------------------- (c) PyTorch eager


def part_c(trainer_rates: dict, quick: bool) -> None:
    print("(c) the same model in a PyTorch eager loop (AdamW, same data)", flush=True)
    try:
        import torch
    except ImportError:
        print("  skipped: torch is not importable (pip install torch==2.13.0 takes a CPU build from this disk)")
        return
    torch.manual_seed(0)
    task = ModAdd(p=P, train_frac=0.5, seed=0)
    a = torch.from_numpy(np.asarray(task.train_data["a"], np.int64))
    b = torch.from_numpy(np.asarray(task.train_data["b"], np.int64))
    y = torch.from_numpy(np.asarray(task.train_data["label"], np.int64))
    for batch_size in (128, None):
        model = torch.nn.Sequential(torch.nn.Linear(2 * P, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, P))
        opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(B1, B2), weight_decay=WD)

        def step():
            if batch_size is None:
                aa, bb, yy = a, b, y
            else:
                idx = torch.randperm(len(a))[:batch_size]
                aa, bb, yy = a[idx], b[idx], y[idx]
            x = torch.cat([torch.nn.functional.one_hot(aa, P), torch.nn.functional.one_hot(bb, P)], -1).float()
            loss = torch.nn.functional.cross_entropy(model(x), yy)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        n = (200 if batch_size else 20) // (2 if quick else 1)
        for _ in range(5):
            step()
        rates = []
        for _ in range(1 if quick else 3):
            t = time.perf_counter()
            for _ in range(n):
                step()
            rates.append(n / (time.perf_counter() - t))
        rate = statistics.median(rates)
        what = "full batch" if batch_size is None else f"batch {batch_size}"
        print(f"  {what}: torch eager {rate:.1f} steps/s ({torch.get_num_threads()} threads), "
              f"diagrammar trainer {trainer_rates[batch_size]:.1f} steps/s", flush=True)
        ratio = trainer_rates[batch_size] / rate
        if batch_size == 128:
            report("(c) steps/s, diagrammar trainer / PyTorch eager (batch 128)", ratio, ">= 1.5", ratio >= 1.5)
        else:
            report("(c) steps/s, diagrammar trainer / PyTorch eager (full batch)", ratio, ">= 1.5", ratio >= 1.5)


# ---------------------------------------------------------------- (d) achieved GFLOP/s


def timed(fn, args, n: int) -> float:
    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def flops_of(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost["flops"])


def part_d(quick: bool) -> None:
    print("(d) achieved GFLOP/s of the compiled train step (XLA's count) vs a large matmul", flush=True)
    task = ModAdd(p=P, train_frac=0.5, seed=0)
    model = compiled_model()
    tx = default_optimizer(LR, WD, B1, B2)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = tx.init(params)
    data = dict(task.train_data)

    def step(params, rest, opt_state, data):
        def loss_fn(params):
            return task.loss(nnx.merge(graphdef, params, rest, copy=True), data, True)[0]

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    args = (params, rest, opt_state, data)
    step_c = jax.jit(step).lower(*args).compile()
    step_flops = flops_of(step_c)

    n = 2048
    x = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    yy = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul).lower(x, yy).compile()
    mm_flops = flops_of(mm)
    reps = 5 if quick else 15
    t_step, t_mm = [], []
    for _ in range(3):  # interleaved blocks, so both see the same machine load
        t_step.append(timed(step_c, args, reps))
        t_mm.append(timed(mm, (x, yy), max(reps // 3, 2)))
    step_rate = step_flops / statistics.median(t_step) / 1e9
    mm_rate = mm_flops / statistics.median(t_mm) / 1e9
    print(f"  train step: {step_flops / 1e9:.3f} GFLOP in {1e3 * statistics.median(t_step):.2f} ms = "
          f"{step_rate:.1f} GFLOP/s; matmul {n}x{n}x{n}: {mm_flops / 1e9:.1f} GFLOP in "
          f"{1e3 * statistics.median(t_mm):.1f} ms = {mm_rate:.1f} GFLOP/s", flush=True)
    report("(d) GFLOP/s, train step / large matmul", step_rate / mm_rate, ">= 0.7", step_rate / mm_rate >= 0.7)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (noisier)")
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    task = ModAdd(p=P, train_frac=0.5, seed=0)
    part_a(task, rounds=6 if args.quick else 14, steps_per_round=5 if args.quick else 10)
    rates = part_b(args.quick)
    part_c(rates, args.quick)
    part_d(args.quick)
    print("\nsummary")
    for label, ratio, goal, ok in RESULTS:
        print(f"  {label:<62} {ratio:7.3f}  goal {goal:<7} {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
