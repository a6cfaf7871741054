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
  (e) GrokTransformer (full batch, p = 113, 30%), the zoo Decoder (batch 64 x seq 16)
      and the sort pointer network (n = 10, batch 128): the compiled circuit, with and
      without the optimisation passes (diagrammar/passes), against the same model
      hand-written in JAX the plain way, plus each step's fraction of the matmul's
      GFLOP/s; goals: >= 1.3x (GrokTransformer, and >= 0.5 of the matmul), >= 1.1x
      (Decoder, pointer network).

The machine may be shared with other jobs, so every comparison interleaves its
contenders in short blocks and compares the fastest block of each (the one least
disturbed by other processes); medians are printed alongside.
Run:  python benchmarks/train_speed.py [--quick] [--only modadd|transformer]
"""
from __future__ import annotations

import argparse
import math
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


# ---------------------------------------------------------------- (e) transformers and a pointer network
#
# Each zoo model against the same model written by hand in JAX the plain way (a projection per weight, einsum
# attention, a Python loop over layers, lax.scan over an RNN's steps), every contender a jitted functional
# step with the same AdamW, timed interleaved in short blocks with a 2048^3 matmul in the same run. The
# compiled circuit runs twice: with the optimisation passes (diagrammar/passes, the default) and without.


def functional_step(loss_fn, tx):
    """A jitted train step `(params, opt_state, batch) -> (params, opt_state, loss)` of `loss_fn(params, batch)`."""
    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss
    return step


def compiled_contender(model, loss_of_model, batch, tx):
    """(step, args) for a compiled circuit: its weights are the params, everything else is held fixed."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(params, batch):
        return loss_of_model(nnx.merge(graphdef, params, rest, copy=True), batch)

    return functional_step(loss_fn, tx), (params, tx.init(params), batch)


def hand_contender(loss_fn, params, batch, tx):
    return functional_step(loss_fn, tx), (params, tx.init(params), batch)


def _normal(key, shape, scale):
    return scale * jax.random.normal(key, shape, jnp.float32)


def hand_grok_params(key, d=128, heads=4, mlp=512, vocab=114, p=113):
    ks = iter(jax.random.split(key, 9))
    return {"embed": _normal(next(ks), (vocab, d), d ** -0.5), "pos": _normal(next(ks), (3, d), 0.02),
            "q": _normal(next(ks), (d, d), d ** -0.5), "k": _normal(next(ks), (d, d), d ** -0.5),
            "v": _normal(next(ks), (d, d), d ** -0.5), "o": _normal(next(ks), (d, d), d ** -0.5),
            "w1": _normal(next(ks), (d, mlp), d ** -0.5), "b1": jnp.zeros(mlp),
            "w2": _normal(next(ks), (mlp, d), mlp ** -0.5), "b2": jnp.zeros(d), "u": _normal(next(ks), (d, p), d ** -0.5)}


def _causal_attention(x, q_w, k_w, v_w, o_w, heads):
    """Multi-head causal self-attention as usually written: three projections, einsum scores and mixing."""
    b, t, d = x.shape
    dk = d // heads
    q, k, v = ((x @ w).reshape(b, t, heads, dk) for w in (q_w, k_w, v_w))
    s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(dk)
    s = jnp.where(jnp.tril(jnp.ones((t, t), bool)), s, -jnp.inf)
    o = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(s, axis=-1), v).reshape(b, t, d)
    return o @ o_w


def hand_grok_logits(p, tokens, heads=4):
    x = p["embed"][tokens] + p["pos"]
    x = x + _causal_attention(x, p["q"], p["k"], p["v"], p["o"], heads)
    x = x + jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    return x[:, -1] @ p["u"]


