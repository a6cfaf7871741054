"""Benchmark: how fast a compiled circuit trains (ModAddMLP, p = 97, AdamW), measured as ratios in one run.

  (a) train-step time of the compiled circuit over the same model written by hand
      in Flax NNX (one-hot inputs, nnx.Linear), both stepped with nnx.jit and
      nnx.Optimizer(AdamW); goal <= 1.05.
  (b) steady-state steps per second of the diagrammar trainer (diagrammar.train,
      which fuses steps with lax.scan) over a plain nnx.jit Python loop running
      the same step (same minibatch rule, same loss) on the same model; goal >= 1.2.
  (c) where torch is importable: the trainer's steps per second over the same
      model in a PyTorch eager loop, as most grokking code is written (full batch,
      as in the grokking papers; batch 128 is printed too); goal >= 1.5.
  (d) achieved GFLOP/s of the compiled train step (XLA's own flop count from
      cost_analysis(), over its measured time) over the GFLOP/s of a large
      matmul measured in the same run; goal >= 0.7. Printed for the default
      lowering (the first layer as a row gather) and for the dense one-hot product.

The machine may be shared with other jobs, so every comparison interleaves its
contenders in short blocks and compares the fastest block of each (the one least
disturbed by other processes); medians are printed alongside.
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
from diagrammar.train import ModAdd, default_optimizer, train
from diagrammar.train.modadd import ModAddMLP as HandLookup
from diagrammar.train.loop import epoch_order

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


class SampledModAdd(ModAdd):
    """ModAdd whose minibatches are drawn with replacement through the trainer's `Task.sample` hook."""

    def sample(self, key):
        n = self.train_data["a"].shape[0]
        idx = jax.random.randint(key, (self.batch_size,), 0, n)
        return {k: v[idx] for k, v in self.train_data.items()}


class LoopDraw:
    """The minibatches of a plain Python loop, the same ones the trainer draws (`batch_at`):
    shuffled epochs, each epoch's order computed once, as a hand-written loop would."""

    def __init__(self, task: ModAdd):
        self.task, self.n = task, task.train_data["a"].shape[0]
        self.orders: dict[int, jax.Array] = {}

    def _order(self, e: int) -> jax.Array:
        if e not in self.orders:
            self.orders = {e: epoch_order(0, e, self.n)}  # keep only the current epoch
        return self.orders[e]

    def __call__(self, i: int):
        """What the jitted step takes for step i: a key (sampled draw), indices, or None (full batch)."""
        bs = self.task.batch_size
        if hasattr(self.task, "sample"):
            return jax.random.fold_in(jax.random.key(0), i)
        if bs is None:
            return None
        q0 = i * bs
        e, r = divmod(q0, self.n)
        if r + bs <= self.n:
            return self._order(e)[r:r + bs]
        return jnp.concatenate([self._order(e)[r:], self._order(e + 1)[:r + bs - self.n]])


def draw(task: ModAdd, data, arg):
    """The minibatch for what LoopDraw gave."""
    if hasattr(task, "sample"):
        return task.sample(arg)
    if arg is None:
        return data
    return {k: v[arg] for k, v in data.items()}


def compiled_model(seed: int = 0, onehot_gather: bool = True):
    return compile_diagram(diagrammar.load(circuits_dir() / "modadd_mlp.circuit")["ModAddMLP"],
                           rngs=nnx.Rngs(seed), onehot_gather=onehot_gather)


def median_ms(ts) -> float:
    return 1e3 * statistics.median(ts)


def best_ms(ts) -> float:
    return 1e3 * min(ts)


# ---------------------------------------------------------------- (a) compiled vs hand-written


def nnx_step(task: ModAdd):
    """A plain nnx.jit train step; the minibatch is drawn inside it exactly as the trainer draws it."""
    data = dict(task.train_data)

    @nnx.jit
    def step(model, opt, arg):
        batch = draw(task, data, arg)

        def loss_fn(m):
            return task.loss(m, batch, True)[0]

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    return step


