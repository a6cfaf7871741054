"""Analysis: stream named wires of a compiled circuit over a task's examples, from a model or a checkpoint.

A compiled circuit returns any named wire with ``model(*inputs, capture=[...])``,
laid out as (one axis per enclosing repeat or scan, the batch axes, the wire's
own axes). Here the *examples* are the batch axes: each captured value is
turned into a matrix (examples, features) with every other axis, repeat and
scan axes included, flattened into the features of its example. Batches run
through one jitted function of a fixed batch size (the last batch is padded
and cut back), so a data set of any length costs one compilation and memory
bounded by the batch.
"""
from __future__ import annotations

import contextlib

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..errors import BadArgument
from ..ir import Diagram, TensorType

__all__ = ["wire_layout", "examples_first", "stream_wires", "collect", "Examples", "task_examples", "load_checkpoint",
           "checkpoint_file", "TASKS"]

DEFAULT_BATCH = 1024
TASKS = ("modadd", "sort", "hull")


STACKING = ("repeat", "scan", "dispatch")  # boxes whose captured wires gain a leading axis (copies, steps)


def wire_layout(diagram: Diagram, dotted: str) -> int:
    """How many leading axes a captured wire has before its batch axes: one per enclosing repeat, scan or
    dispatch on the dotted path (a call broadcast over axes puts them after the batch axes instead).

    Raises:
      BadArgument: the circuit has no such wire (listing those it has), or it is a tuple.
    """
    d, rest, lead = diagram, dotted, 0
    while True:
        for w in d.wires:
            if w.name == rest:
                if not isinstance(w.type, TensorType):
                    raise BadArgument(f"wire {dotted!r} is a tuple; capture one of its parts")
                return lead
        owner = next((b for b in d.boxes if b.body is not None and rest.startswith(b.name + ".")), None)
        if owner is None:
            model_wires = _all_wires(diagram)
            listing = ", ".join(model_wires[:40]) + (", ..." if len(model_wires) > 40 else "")
            raise BadArgument(f"{diagram.name} has no wire {dotted!r}; its wires: {listing}")
        lead += owner.op in STACKING
        d, rest = owner.body, rest[len(owner.name) + 1:]


def _all_wires(d: Diagram, prefix: str = "") -> list[str]:
    out = [prefix + w.name for w in d.wires if ":" not in w.name and isinstance(w.type, TensorType)]
    for b in d.boxes:
        if b.body is not None:
            out.extend(_all_wires(b.body, f"{prefix}{b.name}."))
    return out


def examples_first(value, lead: int, batch_ndim: int = 1) -> np.ndarray:
    """A captured wire as (examples, features): the ``batch_ndim`` batch axes, which follow ``lead`` repeat
    or scan axes, become the rows; every other axis is flattened into the features, in order.

    >>> examples_first(np.zeros((3, 5, 2, 4)), lead=1).shape   # 3 scan steps, batch 5, wire [2, 4]
    (5, 24)
    """
    a = np.asarray(value)
    if a.ndim < lead + batch_ndim:
        raise ValueError(f"a captured value of shape {a.shape} cannot hold {lead} leading and {batch_ndim} "
                         "batch axes")
    batch_axes = list(range(lead, lead + batch_ndim))
    a = np.moveaxis(a, batch_axes, list(range(batch_ndim)))
    rows = math.prod(a.shape[:batch_ndim])
    return a.reshape(rows, -1).astype(np.float64, copy=False)


@dataclass
class Examples:
    """A task's examples in batches: ``batches()`` yields ``(inputs, labels)`` with ``inputs`` the model's
    positional arguments (one leading batch axis) and ``labels`` an int array or None."""

    count: int
    batches: Callable[[int], Iterator[tuple[tuple[np.ndarray, ...], np.ndarray | None]]]
    description: str


def stream_wires(model: nnx.Module, examples: Examples, wires: Sequence[str],
                 batch_size: int = DEFAULT_BATCH) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray | None]]:
    """Run ``model`` over ``examples`` and yield ``({wire: (b, features)}, labels)`` one batch at a time.

    The model runs in eval mode through one jitted function of a fixed batch
    size; only one batch of each wire is alive at a time.
    """
    model.eval()
    graphdef, state = nnx.split(model)
    leads = {w: wire_layout(model.diagram, w) for w in wires}
    wires = list(wires)

    @jax.jit
    def run(state, *inputs):
        m = nnx.merge(graphdef, state)
        _, caps = m(*inputs, capture=wires)
        return caps

    for inputs, labels in examples.batches(batch_size):
        b = int(np.shape(inputs[0])[0])
        if b < batch_size:  # pad with copies of the first row, so the jitted shape never changes
            inputs = tuple(np.concatenate([x, np.repeat(x[:1], batch_size - b, axis=0)]) for x in inputs)
        caps = run(state, *(jnp.asarray(x) for x in inputs))
        yield {w: examples_first(jax.device_get(caps[w]), leads[w])[:b] for w in wires}, labels


# ---------------------------------------------------------------- data sets


