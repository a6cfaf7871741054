"""Train stage: atomic checkpoints of a training run (weights, optimiser, step, history).

A checkpoint is one ``.npz`` file holding every leaf of a pytree (model state
and optimiser state) plus a JSON metadata record. It is written to a temporary
file in the same directory, fsynced and moved into place with ``os.replace``,
so the file named ``checkpoint.npz`` is always either the previous complete
checkpoint or the new complete one, never a partial write.

Leaves are stored by position and checked against the key paths of a template
tree on load, so a checkpoint from a different model is refused by name instead
of being silently loaded into the wrong weights.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

CHECKPOINT_NAME = "checkpoint.npz"
_META = "__meta__"


class CheckpointMismatch(ValueError):
    """The checkpoint on disk does not fit the model, task or seed being trained."""


def checkpoint_path(out_dir: str | os.PathLike) -> Path:
    """Where the latest checkpoint of a run in ``out_dir`` lives."""
    return Path(out_dir) / CHECKPOINT_NAME


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _leaf_paths(tree: Any) -> list[str]:
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    # Make the rename itself durable (POSIX); harmless where unsupported.
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def save(path: str | os.PathLike, tree: Any, meta: dict[str, Any]) -> Path:
    """Save every leaf of ``tree`` and the JSON-able ``meta`` atomically.

    Typed PRNG keys are stored as their raw key data (npz cannot hold key
    dtypes) and re-wrapped on load from the template's key implementation.

    Args:
      path: the checkpoint file to (re)place.
      tree: a pytree of arrays (e.g. ``(params, rest, opt_state)``).
      meta: JSON-serialisable metadata (step, seed, history, ...).

    Returns:
      The path written.
    """
    path = Path(path)
    leaves = jax.tree_util.tree_leaves(tree)
    arrays: dict[str, np.ndarray] = {}
    for i, leaf in enumerate(leaves):
        if _is_key(leaf):
            leaf = jax.random.key_data(leaf)
        arrays[f"leaf_{i:05d}"] = np.asarray(leaf)
    record = dict(meta, leaf_paths=_leaf_paths(tree), n_leaves=len(leaves))
    arrays[_META] = np.frombuffer(json.dumps(record).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _write_atomic(path, buf.getvalue())
    return path


def load_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Read only the metadata record of a checkpoint."""
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            return json.loads(bytes(z[_META]).decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as e:
        raise CheckpointMismatch(f"{path}: not a readable checkpoint ({e})") from None


def load(path: str | os.PathLike, template: Any) -> tuple[Any, dict[str, Any]]:
    """Load a checkpoint into the structure of ``template``.

    Args:
      path: a file written by :func:`save`.
      template: a pytree with the same structure, shapes and dtypes as the
        saved one (e.g. a freshly built model's state); its values are unused.

    Returns:
      ``(tree, meta)``: the restored pytree and the metadata record.

    Raises:
      CheckpointMismatch: the leaves do not match the template by key path,
        shape or dtype.
    """
    try:
        # Open the file ourselves: np.load leaks its handle when the zip is corrupt.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            meta = json.loads(bytes(z[_META]).decode("utf-8"))
            stored = [z[f"leaf_{i:05d}"] for i in range(meta["n_leaves"])]
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as e:
        raise CheckpointMismatch(f"{path}: not a readable checkpoint ({e})") from None
    leaves, treedef = jax.tree_util.tree_flatten(template)
    paths = _leaf_paths(template)
    if paths != meta["leaf_paths"]:
        missing = sorted(set(paths) - set(meta["leaf_paths"]))[:5]
        extra = sorted(set(meta["leaf_paths"]) - set(paths))[:5]
        raise CheckpointMismatch(
            f"{path} was written for a different model or optimiser "
            f"(missing from checkpoint: {missing or 'none'}; unexpected: {extra or 'none'})"
        )
    restored = []
    for name, want, got in zip(paths, leaves, stored):
        if _is_key(want):
            want_data = jax.random.key_data(want)
            if got.shape != want_data.shape or got.dtype != want_data.dtype:
                raise CheckpointMismatch(f"{path} was written for a different model: RNG key {name} differs")
            restored.append(jax.random.wrap_key_data(got, impl=jax.random.key_impl(want)))
            continue
        want_shape = np.shape(want)
        want_dtype = want.dtype if hasattr(want, "dtype") else np.asarray(want).dtype
        if got.shape != tuple(want_shape) or got.dtype != want_dtype:
            raise CheckpointMismatch(
                f"{path} was written for a different model: {name} is {got.dtype}{list(got.shape)} "
                f"in the checkpoint but {want_dtype}{list(want_shape)} here"
            )
        restored.append(jax.numpy.asarray(got))
    return jax.tree_util.tree_unflatten(treedef, restored), meta