def part_a(task: ModAdd, rounds: int, steps_per_round: int) -> None:
    print("(a) train step, compiled circuit vs hand-written Flax NNX (nnx.jit + AdamW)", flush=True)
    print("    Each lowering against the hand-written model that computes the same way: the dense one-hot\n"
          "    product (onehot_gather=False) against nnx.Linear on concatenated one-hots, the default row\n"
          "    gather against diagrammar.train.modadd.ModAddMLP(lookup=True) (W1[0, a] + W1[1, b]).", flush=True)
    pairs = (("compiled, dense", "hand, nnx.Linear"), ("compiled, gather (default)", "hand, lookup"))
    for batch_size in (None, 128):
        models = {"compiled, dense": compiled_model(onehot_gather=False),
                  "hand, nnx.Linear": HandModAddMLP(P, HIDDEN, rngs=nnx.Rngs(0)),
                  "compiled, gather (default)": compiled_model(),
                  "hand, lookup": HandLookup(P, HIDDEN, rngs=nnx.Rngs(0), lookup=True)}
        runners = {}
        for name, m in models.items():
            opt = nnx.Optimizer(m, default_optimizer(LR, WD, B1, B2), wrt=nnx.Param)
            task_b = ModAdd(p=P, train_frac=0.5, seed=0, batch_size=batch_size)
            step, loop_draw = nnx_step(task_b), LoopDraw(task_b)
            for i in range(3):
                step(m, opt, loop_draw(i)).block_until_ready()
            runners[name] = (m, opt, step, loop_draw)
        times: dict[str, list[float]] = {k: [] for k in runners}
        names = list(runners)
        for r in range(rounds):
            for name in (names if r % 2 == 0 else names[::-1]):  # alternate, so all see the same load
                m, opt, step, loop_draw = runners[name]
                t = time.perf_counter()
                for i in range(steps_per_round):
                    loss = step(m, opt, loop_draw(i))
                loss.block_until_ready()
                times[name].append((time.perf_counter() - t) / steps_per_round)
        what = "full batch (4704 pairs)" if batch_size is None else f"batch {batch_size}"
        print(f"  {what}: " + ", ".join(f"{k} {best_ms(v):.3f} ms/step (median {median_ms(v):.3f})"
                                        for k, v in times.items()), flush=True)
        for compiled, hand in pairs:
            ratio = best_ms(times[compiled]) / best_ms(times[hand])
            if batch_size is None:
                report(f"(a) step time, {compiled} / {hand} (full batch)", ratio, "<= 1.05", ratio <= 1.05)
            else:
                print(f"  (ratio {compiled} / {hand} at batch {batch_size}: {ratio:.3f})")
        ratio = best_ms(times["compiled, gather (default)"]) / best_ms(times["hand, nnx.Linear"])
        print(f"  (what a user sees: the default compiled step over the nnx.Linear model: {ratio:.3f})", flush=True)


# ---------------------------------------------------------------- (b) trainer vs plain loop


def eval_cost(task: ModAdd, model) -> float:
    """Seconds the trainer spends at an evaluation point (loss and accuracy on both splits, Fourier analysis)."""
    loss = nnx.jit(lambda m, d: task.loss(m, d, False))
    data = (dict(task.train_data), dict(task.test_data))
    for d in data:
        jax.block_until_ready(loss(model, d))
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        for d in data:
            jax.block_until_ready(loss(model, d))
        task.analyse(model)
        ts.append(time.perf_counter() - t)
    return min(ts)


def part_b(quick: bool) -> dict:
    print("(b) diagrammar trainer (lax.scan over steps) vs a plain nnx.jit Python loop, same model and step",
          flush=True)
    rates = {}
    for kind, batch_size, spc in (("sampled", 128, 500), ("default", 128, 500), ("default", None, 20)):
        chunks = 4 if quick else 6
        cls = SampledModAdd if kind == "sampled" else ModAdd
        task = cls(p=P, train_frac=0.5, seed=0, batch_size=batch_size)
        model = compiled_model()
        opt = nnx.Optimizer(model, default_optimizer(LR, WD, B1, B2), wrt=nnx.Param)
        step, loop_draw = nnx_step(task), LoopDraw(task)
        for i in range(3):
            step(model, opt, loop_draw(i)).block_until_ready()
        overhead = eval_cost(task, model)

        def run_loop():
            t = time.perf_counter()
            for i in range(spc):
                loss = step(model, opt, loop_draw(i))
            loss.block_until_ready()
            return (time.perf_counter() - t) / spc

        chunk_times, loop_times = [], []
        for _ in range(1 if quick else 2):  # alternate, so both see the same machine load
            fresh = compiled_model()
            result = train(fresh, task, steps=spc * chunks, steps_per_call=spc, eval_every=spc, progress=False,
                           seed=0)
            stamps = [row["time"] for row in result.history]  # at step 0, then after every chunk
            # the first chunk compiles; each later interval is one chunk plus one evaluation
            chunk_times += [(b - a - overhead) / spc for a, b in zip(stamps[1:], stamps[2:])]
            loop_times += [run_loop() for _ in range(chunks)]
        trainer, loop_rate = 1 / min(chunk_times), 1 / min(loop_times)
        what = "full batch" if batch_size is None else f"batch {batch_size}, " + (
            "drawn with replacement (Task.sample)" if kind == "sampled" else "the trainer's default draw (batch_at)")
        print(f"  {what}: trainer {trainer:.1f} steps/s, plain loop {loop_rate:.1f} steps/s (chunks of {spc} steps; "
              f"medians {1 / statistics.median(chunk_times):.1f} and {1 / statistics.median(loop_times):.1f}; "
              f"{1e3 * overhead:.1f} ms per evaluation point taken off the trainer's intervals)", flush=True)
        rates[(kind, batch_size)] = trainer
        if batch_size == 128:
            report(f"(b) steps/s, trainer / plain nnx.jit loop (batch 128, {kind} draw)", trainer / loop_rate,
                   ">= 1.2", trainer / loop_rate >= 1.2)
        else:
            print(f"  (ratio at full batch: {trainer / loop_rate:.3f}; a 20 ms step leaves little loop overhead "
                  "to remove)")
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
    default_threads = torch.get_num_threads()
    for batch_size in (None, 128):
        best = (0.0, default_threads)
        for threads in sorted({1, default_threads}):  # torch's default can lose to 1 thread on a busy machine
            torch.set_num_threads(threads)
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
            for _ in range(1 if quick else 3):
                t = time.perf_counter()
                for _ in range(n):
                    step()
                best = max(best, (n / (time.perf_counter() - t), threads))
        torch.set_num_threads(default_threads)
        rate, threads = best
        what = "full batch" if batch_size is None else f"batch {batch_size}"
        print(f"  {what}: torch eager {rate:.1f} steps/s (best of 1 and {default_threads} threads: {threads})",
              flush=True)
        if batch_size is None:  # the grokking papers train full batch
            ratio = trainer_rates[("default", None)] / rate
            report("(c) steps/s, diagrammar trainer / PyTorch eager (full batch)", ratio, ">= 1.5", ratio >= 1.5)
        else:
            for kind in ("sampled", "default"):
                ratio = trainer_rates[(kind, batch_size)] / rate
                report(f"(c) steps/s, diagrammar trainer / PyTorch eager (batch {batch_size}, {kind} draw)", ratio,
                       ">= 1.5", ratio >= 1.5)