def _layernorm(x, scale, bias, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    xc = x - mean
    return xc * jax.lax.rsqrt((xc * xc).mean(-1, keepdims=True) + eps) * scale + bias


def hand_decoder_params(key, d=64, layers=4, vocab=256, seq=16):
    ks = iter(jax.random.split(key, 3 + 6 * layers))
    blocks = [{"ln1": (jnp.ones(d), jnp.zeros(d)), "ln2": (jnp.ones(d), jnp.zeros(d)),
               "q": _normal(next(ks), (d, d), d ** -0.5), "k": _normal(next(ks), (d, d), d ** -0.5),
               "v": _normal(next(ks), (d, d), d ** -0.5), "o": _normal(next(ks), (d, d), d ** -0.5),
               "w1": _normal(next(ks), (d, 4 * d), d ** -0.5), "b1": jnp.zeros(4 * d),
               "w2": _normal(next(ks), (4 * d, d), (4 * d) ** -0.5), "b2": jnp.zeros(d)} for _ in range(layers)]
    return {"embed": _normal(next(ks), (vocab, d), d ** -0.5), "pos": _normal(next(ks), (seq, d), 0.02),
            "blocks": blocks, "ln": (jnp.ones(d), jnp.zeros(d)), "u": _normal(next(ks), (d, vocab), d ** -0.5)}


def _dropout(key, x, rate=0.1):
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def hand_decoder_logits(p, tokens, key, heads=4):
    x = p["embed"][tokens] + p["pos"]
    for i, blk in enumerate(p["blocks"]):  # the plain way: a Python loop over the layers
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        a = _causal_attention(_layernorm(x, *blk["ln1"]), blk["q"], blk["k"], blk["v"], blk["o"], heads)
        x = x + _dropout(k1, a)
        f = jax.nn.gelu(_layernorm(x, *blk["ln2"]) @ blk["w1"] + blk["b1"]) @ blk["w2"] + blk["b2"]
        x = x + _dropout(k2, f)
    return _layernorm(x, *p["ln"]) @ p["u"]


def _next_token_loss(logits, tokens):
    return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], tokens[:, 1:]).mean()


def hand_pointer_params(key, feat=2, hd=128, att=128):
    ks = iter(jax.random.split(key, 12))

    def lstm():
        return {"wx": _normal(next(ks), (hd, 4 * hd), hd ** -0.5), "b": jnp.zeros(4 * hd),
                "wh": _normal(next(ks), (hd, 4 * hd), hd ** -0.5)}

    return {"enc_in": _normal(next(ks), (feat, hd), feat ** -0.5), "enc_in_b": jnp.zeros(hd), "enc": lstm(),
            "dec_in": _normal(next(ks), (feat, hd), feat ** -0.5), "dec_in_b": jnp.zeros(hd), "dec": lstm(),
            "w1": _normal(next(ks), (hd, att), hd ** -0.5), "w2": _normal(next(ks), (hd, att), hd ** -0.5),
            "w2_b": jnp.zeros(att), "v": _normal(next(ks), (att,), att ** -0.5), "h0": jnp.zeros(hd),
            "go": _normal(next(ks), (feat,), 0.1)}


def _lstm(p, state, x):
    h, c = state
    z = x @ p["wx"] + p["b"] + h @ p["wh"]  # the plain way: one product for the input, one for the state
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h


def hand_pointer_logp(p, x, valid, forced):
    """circuits/pointer.circuit's PointerNet with teacher forcing (sorting: no reopening), in plain JAX."""
    b, n, _ = x.shape
    h0 = jnp.broadcast_to(p["h0"], (b, p["h0"].shape[0]))

    def encode(state, xs):
        x_t, valid_t = xs
        new, e = _lstm(p["enc"], state, x_t @ p["enc_in"] + p["enc_in_b"])
        keep = valid_t[:, None]
        return (jnp.where(keep, new[0], state[0]), jnp.where(keep, new[1], state[1])), e

    enc_state, enc = jax.lax.scan(encode, (h0, h0), (jnp.swapaxes(x, 0, 1), valid.T))
    keys = jnp.swapaxes(enc, 0, 1) @ p["w1"]  # [b, n, att]

    def decode(state, forced_t):
        lstm, prev, chosen = state
        lstm, h = _lstm(p["dec"], lstm, prev @ p["dec_in"] + p["dec_in_b"])
        free = jnp.where(valid, chosen < 0.5, valid)
        allowed = jnp.where(free.sum(-1, keepdims=True) > 0, free, valid)
        u = jnp.tanh(keys + (h @ p["w2"] + p["w2_b"])[:, None, :]) @ p["v"]
        logp = jax.nn.log_softmax(jnp.where(allowed, u, -jnp.inf), axis=-1)
        pick = forced_t
        return (lstm, jnp.einsum("bn,bnf->bf", pick, x), chosen + pick), logp

    go = jnp.broadcast_to(p["go"], (b, p["go"].shape[0]))
    _, logp = jax.lax.scan(decode, (enc_state, go, jnp.zeros((b, n))), jnp.swapaxes(forced, 0, 1))
    return jnp.swapaxes(logp, 0, 1)


