"""Train stage: several seeds of one model trained together, vmapped inside one compiled step.

Representation studies compare seeds. Here the states of all seeds (weights,
other model state, optimiser state) are stacked along a new leading axis, and
the single-seed trainer's compiled chunk (:func:`diagrammar.train.loop.chunk_fn`,
a ``lax.scan`` of ``steps_per_call`` steps) runs under ``jax.vmap``
(:func:`seeds_chunk`), so every seed advances in the same compiled call, with
the same chunking, and one program is compiled for all of them.

What that buys is measured by ``benchmarks/seeds.py``: the compilation is paid
once instead of once per seed, a large part of a short run's time. Once
compiled, a seed-step costs about what it costs alone on XLA:CPU: for the
models measured there (ModAddMLP and the pointer network at batch 128) the step
is arithmetic (matmuls and the optimiser's elementwise update), not dispatch,
and vmapping does not shrink the arithmetic (the benchmark's docstring has the
profile).

Seed ``s`` is exactly the run ``train(make_model(s), make_task(s), seed=s)``
would be: the same initial weights, the same data (its task's split), the same
minibatch order (``fold_in(key(s), step)``), the same evaluations, and the
same files. Each seed writes into ``OUT/seed-S/`` what a single run writes
into its folder (``metrics.jsonl``, ``checkpoint.npz``, ``curves.png``), so
metrics are one file per seed, and ``train(..., seed=S, out_dir=OUT/seed-S)``
(or ``diagrammar train --seed S --out OUT/seed-S``) resumes or loads any one
of them. A seed that meets ``stop_when`` is frozen from then on (its state no
longer changes, its folder is no longer written), as its own run would have
stopped there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ..cli import _files
from . import checkpoint as ckpt
from . import loop, plots, rundir
from .loop import Task, TrainingDiverged, TrainResult

SEED_MAX = 2 ** 32 - 1  # jax.random.key takes a uint32 seed


class SeedDiverged(TrainingDiverged):
    """One seed's training loss became NaN or infinite (``seed`` names it); nothing from that chunk was saved."""

    def __init__(self, seed: int, step: int, loss: float, checkpoint: Path | None, checkpoint_step: int | None):
        super().__init__(step, loss, checkpoint, checkpoint_step)
        self.seed = seed
        self.args = (f"seed {seed}: {self.args[0]}",)


@dataclasses.dataclass
class SeedsResult:
    """Outcome of :func:`train_seeds`: one :class:`~diagrammar.train.loop.TrainResult` and one trained
    model (in eval mode) per seed, in the order the seeds were given."""

    results: dict[int, TrainResult]
    models: dict[int, nnx.Module]
    wall_time: float
    out_dir: Path | None = None


def seed_folder(out_dir: str | os.PathLike, seed: int) -> Path:
    """Where seed ``seed`` of a many-seed run in ``out_dir`` keeps its files."""
    return Path(out_dir) / f"seed-{seed}"