def _modadd_examples(p: int, inputs: str, count: int | None, seed: int) -> Examples:
    """Every pair (a, b) of [0, p)^2 in a seeded order (the first ``count`` of them), labelled (a + b) mod p."""
    total = p * p
    n = total if count is None else min(count, total)
    order = np.random.default_rng(seed).permutation(total)[:n] if n < total else np.arange(total)

    def batches(size: int):
        for start in range(0, n, size):
            idx = order[start:start + size]
            a, b = (idx // p).astype(np.int32), (idx % p).astype(np.int32)
            labels = ((a + b) % p).astype(np.int64)
            if inputs == "ab":
                yield (a, b), labels
            else:
                yield (np.stack([a, b, np.full_like(a, p)], axis=-1),), labels

    what = "all" if n == total else f"{n:,} of the"
    return Examples(n, batches, f"{what} {total:,} pairs (a, b) mod {p}")


def _pointer_examples(kind: str, config: dict[str, Any], sizes: dict[str, int], count: int | None,
                      seed: int) -> Examples:
    """Fresh sorting or hull inputs of the checkpoint's lengths, teacher-forced as in training (no labels)."""
    from ..train.pointer import DEFAULT_N, PointerTask, numpy_batch

    n_max = int(sizes.get("n", config.get("n_max", DEFAULT_N[kind][1])))
    steps = PointerTask.axis_sizes(kind, n_max)["steps"]
    n_min = int(config.get("n_min", min(DEFAULT_N[kind][0], n_max)))
    n = 1000 if count is None else count

    def batches(size: int):
        # drawn once, so the examples do not depend on the batch size (the inputs are small: n x feat each)
        data = {k: np.asarray(v) for k, v in numpy_batch(kind, [seed, 7], n, n_min, n_max, n_max, steps).items()}
        for start in range(0, n, size):
            part = {k: v[start:start + size] for k, v in data.items()}
            forced = np.eye(n_max, dtype=np.float32)[part["target"]] * part["target_mask"][..., None]
            teacher = np.ones(part["target"].shape, bool)
            yield (part["x"], part["mask"], forced, teacher, np.full(part["x"].shape[:1], kind == "hull")), None

    return Examples(n, batches, f"{n:,} {kind} inputs of length {n_min}..{n_max} (seed {seed})")


def task_examples(task: str, model: nnx.Module, config: dict[str, Any] | None = None, count: int | None = None,
                  seed: int = 0) -> Examples:
    """The examples a wire is analysed over for ``--task``.

    modadd: every pair (a, b), labelled with the answer, in a seeded order
    (``count`` takes the first ones); sort, hull: ``count`` (default 1,000)
    fresh inputs, teacher-forced; they have no class labels.
    """
    config = dict(config or {})
    if task == "modadd":
        from ..train.modadd import probe_inputs

        inputs = config.get("inputs")
        try:
            found, p = probe_inputs(model, inputs if inputs in ("ab", "tokens") else "auto")
        except ValueError as e:
            raise BadArgument(f"--task modadd does not fit this circuit: {e}") from None
        return _modadd_examples(p, found, count, seed)
    if task in ("sort", "hull"):
        return _pointer_examples(task, config, getattr(model, "sizes", {}), count, seed)
    raise BadArgument(f"--task must be one of {', '.join(TASKS)}, got {task!r}")


# ---------------------------------------------------------------- checkpoints


def checkpoint_file(path: str | os.PathLike) -> Path:
    """A checkpoint named directly, or the ``checkpoint.npz`` of a run folder."""
    from ..train.checkpoint import checkpoint_path

    p = Path(path)
    return checkpoint_path(p) if p.is_dir() else p


def checkpoint_sizes(meta: dict[str, Any]) -> tuple[dict[str, int], dict[str, Any]]:
    """(the axis sizes the run compiled with, its ``--size`` overrides) from a checkpoint's record."""
    settings = (meta.get("config") or {}).get("settings") or {}
    sizes = settings.get("sizes") or {}
    overrides = settings.get("size_overrides") or {}
    sizes = {str(k): int(v) for k, v in sizes.items() if isinstance(v, int) and not isinstance(v, bool)}
    return sizes, dict(overrides)


def load_checkpoint(diagram: Diagram, path: str | os.PathLike,
                    sizes: dict[str, int] | None = None) -> tuple[nnx.Module, dict[str, Any]]:
    """The model a training run saved: ``diagram`` compiled with ``sizes``, its weights and state read from the
    checkpoint (the optimiser state in the file is not read).

    Every model leaf's shape and dtype is checked against the compiled model before its data is read,
    as :func:`diagrammar.train.checkpoint.load` does.

    Raises:
      CheckpointMismatch: the checkpoint holds another model.
      UnusableFile: it is missing or unreadable.
    """
    from ..train import checkpoint as ckpt

    path = checkpoint_file(path)
    model = diagram.compile(rngs=nnx.Rngs(0), **(sizes or {}))
    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    # by key path, the optimiser state in the file left unread; a sharded run's pieces are joined here
    with reading_checkpoint():
        (params, rest), meta = ckpt.load(path, (params, rest), subset=True,
                                         here=f"in {diagram.name} with sizes {sizes or {}} (were other sizes "
                                              "used? give them with --size NAME=N)")
    model = nnx.merge(graphdef, params, rest)
    model.eval()
    return model, meta


@contextlib.contextmanager
def reading_checkpoint():
    """A checkpoint read to analyse or draw, not to resume: its refusal advises what a reader can do."""
    from ..train import checkpoint as ckpt

    try:
        yield
    except ckpt.CheckpointMismatch as e:
        raise ckpt.CheckpointMismatch(str(e).replace(
            ckpt.RESUME_HINT, "give a checkpoint.npz that `diagrammar train` wrote, or its run folder")) from None


def collect(stream: Iterable[tuple[dict[str, np.ndarray], Any]]) -> dict[str, np.ndarray]:
    """Every batch of a (small) stream joined in memory: {wire: (n, features)}."""
    parts: dict[str, list[np.ndarray]] = {}
    for batch, _ in stream:
        for k, v in batch.items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}