def transformer_contenders(quick: bool) -> dict[str, dict[str, tuple]]:
    """For each model: {contender name: (step, args)}."""
    from diagrammar.train import pointer as pointer_task

    tx = default_optimizer(LR, WD, B1, B2)
    out: dict[str, dict[str, tuple]] = {}
    load = diagrammar.load

    # GrokTransformer, full batch: p = 113, 30% of the pairs (3,831 examples)
    task = ModAdd(p=113, train_frac=0.3, seed=0, inputs="tokens")
    batch = {"tokens": task.model_inputs(task.train_data)[0], "label": task.train_data["label"]}
    grok = load(circuits_dir() / "grok_transformer.circuit")["GrokTransformer"]

    def grok_loss(model, batch):
        return optax.softmax_cross_entropy_with_integer_labels(model(batch["tokens"]), batch["label"]).mean()

    out["GrokTransformer, full batch (p=113, 30%)"] = {
        "compiled, passes": compiled_contender(grok.compile(rngs=nnx.Rngs(0)), grok_loss, batch, tx),
        "compiled, no passes": compiled_contender(grok.compile(rngs=nnx.Rngs(0), passes=False), grok_loss, batch, tx),
        "hand-written JAX": hand_contender(
            lambda p, bt: optax.softmax_cross_entropy_with_integer_labels(
                hand_grok_logits(p, bt["tokens"]), bt["label"]).mean(), hand_grok_params(jax.random.key(0)),
            batch, tx)}

    # the zoo Decoder (circuits/transformer.circuit: d = 64, 4 blocks, dropout 0.1), batch 64 x seq 16
    tokens = jax.random.randint(jax.random.key(1), (64, 16), 0, 256)
    decoder = load(circuits_dir() / "transformer.circuit")["Decoder"]

    def decoder_loss(model, tokens):
        return _next_token_loss(model(tokens), tokens)

    out["Decoder, batch 64 x seq 16"] = {
        "compiled, passes": compiled_contender(decoder.compile(rngs=nnx.Rngs(0)), decoder_loss, tokens, tx),
        "compiled, no passes": compiled_contender(decoder.compile(rngs=nnx.Rngs(0), passes=False), decoder_loss,
                                                  tokens, tx),
        "hand-written JAX": hand_contender(
            lambda p, t: _next_token_loss(hand_decoder_logits(p, t, jax.random.key(2)), t),
            hand_decoder_params(jax.random.key(0)), tokens, tx)}

    # the sort pointer network (circuits/pointer.circuit), n = 5..10 padded to 10, batch 128, teacher forcing
    sort = pointer_task.PointerTask(kind="sort", n_min=5, n_max=10, eval_size=8)
    pbatch = sort.sample(jax.random.key(3))
    pointer_net = load(circuits_dir() / "pointer.circuit")["PointerNet"]
    sizes = pointer_task.PointerTask.axis_sizes("sort", 10)

    def pointer_loss(model, bt):
        return sort.loss(model, bt, True)[0]

    def hand_pointer_loss(p, bt):
        forced = jax.nn.one_hot(bt["target"], 10, dtype=jnp.float32) * bt["target_mask"][..., None]
        return pointer_task.masked_nll(hand_pointer_logp(p, bt["x"], bt["mask"], forced), bt["target"],
                                       bt["target_mask"])

    out["PointerNet, sort n=10, batch 128"] = {
        "compiled, passes": compiled_contender(pointer_net.compile(rngs=nnx.Rngs(0), **sizes), pointer_loss,
                                               pbatch, tx),
        "compiled, no passes": compiled_contender(pointer_net.compile(rngs=nnx.Rngs(0), passes=False, **sizes),
                                                  pointer_loss, pbatch, tx),
        # unroll_scan is off by default (it pays off only on a loaded machine): shown beside the default
        "compiled, +unroll_scan": compiled_contender(
            pointer_net.compile(rngs=nnx.Rngs(0), passes={"unroll_scan": True}, **sizes), pointer_loss, pbatch, tx),
        "hand-written JAX": hand_contender(hand_pointer_loss, hand_pointer_params(jax.random.key(0)), pbatch, tx)}
    return out