def stack(trees: Sequence[Any]) -> Any:
    """One pytree whose leaves are the given trees' leaves stacked along a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Any, i: int) -> Any:
    """Entry ``i`` of a tree built by :func:`stack`."""
    return jax.tree.map(lambda x: x[i], tree)


def seeds_chunk(chunk: Callable[..., Any]) -> Callable[..., Any]:
    """The many-seed chunk: ``chunk`` (from :func:`diagrammar.train.loop.chunk_fn`) vmapped over stacked seeds.

    ``run(params, rest, opt_state, data, seeds, active, start, length=L)`` takes
    every argument but ``start`` stacked along a leading seed axis and returns
    what ``chunk`` returns, stacked likewise. A seed whose ``active`` is False
    keeps its state (its losses are computed and ignored): its own run would
    have ended at the step it stopped.
    """
    def one_seed(params, rest, opt_state, data, seed, active, start, *, length):
        old = (params, rest, opt_state)
        new, outs = chunk(params, rest, opt_state, data, seed, start, length=length)
        return jax.tree.map(lambda n, o: jnp.where(active, n, o), new, old), outs

    def run(params, rest, opt_state, data, seeds, active, start, *, length):
        return jax.vmap(lambda *a: one_seed(*a, start, length=length))(params, rest, opt_state, data, seeds, active)

    return run


@dataclasses.dataclass
class _Seed:
    """Book-keeping of one seed: where its files go and how far it has got."""

    seed: int
    task: Any
    out: Path | None
    run_config: dict[str, Any]
    step: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    elapsed: float = 0.0
    last_ckpt_step: int | None = None
    resumed_from: int | None = None
    changed: list[str] = dataclasses.field(default_factory=list)
    stopped: bool = False

    @property
    def ckpt_file(self) -> Path | None:
        return ckpt.checkpoint_path(self.out) if self.out is not None else None

    @property
    def metrics_file(self) -> Path | None:
        return self.out / loop.METRICS_NAME if self.out is not None else None


def train_seeds(
    make_model: Callable[[int], nnx.Module],
    make_task: Callable[[int], Task] | Task,
    seeds: Sequence[int],
    *,
    steps: int,
    optimizer: optax.GradientTransformation | None = None,
    steps_per_call: int = 100,
    eval_every: int | None = None,
    checkpoint_every: int | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    stop_when: Callable[[dict[str, Any]], bool] | None = None,
    plot_every_seconds: float = 30.0,
    unroll: int = 1,
    config: Mapping[str, Any] | None = None,
    force: bool = False,
) -> SeedsResult:
    """Train one model per seed, all seeds in one compiled step, each as its own single-seed run would.

    Args:
      make_model: ``make_model(seed)`` builds seed ``seed``'s model (e.g. a
        circuit compiled with ``rngs=nnx.Rngs(seed)``). Every seed's model must
        have the same structure and shapes.
      make_task: ``make_task(seed)`` builds seed ``seed``'s task, or one task
        shared by every seed. Tasks may differ in their data (e.g. the
        train/test split) and their seed, nothing else: the first task's
        ``loss`` and ``sample`` serve all seeds.
      seeds: the seeds, each from 0 to 2**32-1, none twice.
      steps, optimizer, steps_per_call, eval_every, checkpoint_every, resume,
      progress, stop_when, plot_every_seconds, unroll, config, force: as for
        :func:`diagrammar.train.loop.train`, applied to each seed (``stop_when``
        freezes the seeds that meet it; the run ends when all have stopped).
      out_dir: the run's folder; seed ``s`` writes into ``out_dir/seed-s/``
        (see :func:`seed_folder`). None keeps everything in memory.

    Returns:
      A :class:`SeedsResult`.

    Raises:
      SeedDiverged: a seed's training loss became NaN or inf (a ``TrainingDiverged``).
      CheckpointMismatch, RunInProgress, UnusableFile: as for ``train``, for any seed's folder.
      ValueError: bad seeds or step counts, or models or tasks that differ in more than weights and data.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed")
    if any(not 0 <= s <= SEED_MAX for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct whole numbers from 0 to {SEED_MAX}, got {seeds}")
    for name, value, least in (("steps", steps, 0), ("steps_per_call", steps_per_call, 1),
                               ("eval_every", eval_every, 1), ("checkpoint_every", checkpoint_every, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                  or not least <= value <= ckpt.MAX_STEP):
            raise ValueError(f"{name} must be a whole number from {least} to {ckpt.MAX_STEP}, got {value!r}")
    options = dict(steps=steps, optimizer=optimizer, steps_per_call=steps_per_call, eval_every=eval_every,
                   checkpoint_every=checkpoint_every, resume=resume, progress=progress, stop_when=stop_when,
                   plot_every_seconds=plot_every_seconds, unroll=unroll, config=config, force=force)
    with ExitStack() as held:
        out = None
        if out_dir is not None:
            out = held.enter_context(rundir.claim(out_dir, what="out_dir"))
            for s in seeds:  # a single run into one seed's folder is refused while this one runs
                held.enter_context(rundir.claim(seed_folder(out, s), what="out_dir"))
        return _train_seeds(make_model, make_task, seeds, out, **options)


def _task_for(make_task: Any) -> Callable[[int], Any]:
    if hasattr(make_task, "loss"):
        return lambda seed: make_task
    return make_task


def _without_seed(config: Any) -> Any:
    return {k: v for k, v in config.items() if k != "seed"} if isinstance(config, dict) else config


def _train_seeds(make_model, make_task, seeds, out, *, steps, optimizer, steps_per_call, eval_every,
                 checkpoint_every, resume, progress, stop_when, plot_every_seconds, unroll, config,
                 force) -> SeedsResult:
    tx = optimizer if optimizer is not None else loop.default_optimizer()
    eval_every = eval_every or steps_per_call
    checkpoint_every = checkpoint_every or eval_every
    task_for = _task_for(make_task)
    tasks = {s: task_for(s) for s in seeds}
    first = tasks[seeds[0]]
    configs = {s: loop._jsonable(getattr(t, "config", None)) for s, t in tasks.items()}
    for s in seeds[1:]:
        if type(tasks[s]) is not type(first) or _without_seed(configs[s]) != _without_seed(configs[seeds[0]]):
            raise ValueError(f"the task of seed {s} differs from seed {seeds[0]}'s in more than its seed: "
                             f"{configs[s]} against {configs[seeds[0]]}")
    book = {}
    for s in seeds:
        run_config: dict[str, Any] = {"seed": s, "task": configs[s]}
        if config is not None:
            run_config["settings"] = loop._jsonable(config)
        book[s] = _Seed(s, tasks[s], seed_folder(out, s) if out is not None else None, run_config)
    _catch_up(make_model, book, steps=steps, tx=tx, steps_per_call=steps_per_call, eval_every=eval_every,
              checkpoint_every=checkpoint_every, resume=resume, stop_when=stop_when, unroll=unroll,
              config=config, force=force)

    # Two graph definitions (training and eval mode) from the first model serve every seed.
    models, params_of, rest_of, opt_of = {}, [], [], []
    train_def = eval_def = None
    for s in seeds:
        model = models[s] = make_model(s)
        model.train()
        tdef, params, rest = nnx.split(model, nnx.Param, ...)
        model.eval()
        edef, params, rest = nnx.split(model, nnx.Param, ...)
        if train_def is None:
            train_def, eval_def = tdef, edef
        opt_state = tx.init(params)
        params, rest, opt_state = _resume_or_start(book[s], (params, rest, opt_state), resume, stop_when, force)
        params_of.append(params)
        rest_of.append(rest)
        opt_of.append(opt_state)
    _same_shapes(seeds, params_of, rest_of)
    params, rest, opt_state = stack(params_of), stack(rest_of), stack(opt_of)
    del params_of, rest_of, opt_of

    def stacked_data(split: str) -> dict[str, jax.Array]:
        per_seed = [{k: jnp.asarray(v) for k, v in getattr(tasks[s], split).items()} for s in seeds]
        if any(jax.tree.map(jnp.shape, d) != jax.tree.map(jnp.shape, per_seed[0]) for d in per_seed):
            raise ValueError(f"the seeds' tasks hold {split} of different shapes; they cannot be trained together")
        return stack(per_seed)

    train_data, test_data = stacked_data("train_data"), stacked_data("test_data")
    seed_arr = jnp.asarray(seeds, dtype=jnp.uint32)
    run_chunk = jax.jit(seeds_chunk(loop.chunk_fn(first, train_def, tx, unroll=unroll)), static_argnames="length")

    def evaluate(params, rest, data):
        return jax.vmap(lambda p, r, d: first.loss(nnx.merge(eval_def, p, r, copy=True), d, False))(
            params, rest, data)

    evaluate = jax.jit(evaluate)

    def seed_state(i: int) -> tuple[Any, Any, Any]:
        return unstack(params, i), unstack(rest, i), unstack(opt_state, i)

    def save_checkpoint(i: int, b: _Seed) -> None:
        if b.ckpt_file is None:
            return
        meta = dict(step=b.step, seed=b.seed, task=configs[b.seed], config=b.run_config, history=b.history,
                    wall_time=b.elapsed + time.perf_counter() - t_start)
        ckpt.save(b.ckpt_file, seed_state(i), meta)
        b.last_ckpt_step = b.step

    def log_eval(which: list[int], batch_loss: np.ndarray | None) -> None:
        results = {split: jax.device_get(evaluate(params, rest, data))
                   for split, data in (("train", train_data), ("test", test_data))}
        for i in which:
            b = book[seeds[i]]
            row: dict[str, Any] = {"step": b.step}
            for split, (loss, aux) in results.items():
                row[f"{split}_loss"] = float(loss[i])
                row.update({f"{split}_{k}": float(v[i]) for k, v in aux.items()})
            if batch_loss is not None:
                row["batch_loss"] = float(batch_loss[i])
            if hasattr(b.task, "analyse"):
                p, r, _ = seed_state(i)
                row.update(loop._jsonable(b.task.analyse(nnx.merge(eval_def, p, r, copy=True))))
            row["time"] = round(b.elapsed + time.perf_counter() - t_start, 3)
            row = loop._jsonable(row)
            b.history.append(row)
            if b.metrics_file is not None:
                _files.append_text(b.metrics_file, json.dumps(row) + "\n")
            if stop_when is not None and stop_when(row):
                b.stopped = True

    def active_seeds() -> list[int]:
        return [i for i, s in enumerate(seeds) if not book[s].stopped and book[s].step < steps]

    def next_boundary(s: int) -> int:
        return min(steps, *(((s // every) + 1) * every for every in (steps_per_call, eval_every, checkpoint_every)))

    t_start = time.perf_counter()
    last_plot = t_start
    live = active_seeds()
    step = book[seeds[live[0]]].step if live else steps
    bar = loop._progress_bar(progress, steps, step)
    try:
        fresh = [i for i, s in enumerate(seeds) if not book[s].history]
        if fresh:
            log_eval(fresh, None)
            for i in fresh:
                save_checkpoint(i, book[seeds[i]])
            _show(bar, book, seeds)
        while live:
            end = next_boundary(step)
            active = jnp.asarray([i in live for i in range(len(seeds))])
            (new_params, new_rest, new_opt), (losses, _) = run_chunk(
                params, rest, opt_state, train_data, seed_arr, active, jnp.int32(step), length=end - step)
            losses = np.asarray(losses)
            for i in live:
                bad = ~np.isfinite(losses[i])
                if bad.any():
                    b, k = book[seeds[i]], int(np.argmax(bad))
                    raise SeedDiverged(b.seed, step + k, float(losses[i, k]),
                                       b.ckpt_file if b.last_ckpt_step is not None else None, b.last_ckpt_step)
            params, rest, opt_state, step = new_params, new_rest, new_opt, end
            for i in live:
                book[seeds[i]].step = step
            bar.update(end - bar.n)
            if step % eval_every == 0 or step == steps:
                log_eval(live, losses.mean(axis=1))
                _show(bar, book, seeds)
            for i in live:
                b = book[seeds[i]]
                if step % checkpoint_every == 0 or step == steps or b.stopped:
                    save_checkpoint(i, b)
            if out is not None and time.perf_counter() - last_plot >= plot_every_seconds:
                for i in live:
                    b = book[seeds[i]]
                    plots.plot_history(b.history, b.out / loop.CURVES_NAME)
                last_plot = time.perf_counter()
            live = active_seeds()
    except KeyboardInterrupt:
        # The state in hand is the last completed chunk: save every seed so the run resumes from there.
        for i, s in enumerate(seeds):
            if book[s].last_ckpt_step != book[s].step:
                save_checkpoint(i, book[s])
        raise
    finally:
        bar.close()
        for i, s in enumerate(seeds):
            p, r, _ = seed_state(i)
            nnx.update(models[s], p, r)
            models[s].eval()

    session = time.perf_counter() - t_start
    results = {}
    for s in seeds:
        b = book[s]
        files: list[Path] = []
        if b.out is not None:
            files.append(plots.plot_history(b.history, b.out / loop.CURVES_NAME))
            if hasattr(b.task, "report"):
                files.extend(Path(f) for f in b.task.report(models[s], b.out))
        finished = bool(b.history and stop_when is not None and stop_when(b.history[-1]))
        results[s] = TrainResult(step=b.step, metrics=dict(b.history[-1]) if b.history else {}, history=b.history,
                                 wall_time=b.elapsed + session, out_dir=b.out,
                                 checkpoint=b.ckpt_file if b.last_ckpt_step is not None else None,
                                 stopped_early=finished, files=files, resumed_from=b.resumed_from, changed=b.changed)
    return SeedsResult(results=results, models=models, wall_time=session, out_dir=out)


def _resume_or_start(b: _Seed, template: Any, resume: bool, stop_when, force: bool) -> Any:
    """Load seed ``b``'s checkpoint into ``template`` as a single run would, or clear its folder to start."""
    if b.out is None:
        return template
    if resume and ckpt.exists(b.ckpt_file):
        meta = _checked_meta(b, force)
        b.step, b.history, b.elapsed = ckpt.run_record(meta, b.ckpt_file)
        state, _ = ckpt.load(b.ckpt_file, template)
        loop._check_step_counts(state[2], b.step, b.ckpt_file)
        b.last_ckpt_step = b.resumed_from = b.step
        b.stopped = bool(b.history and stop_when is not None and stop_when(b.history[-1]))
        loop._write_lines(b.metrics_file, b.history)
        return state
    ckpt.discard(b.ckpt_file)
    loop._write_lines(b.metrics_file, [])
    return template


def _checked_meta(b: _Seed, force: bool) -> dict[str, Any]:
    """The metadata of seed ``b``'s checkpoint, refused (unless ``force``) if it holds another run's settings."""
    meta = ckpt.load_meta(b.ckpt_file)
    stored = meta.get("config")
    if not isinstance(stored, dict):
        stored = {"seed": meta.get("seed"), "task": meta.get("task")}
    b.changed = [line.removeprefix("settings.") for line in
                 ckpt.differences({k: stored[k] for k in b.run_config if k in stored}, b.run_config)]
    if b.changed and not force:
        raise ckpt.CheckpointMismatch(
            f"{b.ckpt_file} belongs to a run with other settings: " + "; ".join(b.changed)
            + ". Continue it with these settings anyway with --force (force=True), start afresh with "
            "--fresh (resume=False), or give another output folder")
    return meta


def _catch_up(make_model, book: dict[int, _Seed], *, steps, tx, steps_per_call, eval_every, checkpoint_every,
              resume, stop_when, unroll, config, force) -> None:
    """Bring seeds whose checkpoints lag the others' (a run killed between two seeds' saves) to the same step.

    Seeds run in one compiled step must share the step count; a lagging seed is
    trained alone, by the single-seed trainer, up to the step of the most
    advanced unfinished seed, which is exactly what its part of the shared run
    would have done.
    """
    if not resume:
        return
    where: dict[int, int] = {}
    for s, b in book.items():
        if b.ckpt_file is None or not ckpt.exists(b.ckpt_file):
            where[s] = 0
            continue
        meta = _checked_meta(b, force)
        step, history, _ = ckpt.run_record(meta, b.ckpt_file)
        done = step >= steps or bool(history and stop_when is not None and stop_when(history[-1]))
        if not done:
            where[s] = step
    if len(set(where.values())) <= 1:
        return
    target = max(where.values())
    for s, step in where.items():
        if step < target:
            loop.train(make_model(s), book[s].task, steps=target, optimizer=tx, steps_per_call=steps_per_call,
                       eval_every=eval_every, checkpoint_every=checkpoint_every, out_dir=book[s].out, seed=s,
                       resume=True, progress=False, stop_when=stop_when, unroll=unroll, config=config, force=force)


def _same_shapes(seeds: list[int], params_of: list[Any], rest_of: list[Any]) -> None:
    def signature(tree: Any) -> Any:
        return jax.tree_util.tree_structure(tree), [(jnp.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(tree)]

    want = signature((params_of[0], rest_of[0]))
    for s, p, r in zip(seeds[1:], params_of[1:], rest_of[1:]):
        if signature((p, r)) != want:
            raise ValueError(f"the model of seed {s} differs in structure or shapes from seed {seeds[0]}'s; "
                             "seeds trained together must share one architecture")


def _show(bar, book: dict[int, _Seed], seeds: list[int]) -> None:
    """The bar's postfix: the range of the latest test (and train) accuracies over the seeds."""
    post = {}
    for key in ("train_acc", "test_acc"):
        vals = [book[s].history[-1][key] for s in seeds if book[s].history and isinstance(
            book[s].history[-1].get(key), (int, float))]
        if vals:
            post[key] = f"{min(vals):.3f}..{max(vals):.3f}"
    post["running"] = str(sum(not book[s].stopped for s in seeds))
    bar.set_postfix(post, refresh=True)
