"""Train stage: an optax loop over a flax.nnx module that fuses many steps into one compiled call.

The model is split once into a static graph definition and array state
(``nnx.split``); a jitted function merges them back inside ``jax.lax.scan`` and
runs ``steps_per_call`` optimiser steps per Python iteration, so Python and
dispatch overhead is paid once per call, not once per step.

Every step is a pure function of (state, seed, step): the minibatch is drawn
from ``fold_in(key(seed), step)`` and dropout draws from the RNG state carried
inside the model state. A checkpoint therefore holds everything needed to
resume bit-exactly, and chunk boundaries sit at absolute step multiples so a
resumed run compiles and runs the same chunks as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ..cli import _files
from . import checkpoint as ckpt
from . import mesh as _mesh
from . import plots, rundir

METRICS_NAME = "metrics.jsonl"
CURVES_NAME = "curves.png"

Batch = Mapping[str, jax.Array]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the run stopped before saving anything from it.

    Attributes:
      step: the step whose loss was not finite (the number of updates applied before it).
      loss: the offending value.
      checkpoint: the last good checkpoint, or None if none was written.
      checkpoint_step: the step that checkpoint holds.
    """

    def __init__(self, step: int, loss: float, checkpoint: Path | None, checkpoint_step: int | None):
        self.step, self.loss = step, loss
        self.checkpoint, self.checkpoint_step = checkpoint, checkpoint_step
        where = (
            f"the last good checkpoint is {checkpoint} (step {checkpoint_step})"
            if checkpoint is not None
            else "no checkpoint was written"
        )
        super().__init__(
            f"training diverged: the loss became {loss} at step {step}; {where}. "
            "Try a smaller learning rate."
        )


@runtime_checkable
class Task(Protocol):
    """What :func:`train` needs from a task.

    Data are dicts of arrays sharing a leading example axis. ``loss`` calls the
    model itself, so each task decides how its inputs map onto the model's
    positional arguments (modular addition calls ``model(a, b)``). Evaluation
    runs ``loss`` in eval mode on the whole of ``train_data`` and ``test_data``
    in one call each.

    Optional members, used when present:
      ``analyse(model) -> dict``: extra JSON-able metrics at eval points.
      ``report(model, out_dir) -> list[Path]``: extra files (plots) at the end.
      ``config: dict``: JSON-able settings, stored in checkpoints and compared
      on resume so a run is never continued on different data.
      ``sample(key) -> batch``: draw a fresh training batch inside the compiled
      step (for generated, unbounded data) instead of indexing ``train_data``;
      ``key`` is ``fold_in(key(seed), step)``, so resuming replays it.
    """

    train_data: Batch
    test_data: Batch
    batch_size: int | None

    def loss(self, model: nnx.Module, batch: Batch, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Scalar loss and a dict of scalar metrics (e.g. ``{"acc": ...}``) on ``batch``."""
        ...


@dataclasses.dataclass
class TrainResult:
    """Outcome of :func:`train`. ``metrics`` is the last logged row of ``history``;
    ``wall_time`` adds up every session of a resumed run."""

    step: int
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    wall_time: float
    out_dir: Path | None = None
    checkpoint: Path | None = None
    stopped_early: bool = False
    files: list[Path] = dataclasses.field(default_factory=list)
    resumed_from: int | None = None
    changed: list[str] = dataclasses.field(default_factory=list)
    """Settings that differ from the resumed checkpoint's (continued with ``force=True``)."""


def default_optimizer(
    learning_rate: float = 1e-3, weight_decay: float = 1.0, b1: float = 0.9, b2: float = 0.98
) -> optax.GradientTransformation:
    """AdamW as in the grokking papers (Power et al. 2022; Nanda et al. 2023)."""
    return optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)


def batch_at(data: Batch, seed: int | jax.Array, step: int | jax.Array, batch_size: int | None) -> dict[str, jax.Array]:
    """The minibatch for ``step``: a pure function of (data, seed, step), so resuming replays it.

    Epochs of shuffled data, as a plain loop draws them: example ``q = step *
    batch_size + k`` of the stream is ``epoch_order(seed, q // n)[q % n]``, so
    every example is seen once per epoch and a batch may straddle two epochs.
    ``batch_size=None`` (or at least the data size) gives the full batch.
    """
    n = _num_examples(data)
    if batch_size is None or batch_size >= n:
        return dict(data)
    idx = _chunk_batches(data, seed, jnp.asarray(step, jnp.int32), 1, batch_size)[0]
    return {k: v[idx] for k, v in data.items()}