def part_e(quick: bool) -> None:
    print("(e) transformers and a pointer network: compiled circuit (with and without the optimisation passes)\n"
          "    vs the same model hand-written in JAX the plain way; jitted steps with AdamW, interleaved blocks,\n"
          "    fastest block of each; cpu = this process's CPU time per step (less sensitive to other jobs)",
          flush=True)
    models = transformer_contenders(quick)
    compiled = {}
    for model, contenders in models.items():
        for name, (step, args) in contenders.items():
            c = jax.jit(step).lower(*args).compile()
            compiled[(model, name)] = (c, args, flops_of(c))
    n = 2048
    x = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    yy = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul).lower(x, yy).compile()
    mm_flops = flops_of(mm)
    wall: dict = {k: [] for k in compiled}
    cpu: dict = {k: [] for k in compiled}
    t_mm: list[float] = []
    rounds, reps = (3, 2) if quick else (8, 3)
    keys = list(compiled)
    for r in range(rounds):  # interleaved, alternating direction, so all see the same machine load
        for key in (keys if r % 2 == 0 else keys[::-1]):
            fn, args, _ = compiled[key]
            jax.block_until_ready(fn(*args))
            for _ in range(reps):
                t, c = time.perf_counter(), time.process_time()
                jax.block_until_ready(fn(*args))
                wall[key].append(time.perf_counter() - t)
                cpu[key].append(time.process_time() - c)
        t_mm += timed(mm, (x, yy), 2)
    mm_rate = mm_flops / min(t_mm) / 1e9
    print(f"  matmul {n}^3: {mm_flops / 1e9:.1f} GFLOP in {1e3 * min(t_mm):.1f} ms = {mm_rate:.1f} GFLOP/s "
          f"(median {1e3 * statistics.median(t_mm):.1f} ms)", flush=True)
    goals = {"GrokTransformer": 1.3, "Decoder": 1.1, "PointerNet": 1.1}
    for model in models:
        print(f"  {model}:")
        for name in models[model]:
            key = (model, name)
            rate = compiled[key][2] / min(wall[key]) / 1e9
            print(f"    {name:<20} {1e3 * min(wall[key]):8.1f} ms/step (median {1e3 * statistics.median(wall[key]):.1f}; "
                  f"cpu {1e3 * min(cpu[key]):.1f}), {compiled[key][2] / 1e9:.2f} GFLOP = {rate:.1f} GFLOP/s = "
                  f"{rate / mm_rate:.2f} of the matmul's", flush=True)
        hand = min(wall[(model, "hand-written JAX")])
        goal = goals[model.split(",")[0]]
        ratio = hand / min(wall[(model, "compiled, passes")])
        report(f"(e) speed-up over hand-written JAX, {model.split(',')[0]}", ratio, f">= {goal}", ratio >= goal)
        print(f"  (without the passes: {hand / min(wall[(model, 'compiled, no passes')]):.3f}; by CPU time: "
              f"{min(cpu[(model, 'hand-written JAX')]) / min(cpu[(model, 'compiled, passes')]):.3f} with, "
              f"{min(cpu[(model, 'hand-written JAX')]) / min(cpu[(model, 'compiled, no passes')]):.3f} without)")
        if model.startswith("GrokTransformer"):
            key = (model, "compiled, passes")
            frac = compiled[key][2] / min(wall[key]) / 1e9 / mm_rate
            report("(e) GrokTransformer step, fraction of the matmul's GFLOP/s", frac, ">= 0.5", frac >= 0.5)


def op_kinds(compiled, args, steps: int = 4) -> dict[str, tuple[float, int]]:
    """Milliseconds per step and op count by kind of op, from a jax.profiler trace of `steps` steps.

    Each traced op is classified by the HLO of the fusion it runs: one holding a dot is a matrix
    product, else one holding a transpose or copy, a reduce, a gather or scatter, or element-wise.
    """
    import collections
    import glob
    import gzip
    import json
    import re
    import tempfile

    jax.block_until_ready(compiled(*args))
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(steps):
                jax.block_until_ready(compiled(*args))
        with gzip.open(glob.glob(f"{tmp}/**/*.trace.json.gz", recursive=True)[0]) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    text = compiled.as_text()
    bodies: dict[str, str] = {}
    calls: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"^%?([\w.\-]+) .*\{$", line.strip()) if not line.startswith(" ") else None
        if head:
            current = head.group(1)
            bodies[current] = ""
        elif current and line.startswith(" "):
            bodies[current] += line
            m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = .*calls=%?([\w.\-]+)", line)
            if m:
                calls[m.group(1)] = m.group(2)
    ops = set(re.findall(r"^\s*(?:ROOT )?%?([\w.\-]+) = ", text, re.MULTILINE))
    kinds: dict[str, list] = collections.defaultdict(lambda: [0.0, set()])
    for e in events:
        name = e.get("name", "")
        if e.get("ph") != "X" or name not in ops:
            continue
        body = bodies.get(calls.get(name, ""), "") + " " + name
        if " dot(" in body or name.startswith(("dot", "ynn")):
            kind = "matrix products"
        elif "transpose(" in body or " copy(" in body or name.startswith(("copy", "transpose")):
            kind = "transposes and copies"
        elif " reduce(" in body:
            kind = "reductions"
        elif "scatter(" in body or "gather(" in body:
            kind = "gathers and scatters"
        else:
            kind = "element-wise and other"
        kinds[kind][0] += e["dur"] / 1e3 / steps
        kinds[kind][1].add(name)
    return {k: (ms, len(names)) for k, (ms, names) in kinds.items()}