# ---------------------------------------------------------------- (d) achieved GFLOP/s


def timed(fn, args, n: int) -> list[float]:
    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t)
    return ts


def flops_of(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost["flops"])


def part_d(quick: bool) -> None:
    print("(d) achieved GFLOP/s of the compiled train step (XLA's count) vs a large matmul", flush=True)
    print("    The default lowering gathers the first layer's weight rows instead of multiplying by one-hot rows:\n"
          "    less work, so fewer counted FLOPs in less time. The dense lowering (onehot_gather=False) is the\n"
          "    matmul-bound step the goal was written for; both are measured.", flush=True)
    task = ModAdd(p=P, train_frac=0.5, seed=0)
    tx = default_optimizer(LR, WD, B1, B2)
    data = dict(task.train_data)
    steps = {}
    for lowering, gather in (("gather (default)", True), ("dense one-hot", False)):
        graphdef, params, rest = nnx.split(compiled_model(onehot_gather=gather), nnx.Param, ...)
        opt_state = tx.init(params)

        def step(params, rest, opt_state, data, graphdef=graphdef):
            def loss_fn(params):
                return task.loss(nnx.merge(graphdef, params, rest, copy=True), data, True)[0]

            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        args = (params, rest, opt_state, data)
        compiled = jax.jit(step).lower(*args).compile()
        steps[lowering] = (compiled, args, flops_of(compiled), [])

    n = 2048
    x = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    yy = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul).lower(x, yy).compile()
    mm_flops = flops_of(mm)
    reps = 5 if quick else 15
    t_mm = []
    for _ in range(4):  # interleaved blocks, so all see the same machine load
        for compiled, args, _, ts in steps.values():
            ts += timed(compiled, args, reps)
        t_mm += timed(mm, (x, yy), max(reps // 3, 2))
    mm_rate = mm_flops / min(t_mm) / 1e9
    print(f"  matmul {n}x{n}x{n}: {mm_flops / 1e9:.1f} GFLOP in {1e3 * min(t_mm):.1f} ms = {mm_rate:.1f} GFLOP/s "
          f"(median {1e3 * statistics.median(t_mm):.1f} ms)", flush=True)
    for lowering, (_, _, step_flops, ts) in steps.items():
        step_rate = step_flops / min(ts) / 1e9
        print(f"  train step, {lowering}: {step_flops / 1e9:.3f} GFLOP in {1e3 * min(ts):.2f} ms = "
              f"{step_rate:.1f} GFLOP/s (median {1e3 * statistics.median(ts):.2f} ms)", flush=True)
        report(f"(d) GFLOP/s, train step / large matmul ({lowering})", step_rate / mm_rate, ">= 0.7",
               step_rate / mm_rate >= 0.7)


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