def epoch_order(seed: int | jax.Array, epoch: int | jax.Array, n: int) -> jax.Array:
    """The order in which epoch ``epoch`` visits ``n`` examples (a permutation)."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 0x5EED), epoch)
    return jax.random.permutation(key, n)


def _chunk_batches(data: Batch, seed, start, length: int, batch_size: int) -> jax.Array:
    """Example indices of steps ``start .. start + length - 1``, shape [length, batch_size], as
    :func:`batch_at` draws them, with each epoch's permutation computed once per chunk, not once per step."""
    n = _num_examples(data)
    q = (start + jnp.arange(length, dtype=jnp.int32))[:, None] * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
    first = q[0, 0] // n
    count = (length * batch_size - 1) // n + 2  # epochs the chunk can touch
    orders = jax.vmap(lambda e: epoch_order(seed, first + e, n))(jnp.arange(count, dtype=jnp.int32))
    return orders[q // n - first, q % n]


def chunk_fn(task: Task, train_def: Any, tx: optax.GradientTransformation, *, unroll: int = 1) -> Callable[..., Any]:
    """The traceable body of one compiled chunk: ``length`` optimiser steps of one seed in a ``lax.scan``.

    ``chunk(params, rest, opt_state, data, seed, start, length=L)`` runs steps
    ``start .. start + L - 1`` from the state ``nnx.split(model, nnx.Param, ...)``
    gives (with ``train_def`` its training-mode graph definition) and returns
    ``((params, rest, opt_state), (losses, aux))``, one loss and one aux dict
    entry per step. The single-seed trainer jits it as it is; the many-seed
    trainer (:mod:`diagrammar.train.seeds`) vmaps it over stacked seeds, so
    both run the same step.
    """
    batch_size = getattr(task, "batch_size", None)
    sample = getattr(task, "sample", None)

    def chunk(params, rest, opt_state, data, seed, start, *, length):
        def one_step(carry, xs):
            params, rest, opt_state = carry
            step, idx = xs
            if sample is not None:
                batch = sample(jax.random.fold_in(jax.random.key(seed), step))
            elif idx is not None:
                batch = {k: v[idx] for k, v in data.items()}
            else:
                batch = data

            def loss_fn(params):
                m = nnx.merge(train_def, params, rest, copy=True)  # fresh Variables at this trace level
                loss, aux = task.loss(m, batch, True)
                _, _, new_rest = nnx.split(m, nnx.Param, ...)  # dropout RNG counts, batch stats
                return loss, (aux, new_rest)

            (loss, (aux, new_rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, new_rest, opt_state), (loss, aux)

        steps = start + jnp.arange(length, dtype=jnp.int32)
        minibatch = sample is None and batch_size is not None and batch_size < _num_examples(data)
        idx = _chunk_batches(data, seed, start, length, batch_size) if minibatch else None
        return jax.lax.scan(one_step, (params, rest, opt_state), (steps, idx), unroll=unroll)

    return chunk


def _num_examples(data: Batch) -> int:
    sizes = {int(v.shape[0]) for v in data.values()}
    if len(sizes) != 1:
        raise ValueError(f"task data arrays disagree on the number of examples: {sorted(sizes)}")
    return sizes.pop()


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, bool, int)) or x is None:
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    arr = np.asarray(x)
    if arr.ndim == 0:
        return _jsonable(arr.item())
    return _jsonable(arr.tolist())