def part_e_profile() -> None:
    """GrokTransformer's step by kind of op, for each contender; then each pass switched off in turn."""
    print("(e) profile: GrokTransformer's step by kind of op (ms per step, op count; jax.profiler trace)", flush=True)
    model = "GrokTransformer, full batch (p=113, 30%)"
    contenders = transformer_contenders(True)[model]
    for name, (step, args) in contenders.items():
        kinds = op_kinds(jax.jit(step).lower(*args).compile(), args)
        total = sum(ms for ms, _ in kinds.values())
        print(f"  {name:<20} {total:7.1f} ms: " + "; ".join(
            f"{k} {ms:.1f} ms ({n})" for k, (ms, n) in sorted(kinds.items(), key=lambda kv: -kv[1][0])), flush=True)
    print("(e) ablation: GrokTransformer's step with each pass switched off (fastest of 10 interleaved steps)",
          flush=True)
    from diagrammar.passes import OFF_BY_DEFAULT, PASSES

    task = ModAdd(p=113, train_frac=0.3, seed=0, inputs="tokens")
    batch = {"tokens": task.model_inputs(task.train_data)[0], "label": task.train_data["label"]}
    grok = diagrammar.load(circuits_dir() / "grok_transformer.circuit")["GrokTransformer"]
    tx = default_optimizer(LR, WD, B1, B2)

    def grok_loss(m, bt):
        return optax.softmax_cross_entropy_with_integer_labels(m(bt["tokens"]), bt["label"]).mean()

    variants = {"default passes": None,
                **{(f"with {p}" if p in OFF_BY_DEFAULT else f"without {p}"): {p: p in OFF_BY_DEFAULT} for p in PASSES},
                "no passes": False}
    runs = {}
    for label, passes in variants.items():
        step, args = compiled_contender(grok.compile(rngs=nnx.Rngs(0), passes=passes), grok_loss, batch, tx)
        runs[label] = (jax.jit(step).lower(*args).compile(), args)
    runs["hand-written JAX"] = contenders["hand-written JAX"]
    runs["hand-written JAX"] = (jax.jit(runs["hand-written JAX"][0]).lower(*runs["hand-written JAX"][1]).compile(),
                                runs["hand-written JAX"][1])
    wall: dict = {k: [] for k in runs}
    cpu: dict = {k: [] for k in runs}
    for _ in range(5):
        for label, (fn, args) in runs.items():
            jax.block_until_ready(fn(*args))
            for _ in range(2):
                t, c = time.perf_counter(), time.process_time()
                jax.block_until_ready(fn(*args))
                wall[label].append(time.perf_counter() - t)
                cpu[label].append(time.process_time() - c)
    for label in runs:
        print(f"  {label:<28} {1e3 * min(wall[label]):8.1f} ms/step, cpu {1e3 * min(cpu[label]):.1f} ms", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (noisier)")
    parser.add_argument("--only", choices=("modadd", "transformer"),
                        help="only parts (a)-(d) (the modular-addition MLP) or only part (e) (transformers)")
    parser.add_argument("--profile", action="store_true",
                        help="with part (e): also GrokTransformer's step by kind of op, and with each pass off")
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    if args.only != "transformer":
        task = ModAdd(p=P, train_frac=0.5, seed=0)
        part_a(task, rounds=6 if args.quick else 14, steps_per_round=5 if args.quick else 10)
        rates = part_b(args.quick)
        part_c(rates, args.quick)
        part_d(args.quick)
    if args.only != "modadd":
        part_e(args.quick)
        if args.profile:
            part_e_profile()
    print("\nsummary")
    for label, ratio, goal, ok in RESULTS:
        print(f"  {label:<62} {ratio:7.3f}  goal {goal:<7} {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
