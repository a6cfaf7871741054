"""Train stage: pointer-network tasks, sorting and planar convex hull (Vinyals et al. 2015).

The model is a compiled ``PointerNet`` circuit (``circuits/pointer.circuit``)
called as ``model(x, valid, forced, teacher, reopen_first)`` with

  x             float[batch, n, 2]     the inputs (sorting puts its number in feature 0, 0 in feature 1)
  valid         bool[batch, n]         real positions (the rest is padding)
  forced        float[batch, steps, n] the target pointers, one-hot (zeros past the end)
  teacher       bool[batch, steps]     True: feed the target back (teacher forcing);
                                       False: feed the model's own greedy pick back
  reopen_first  bool[batch]            True for the hull: the start may be pointed to again, to close

returning log-probabilities ``[batch, steps, n]``. Training uses teacher
forcing (the masked negative log-likelihood of the target pointers); evaluation
decodes GREEDILY through the same module and weights (``teacher`` all False),
so the reported accuracies are those of the decoder as it would be used.

Shapes are fixed per run: every batch is padded to ``n = n_max`` positions and
``steps = n_max`` (sorting) or ``n_max + 1`` (hull: the closing step) outputs,
so nothing recompiles whatever lengths a batch mixes. Training batches are
drawn inside the compiled step from a key (``sample``): fresh data at every
step, as in the paper's million-example training sets, replayed exactly on
resume. The evaluation sets are fixed (numpy, from the task's seed).

Metrics (``train_*`` on a fixed set from the training distribution, ``test_*``
on a fixed set of length ``test_n``):
  ``acc``        exact-sequence accuracy of greedy decoding (every real step right)
  ``token_acc``  per-token accuracy of greedy decoding
  ``tf_acc``     per-token accuracy under teacher forcing
  ``loss``       the teacher-forced masked NLL (per real step)
``analyse`` adds, for the hull, ``test_area`` (area coverage as in the paper,
0 for an invalid polygon) and, for both tasks, the same metrics at the lengths
in ``general_n`` (``gen{n}_acc`` ...), decoded by a sibling module compiled
at that width with the trained weights.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from . import tasks_data

KINDS = ("sort", "hull")


# --------------------------------------------------------------------------- data in jax (inside the compiled step)


def _lengths_mask(key, batch: int, n_min: int, n_max: int, width: int):
    lengths = jax.random.randint(key, (batch,), n_min, n_max + 1)
    mask = jnp.arange(width)[None, :] < lengths[:, None]
    return lengths, mask


def sort_sample(key, batch: int, n_min: int, n_max: int, width: int | None = None) -> dict[str, jax.Array]:
    """``tasks_data.sort_batch`` in jax, drawn from ``key`` (same layout; ``x`` is ``[batch, n, 2]``)."""
    width = n_max if width is None else width
    k_len, k_x = jax.random.split(key)
    _, mask = _lengths_mask(k_len, batch, n_min, n_max, width)
    x = jnp.where(mask, jax.random.uniform(k_x, (batch, width)), 0.0)
    target = jnp.argsort(jnp.where(mask, x, jnp.inf), axis=1, stable=True).astype(jnp.int32)
    target = jnp.where(mask, target, 0)
    return {"x": jnp.stack([x, jnp.zeros_like(x)], axis=-1), "mask": mask, "target": target, "target_mask": mask}


def hull_targets(x: jax.Array, mask: jax.Array, steps: int) -> tuple[jax.Array, jax.Array]:
    """Convex hull pointer sequences of padded point sets, in jax.

    ``x`` float[batch, n, 2], ``mask`` bool[batch, n]. Edge ``i -> j`` is a
    counter-clockwise hull edge when every other real point lies strictly to
    its left; the sequence starts at the hull vertex of lowest index, follows
    the edges and closes by pointing back to the start, as
    ``tasks_data.convex_hull_indices`` (which it matches for points in general
    position). Returns ``target`` int32[batch, steps] (0 past the end) and
    ``target_mask`` bool[batch, steps].
    """
    n = x.shape[1]
    px, py = x[..., 0], x[..., 1]
    dx = px[:, None, :] - px[:, :, None]  # [b, i, j]: p_j - p_i
    dy = py[:, None, :] - py[:, :, None]
    # cross[b, i, j, k] = (p_j - p_i) x (p_k - p_i) > 0 when k is left of i -> j
    cross = dx[:, :, :, None] * dy[:, :, None, :] - dy[:, :, :, None] * dx[:, :, None, :]
    eye = jnp.eye(n, dtype=bool)
    other = ~(eye[None, :, None, :] | eye[None, None, :, :]) & mask[:, None, None, :]
    edge = jnp.all((cross > 0) | ~other, axis=-1) & mask[:, :, None] & mask[:, None, :] & ~eye[None]
    nxt = jnp.argmax(edge, axis=-1).astype(jnp.int32)  # [b, i]
    start = jnp.argmax(jnp.any(edge, axis=-1), axis=-1).astype(jnp.int32)  # lowest-index vertex

    # Walk the ring: emit start, then next[...] until the start comes back (emitted once more).
    def walk(carry, t):
        cur, finished = carry  # finished: the closing step has been emitted
        out = jnp.where(finished, 0, cur)
        real = ~finished
        finished = finished | ((cur == start) & (t > 0))
        cur = jnp.take_along_axis(nxt, cur[:, None], axis=1)[:, 0]
        return (cur, finished), (out, real)

    b = x.shape[0]
    _, (target, real) = jax.lax.scan(walk, (start, jnp.zeros((b,), bool)), jnp.arange(steps))
    return target.T.astype(jnp.int32), real.T


def hull_sample(key, batch: int, n_min: int, n_max: int, width: int | None = None,
                steps: int | None = None) -> dict[str, jax.Array]:
    """``tasks_data.hull_batch`` in jax, drawn from ``key``: points uniform in the unit square."""
    width = n_max if width is None else width
    steps = width + 1 if steps is None else steps
    k_len, k_x = jax.random.split(key)
    _, mask = _lengths_mask(k_len, batch, max(n_min, 3), n_max, width)
    x = jnp.where(mask[..., None], jax.random.uniform(k_x, (batch, width, 2)), 0.0)
    target, target_mask = hull_targets(x, mask, steps)
    return {"x": x, "mask": mask, "target": target, "target_mask": target_mask}


def numpy_batch(kind: str, seed: int | Sequence[int], size: int, n_min: int, n_max: int, width: int, steps: int) -> dict[str, jax.Array]:
    """A fixed evaluation set from ``tasks_data`` (numpy), laid out as the model takes it."""
    rng = np.random.default_rng(seed)
    if kind == "sort":
        d = tasks_data.sort_batch(rng, size, n_min, n_max, pad_to=width)
        x = np.concatenate([d["x"], np.zeros_like(d["x"])], axis=-1)
        target = np.zeros((size, steps), np.int32)
        tmask = np.zeros((size, steps), bool)
        target[:, :width], tmask[:, :width] = d["target"], d["target_mask"]
    else:
        d = tasks_data.hull_batch(rng, size, n_min, n_max, pad_to=width, target_pad_to=steps)
        x, target, tmask = d["x"], d["target"], d["target_mask"]
    return {"x": jnp.asarray(x, jnp.float32), "mask": jnp.asarray(d["mask"]),
            "target": jnp.asarray(target), "target_mask": jnp.asarray(tmask)}


# --------------------------------------------------------------------------- model calls


def teacher_forced(model, batch, reopen: bool) -> jax.Array:
    """Log-probabilities ``[b, steps, n]`` with the target pointers fed back."""
    x, mask, target, tmask = batch["x"], batch["mask"], batch["target"], batch["target_mask"]
    n = x.shape[1]
    forced = jax.nn.one_hot(target, n, dtype=jnp.float32) * tmask[..., None]
    teacher = jnp.ones(target.shape, bool)
    return model(x, mask, forced, teacher, jnp.full(x.shape[:1], reopen))


def greedy(model, x: jax.Array, mask: jax.Array, steps: int, reopen: bool) -> jax.Array:
    """Greedy decoding through the same module: log-probabilities ``[b, steps, n]``; picks are their argmax."""
    n = x.shape[1]
    forced = jnp.zeros(x.shape[:1] + (steps, n), jnp.float32)
    teacher = jnp.zeros(x.shape[:1] + (steps,), bool)
    return model(x, mask, forced, teacher, jnp.full(x.shape[:1], reopen))


def masked_nll(logp: jax.Array, target: jax.Array, tmask: jax.Array) -> jax.Array:
    """Mean negative log-likelihood of the target pointers over real steps."""
    picked = jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
    return -jnp.sum(jnp.where(tmask, picked, 0.0)) / jnp.maximum(jnp.sum(tmask), 1)


def sequence_metrics(pred: jax.Array, target: jax.Array, tmask: jax.Array) -> dict[str, jax.Array]:
    """Exact-sequence and per-token accuracy (jax twins of ``tasks_data``'s numpy metrics)."""
    ok = (pred == target) | ~tmask
    token = jnp.sum((pred == target) & tmask) / jnp.maximum(jnp.sum(tmask), 1)
    return {"acc": jnp.mean(jnp.all(ok, axis=-1)), "token_acc": token}


# --------------------------------------------------------------------------- the task


@dataclasses.dataclass
class PointerTask:
    """Sorting or convex hull for ``PointerNet``: see the module docstring.

    Args:
      kind: ``"sort"`` or ``"hull"``.
      n_min, n_max: training lengths, drawn uniformly per example; ``n_max`` is
        the padded width, the circuit's axis ``n``.
      test_n: the length of every example of the test set.
      batch_size: training examples per step.
      eval_size: examples in each fixed evaluation set.
      general_n: other lengths evaluated by ``analyse`` (generalisation).
      general_size: examples per length in ``general_n``.
      seed: seeds the evaluation sets (training batches come from the trainer's key).
    """

    kind: str = "sort"
    n_min: int = 5
    n_max: int = 10
    test_n: int = 10
    batch_size: int = 128
    eval_size: int = 1000
    general_n: tuple[int, ...] = ()
    general_size: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        least = 3 if self.kind == "hull" else 1
        if not least <= self.n_min <= self.n_max:
            raise ValueError(f"need {least} <= n_min <= n_max, got n_min={self.n_min}, n_max={self.n_max}")
        if not least <= self.test_n <= self.n_max:
            raise ValueError(f"test_n={self.test_n} must be in {least}..n_max={self.n_max} (the padded width)")
        self.general_n = tuple(int(k) for k in self.general_n)
        self.reopen = self.kind == "hull"
        sizes = self.axis_sizes(self.kind, self.n_max)
        self.width, self.steps = sizes["n"], sizes["steps"]
        # Fixed evaluation sets from the numpy generators (seeded apart from each other).
        self.train_data = numpy_batch(self.kind, [self.seed, 1], self.eval_size, self.n_min, self.n_max,
                                      self.width, self.steps)
        self.test_data = numpy_batch(self.kind, [self.seed, 2], self.eval_size, self.test_n, self.test_n,
                                     self.width, self.steps)
        self._siblings: dict[tuple[int, int], Any] = {}

    @staticmethod
    def axis_sizes(kind: str, n_max: int) -> dict[str, int]:
        """The circuit's free axes for a run padded to ``n_max``: ``n`` and ``steps``."""
        return {"n": n_max, "steps": n_max + 1 if kind == "hull" else n_max}

    @property
    def config(self) -> dict[str, Any]:
        """What determines the data; a resumed run must match it."""
        return {"task": self.kind, "n_min": self.n_min, "n_max": self.n_max, "test_n": self.test_n,
                "batch_size": self.batch_size, "eval_size": self.eval_size, "seed": self.seed}

    # -- the Task protocol

    def sample(self, key) -> dict[str, jax.Array]:
        """A fresh training batch from ``key`` (inside the compiled step)."""
        if self.kind == "sort":
            return sort_sample(key, self.batch_size, self.n_min, self.n_max, self.width)
        return hull_sample(key, self.batch_size, self.n_min, self.n_max, self.width, self.steps)

    def loss(self, model, batch, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Teacher-forced masked NLL; in eval mode also greedy exact-sequence and per-token accuracy."""
        target, tmask = batch["target"], batch["target_mask"]
        logp = teacher_forced(model, batch, self.reopen)
        loss = masked_nll(logp, target, tmask)
        tf = sequence_metrics(jnp.argmax(logp, axis=-1), target, tmask)
        if train:
            return loss, {"acc": tf["token_acc"]}
        pred = jnp.argmax(greedy(model, batch["x"], batch["mask"], target.shape[1], self.reopen), axis=-1)
        return loss, {**sequence_metrics(pred, target, tmask), "tf_acc": tf["token_acc"]}

    # -- evaluation beyond the loss

    def _greedy_fn(self, model, width: int):
        """A jitted greedy decoder at ``width`` that takes the trained weights (built once per circuit and width)."""
        key = (id(model.diagram), width)
        if key not in self._siblings:
            from ..backends.flax import compile_diagram

            steps = self.axis_sizes(self.kind, width)["steps"]
            if width == model.sizes.get("n"):
                sib = nnx.merge(*nnx.split(model))  # a copy: the caller's module keeps its mode
            else:  # the same circuit compiled at another width (no weight depends on n)
                sib = compile_diagram(model.diagram, rngs=nnx.Rngs(0), **self.axis_sizes(self.kind, width))
            sib.eval()
            graphdef, _, rest = nnx.split(sib, nnx.Param, ...)
            reopen = self.reopen

            @jax.jit
            def run(params, x, mask):
                m = nnx.merge(graphdef, params, rest, copy=True)
                return greedy(m, x, mask, steps, reopen)

            self._siblings[key] = (run, model.diagram)  # holding the diagram keeps its id unique
        return self._siblings[key][0]

    def greedy_logp(self, model, x, mask) -> np.ndarray:
        """Greedy decoding of inputs padded to any width (a sibling module when it differs): ``[b, steps, n]``."""
        run = self._greedy_fn(model, int(x.shape[1]))
        return np.asarray(run(nnx.state(model, nnx.Param), jnp.asarray(x), jnp.asarray(mask)))

    def decode(self, model, x, mask) -> np.ndarray:
        """Greedy picks ``int[b, steps]`` (see ``greedy_logp``)."""
        return np.argmax(self.greedy_logp(model, x, mask), axis=-1)

    def evaluate(self, model, data: dict[str, Any]) -> dict[str, float]:
        """Greedy metrics on ``data`` (any width): ``acc``, ``token_acc`` and, for the hull, ``area``."""
        pred = self.decode(model, data["x"], data["mask"])
        target, tmask = np.asarray(data["target"]), np.asarray(data["target_mask"], bool)
        out = {"acc": tasks_data.exact_sequence_accuracy(pred, target, tmask),
               "token_acc": tasks_data.per_token_accuracy(pred, target, tmask)}
        if self.kind == "hull":
            out["area"] = tasks_data.hull_area_coverage_batch(data["x"], data["mask"], pred, target, tmask)
        return out

    def general_data(self, n: int) -> dict[str, jax.Array]:
        """A fixed set of ``general_size`` examples of length exactly ``n``, padded to ``n``."""
        sizes = self.axis_sizes(self.kind, n)
        return numpy_batch(self.kind, [self.seed, 3, n], self.general_size, n, n, sizes["n"], sizes["steps"])

    def analyse(self, model) -> dict[str, Any]:
        """Hull area coverage on the test set; metrics at the ``general_n`` lengths."""
        row: dict[str, Any] = {}
        if self.kind == "hull":
            row["test_area"] = self.evaluate(model, self.test_data)["area"]
        for n in self.general_n:
            for k, v in self.evaluate(model, self.general_data(n)).items():
                row[f"gen{n}_{k}"] = v
        return row

    # -- the end-of-run report

    def length_curve(self, model, lengths, size: int = 200) -> dict[int, dict[str, float]]:
        """Greedy metrics at each length in ``lengths`` (``size`` examples each), all decoded at one width."""
        lengths = sorted({int(k) for k in lengths})
        sizes = self.axis_sizes(self.kind, max(lengths))
        out = {}
        for n in lengths:
            data = numpy_batch(self.kind, [self.seed, 4, n], size, n, n, sizes["n"], sizes["steps"])
            out[n] = self.evaluate(model, data)
        return out

    def report_lengths(self) -> list[int]:
        """Lengths drawn in ``report``: from the smallest allowed to 1.5x the training maximum."""
        least = 3 if self.kind == "hull" else 2
        top = max(self.n_max + self.n_max // 2, *self.general_n, self.test_n)
        return sorted({int(round(k)) for k in np.linspace(least, top, 12)} | {self.test_n, *self.general_n})

    def report(self, model, out_dir: str | os.PathLike) -> list[Path]:
        """``pointer.png``: greedy accuracy against length (and, for the hull, example predictions)."""
        from matplotlib.figure import Figure

        from .plots import save_figure

        curve = self.length_curve(model, self.report_lengths())
        hull = self.kind == "hull"
        fig = Figure(figsize=(11 if hull else 6.5, 4), layout="constrained")
        axes = fig.subplots(1, 2, width_ratios=(1.4, 1)) if hull else [fig.subplots()]
        ax = axes[0]
        ns = list(curve)
        for key, label in (("acc", "exact sequence"), ("token_acc", "per token"), ("area", "area coverage")):
            if key in curve[ns[0]]:
                ax.plot(ns, [curve[n][key] for n in ns], "o-", ms=3, label=label)
        ax.axvspan(self.n_min - 0.5, self.n_max + 0.5, color="tab:gray", alpha=0.15, label="trained lengths")
        ax.set_xlabel("n (inputs)")
        ax.set_ylabel("greedy decoding")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{'convex hull' if hull else 'sorting'}: accuracy against length", fontsize=10)
        if hull:
            self._draw_hulls(axes[1], model)
        return [save_figure(fig, Path(out_dir) / "pointer.png")]

    def _draw_hulls(self, ax, model, count: int = 4) -> None:
        data = {k: np.asarray(v)[:count] for k, v in self.test_data.items()}
        pred = self.decode(model, data["x"], data["mask"])
        for i in range(count):
            off = np.array([1.15 * (i % 2), -1.15 * (i // 2)])
            n = int(data["mask"][i].sum())
            pts = data["x"][i, :n] + off
            true = data["target"][i][data["target_mask"][i]]
            guess = tasks_data.truncate_at_closure(pred[i])
            guess = guess[guess < n]
            ax.plot(*pts.T, "k.", ms=4)
            ax.plot(*pts[true].T, "-", color="tab:green", lw=3, alpha=0.5)
            ax.plot(*pts[guess].T, "--", color="tab:red", lw=1.2)
        ax.plot([], [], "-", color="tab:green", lw=3, alpha=0.5, label="true hull")
        ax.plot([], [], "--", color="tab:red", lw=1.2, label="greedy decoding")
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        # Below the panel: inside it, the legend would cover a polygon.
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)
        ax.set_title(f"test examples (n = {self.test_n})", fontsize=10)


# --------------------------------------------------------------------------- the command line

DEFAULT_N = {"sort": (5, 10), "hull": (5, 50)}  # training lengths, as in the issue and the paper


def _given_axes(args: Any) -> dict[str, int]:
    return dict(getattr(args, "axis", None) or [])


def cli_compile_options(kind: str, args: Any) -> dict[str, Any]:
    """How ``diagrammar train --task sort|hull`` compiles the circuit: the free axes ``n`` (``--axis n=N``
    or the default maximum length) and ``steps`` to match, and ``remat`` (the decoder's per-step
    ``[n, att]`` attention is recomputed in the backward pass rather than stored: 3-4x faster at n = 50)."""
    n_max = _given_axes(args).get("n", DEFAULT_N[kind][1])
    return {**PointerTask.axis_sizes(kind, n_max), "remat": True}


def task_for_cli(kind: str, args: Any, model) -> tuple[PointerTask, str, str]:
    """The builder of ``--task sort|hull``: (task, output-directory tag, description).

    The training lengths run from the default minimum (5) to the width the model
    was compiled with (its axis ``n``; ``--axis n=N`` sets it); the test set has
    length 10 (capped at the width) and ``analyse`` also decodes longer inputs
    (sorting: n + 5; hull: 50 when trained shorter).
    """
    sizes = getattr(model, "sizes", {})
    if "n" not in sizes or "steps" not in sizes:
        raise ValueError("the pointer tasks need a PointerNet-like circuit with free axes n and steps "
                         "(see circuits/pointer.circuit)")
    n_max = sizes["n"]
    want = PointerTask.axis_sizes(kind, n_max)["steps"]
    if sizes["steps"] != want:
        raise ValueError(f"--task {kind} with n = {n_max} needs steps = {want}, got steps = {sizes['steps']}")
    least = 3 if kind == "hull" else 1
    n_min = min(DEFAULT_N[kind][0], n_max)
    if n_max < least:
        raise ValueError(f"--task {kind} needs n >= {least}, got n = {n_max}")
    test_n = max(least, min(10, n_max))
    general = (n_max + 5,) if kind == "sort" else ((50,) if n_max < 50 else ())
    task = PointerTask(kind=kind, n_min=n_min, n_max=n_max, test_n=test_n, batch_size=args.batch_size or 128,
                       general_n=general, seed=args.seed)
    what = "sorting n numbers" if kind == "sort" else "the convex hull of n points"
    description = (f"{what}, n = {n_min}..{n_max} (fresh batches of {task.batch_size}; test: {task.eval_size} "
                   f"examples of n = {test_n}, greedy decoding)")
    return task, f"n{n_min}-{n_max}", description