def _write_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite the whole log atomically (used on resume, so it matches the checkpoint)."""
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    _files.write_atomic(path, data)


def _check_step_counts(opt_state: Any, step: int, path: Path) -> None:
    """The optimiser counts its updates (optax's ``count``); they must equal the checkpoint's step,
    or the weights and the step come from different points of a run."""
    for key, leaf in jax.tree_util.tree_leaves_with_path(opt_state):
        name = jax.tree_util.keystr(key)
        if name.endswith(".count") and np.ndim(leaf) == 0 and jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.integer):
            count = int(leaf)
            if count != step:
                raise ckpt.CheckpointMismatch(
                    f"{path}: not a readable checkpoint (its step is {step} but its optimiser state has made "
                    f"{count} updates ({name})); delete it, start afresh (--fresh) or give another output folder")


def train(
    model: nnx.Module,
    task: Task,
    *,
    steps: int,
    optimizer: optax.GradientTransformation | None = None,
    steps_per_call: int = 100,
    eval_every: int | None = None,
    checkpoint_every: int | None = None,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    resume: bool = True,
    progress: bool = True,
    stop_when: Callable[[dict[str, Any]], bool] | None = None,
    plot_every_seconds: float = 30.0,
    unroll: int = 1,
    config: Mapping[str, Any] | None = None,
    force: bool = False,
) -> TrainResult:
    """Train ``model`` in place on ``task`` for ``steps`` optimiser steps in total.

    Args:
      model: any ``nnx.Module``; its ``nnx.Param``s are trained, all other state
        (RNG streams for dropout, batch statistics) is carried through the steps.
      task: see :class:`Task`.
      steps: the total number of steps of the run (a resumed run continues to it).
      optimizer: an optax transformation; default :func:`default_optimizer`.
      steps_per_call: steps fused into one compiled ``lax.scan`` call.
      eval_every: steps between evaluations on the train and test data
        (default ``steps_per_call``); also a chunk boundary.
      checkpoint_every: steps between checkpoints (default ``eval_every``).
      out_dir: where ``metrics.jsonl``, ``checkpoint.npz`` and plots go; None
        keeps everything in memory.
      seed: the data-order seed (model initialisation is the caller's ``nnx.Rngs``).
      resume: continue from ``out_dir/checkpoint.npz`` if it exists; False
        deletes it and starts afresh.
      progress: show a tqdm bar with the loss and accuracy.
      stop_when: called with each logged metrics row; True stops the run early
        (e.g. ``lambda m: m["test_acc"] >= 0.99``).
      plot_every_seconds: minimum wall time between refreshes of ``curves.png``
        during the run (it is always written at the end).
      unroll: steps per iteration of the compiled ``lax.scan`` loop; more lets
        XLA overlap small steps at the cost of compile time.
      config: JSON-able settings of the run that the optimizer object cannot
        show (learning rate, weight decay, the circuit, ...). Stored in each
        checkpoint with the seed and the task's config; resuming compares all
        of them and refuses a difference unless ``force``.
      force: resume even when ``config``, the seed or the task's config differ
        from the checkpoint's (the new settings apply from here on).

    Returns:
      A :class:`TrainResult`. The model holds the final weights, in eval mode.

    Raises:
      TrainingDiverged: the training loss became NaN or inf. The model is left
        at the last finite state before the failing chunk; no checkpoint is
        written from the failing chunk.
      CheckpointMismatch: ``out_dir`` holds a run of another model, task, seed
        or settings, or a damaged or inconsistent checkpoint.
      RunInProgress: another process is training into ``out_dir``.
      UnusableFile: a file of the run cannot be written (full disk, read-only,
        a folder in its place); what was written before is left whole.
    """
    for name, value, least in (("steps", steps, 0), ("steps_per_call", steps_per_call, 1),
                               ("eval_every", eval_every, 1), ("checkpoint_every", checkpoint_every, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                  or not least <= value <= ckpt.MAX_STEP):
            raise ValueError(f"{name} must be a whole number from {least} to {ckpt.MAX_STEP}, got {value!r}")
    with _mesh.context(model):  # a model compiled onto a mesh trains under it (see train/mesh.py)
        if out_dir is None:
            return _train(model, task, steps, optimizer, steps_per_call, eval_every, checkpoint_every, None, seed,
                          resume, progress, stop_when, plot_every_seconds, unroll, config, force)
        with rundir.claim(out_dir, what="out_dir"):
            return _train(model, task, steps, optimizer, steps_per_call, eval_every, checkpoint_every, out_dir,
                          seed, resume, progress, stop_when, plot_every_seconds, unroll, config, force)


def _train(model, task, steps, optimizer, steps_per_call, eval_every, checkpoint_every, out_dir, seed, resume,
           progress, stop_when, plot_every_seconds, unroll, config, force) -> TrainResult:
    """The body of :func:`train`, run while this process holds ``out_dir``."""
    tx = optimizer if optimizer is not None else default_optimizer()
    eval_every = eval_every or steps_per_call
    checkpoint_every = checkpoint_every or eval_every
    out = Path(out_dir) if out_dir is not None else None
    ckpt_file = ckpt.checkpoint_path(out) if out is not None else None
    metrics_file = out / METRICS_NAME if out is not None else None
    task_config = _jsonable(getattr(task, "config", None))

    # Two graph definitions over one state: training mode (dropout on) and eval mode.
    model.train()
    train_def, params, rest = nnx.split(model, nnx.Param, ...)
    model.eval()
    eval_def, params, rest = nnx.split(model, nnx.Param, ...)
    layout = _mesh.layout_of(model)
    opt_state = tx.init(params) if layout is None else _mesh.init_optimizer(tx, params, layout)

    # What a resumed run must share with its checkpoint; `settings` only when the caller says what they are.
    run_config: dict[str, Any] = {"seed": seed, "task": task_config}
    if config is not None:
        run_config["settings"] = _jsonable(config)

    step, history, elapsed, last_ckpt_step, resumed_from, changed = 0, [], 0.0, None, None, []
    if out is not None:
        if resume and ckpt.exists(ckpt_file):
            meta = ckpt.load_meta(ckpt_file)  # settings first: a run of other settings is refused unread
            step, history, elapsed = ckpt.run_record(meta, ckpt_file)
            stored = meta.get("config")
            if not isinstance(stored, dict):  # written before settings were recorded
                stored = {"seed": meta.get("seed"), "task": meta.get("task")}
            changed = [line.removeprefix("settings.") for line in
                       ckpt.differences({k: stored[k] for k in run_config if k in stored}, run_config)]
            if changed and not force:
                raise ckpt.CheckpointMismatch(
                    f"{ckpt_file} belongs to a run with other settings: " + "; ".join(changed)
                    + ". Continue it with these settings anyway with --force (force=True), start afresh with "
                    "--fresh (resume=False), or give another output folder")
            (params, rest, opt_state), meta = ckpt.load(ckpt_file, (params, rest, opt_state))
            _check_step_counts(opt_state, step, ckpt_file)
            last_ckpt_step = resumed_from = step
            _write_lines(metrics_file, history)
        else:
            ckpt.discard(ckpt_file)
            _write_lines(metrics_file, [])

    train_data = {k: jnp.asarray(v) for k, v in task.train_data.items()}
    test_data = {k: jnp.asarray(v) for k, v in task.test_data.items()}
    if layout is not None:  # split over the batch's mesh axes; the state stays where it was created
        train_data, test_data = _mesh.place_data(train_data, layout), _mesh.place_data(test_data, layout)
        pinned = _mesh.shardings((params, opt_state))
    seed_arr = jnp.asarray(seed, dtype=jnp.uint32)

    chunk = chunk_fn(task, train_def, tx, unroll=unroll)

    def run_chunk(params, rest, opt_state, data, seed, start, *, length):
        carry, out = chunk(params, rest, opt_state, data, seed, start, length=length)
        if layout is not None:
            params, opt_state = _mesh.pin((carry[0], carry[2]), pinned)
            carry = (params, carry[1], opt_state)
        return carry, out

    def evaluate(params, rest, data):
        return task.loss(nnx.merge(eval_def, params, rest, copy=True), data, False)

    run_chunk = jax.jit(run_chunk, static_argnames="length")
    evaluate = jax.jit(evaluate)

    def save_checkpoint() -> None:
        nonlocal last_ckpt_step
        if ckpt_file is None:
            return
        meta = dict(step=step, seed=seed, task=task_config, config=run_config, history=history,
                    wall_time=elapsed + time.perf_counter() - t_start)
        ckpt.save(ckpt_file, (params, rest, opt_state), meta)
        last_ckpt_step = step

    def log_eval(batch_loss: float | None) -> dict[str, Any]:
        row: dict[str, Any] = {"step": step}
        for split, data in (("train", train_data), ("test", test_data)):
            loss, aux = evaluate(params, rest, data)
            row[f"{split}_loss"] = float(loss)
            row.update({f"{split}_{k}": float(v) for k, v in aux.items()})
        if batch_loss is not None:
            row["batch_loss"] = batch_loss
        if hasattr(task, "analyse"):
            row.update(_jsonable(task.analyse(nnx.merge(eval_def, params, rest, copy=True))))
        row["time"] = round(elapsed + time.perf_counter() - t_start, 3)
        row = _jsonable(row)
        history.append(row)
        if metrics_file is not None:
            _files.append_text(metrics_file, json.dumps(row) + "\n")
        return row

    def next_boundary(s: int) -> int:
        return min(steps, *(((s // every) + 1) * every for every in (steps_per_call, eval_every, checkpoint_every)))

    t_start = time.perf_counter()
    last_plot = t_start
    # A finished run that met its stopping rule stays finished when the same command is run again.
    stopped = bool(history and stop_when is not None and stop_when(history[-1]))
    bar = _progress_bar(progress, steps, step)
    post: dict[str, str] = {}
    try:
        if not history:
            row = log_eval(None)
            save_checkpoint()
            _show(bar, post, row, None, None)
        while step < steps and not stopped:
            end = next_boundary(step)
            (new_params, new_rest, new_opt), (losses, aux) = run_chunk(
                params, rest, opt_state, train_data, seed_arr, jnp.int32(step), length=end - step
            )
            losses = np.asarray(losses)
            bad = ~np.isfinite(losses)
            if bad.any():
                i = int(np.argmax(bad))
                raise TrainingDiverged(step + i, float(losses[i]), ckpt_file if last_ckpt_step is not None else None,
                                       last_ckpt_step)
            params, rest, opt_state, step = new_params, new_rest, new_opt, end
            bar.update(end - bar.n)
            last_aux = {k: float(np.asarray(v)[-1]) for k, v in aux.items()}
            if step % eval_every == 0 or step == steps:
                row = log_eval(float(losses.mean()))
                stopped = bool(stop_when is not None and stop_when(row))
                _show(bar, post, row, float(losses[-1]), last_aux)
            else:
                _show(bar, post, None, float(losses[-1]), last_aux)
            if step % checkpoint_every == 0 or step == steps or stopped:
                save_checkpoint()
            if out is not None and time.perf_counter() - last_plot >= plot_every_seconds:
                plots.plot_history(history, out / CURVES_NAME)
                last_plot = time.perf_counter()
    except KeyboardInterrupt:
        # The state in hand is the last completed chunk: save it so the run resumes from there.
        if last_ckpt_step != step:
            save_checkpoint()
        raise
    finally:
        bar.close()
        nnx.update(model, params, rest)
        model.eval()

    files: list[Path] = []
    if out is not None:
        files.append(plots.plot_history(history, out / CURVES_NAME))
        if hasattr(task, "report"):
            files.extend(Path(f) for f in task.report(model, out))
    return TrainResult(
        step=step,
        metrics=dict(history[-1]) if history else {},
        history=history,
        wall_time=elapsed + time.perf_counter() - t_start,
        out_dir=out,
        checkpoint=ckpt_file if last_ckpt_step is not None else None,
        stopped_early=stopped,
        files=files,
        resumed_from=resumed_from,
        changed=changed,
    )


class _NoBar:
    n = 0

    def update(self, k: int) -> None:
        self.n += k

    def set_postfix(self, *a: Any, **k: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(enabled: bool, total: int, initial: int):
    if not enabled:
        bar = _NoBar()
        bar.n = initial
        return bar
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr, leave=True)


def _fmt(x: Any, spec: str) -> str:
    return format(x, spec) if isinstance(x, (int, float)) else str(x)  # "nan"/"inf" arrive as strings


def _show(bar, post: dict[str, str], row: dict[str, Any] | None, loss: Any, aux: dict[str, float] | None) -> None:
    """Update the bar's postfix in place: latest batch loss/acc, latest eval accuracies."""
    if loss is not None:
        post["loss"] = _fmt(loss, ".3g")
    if aux and "acc" in aux:
        post["acc"] = _fmt(aux["acc"], ".3f")
    if row is not None:
        if loss is None and "train_loss" in row:
            post["loss"] = _fmt(row["train_loss"], ".3g")
        if "train_acc" in row:
            post["acc"] = _fmt(row["train_acc"], ".3f")
        if "test_acc" in row:
            post["test_acc"] = _fmt(row["test_acc"], ".3f")
    bar.set_postfix(post, refresh=True)
