"""Train stage: atomic checkpoints of a training run (weights, optimiser, step, history), checked before loading.

A checkpoint is one ``.npz`` file holding every leaf of a pytree (model state
and optimiser state) plus a JSON metadata record. It is written through
``diagrammar.cli._files.write_atomic`` (a temporary beside it, fsynced, then
renamed), so the file named ``checkpoint.npz`` is always either the previous
complete checkpoint or the new complete one, never a partial write.

Loading trusts nothing in the file. Leaves are stored by position and checked
against the key paths of a template tree, and every array's header (shape,
dtype, byte count) is read and compared with the template *before* any array
data is read, so a checkpoint of another model, or a crafted one whose header
claims terabytes, is refused by name with nothing allocated. The run record
(step, history, wall time) is checked for types and ranges too.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ..cli import _files
from ..errors import CommandError, UnusableFile

CHECKPOINT_NAME = "checkpoint.npz"
_META = "__meta__"
MAX_META_BYTES = 256 * 2 ** 20  # the history of a very long run is a few MB
MAX_STEP = 2 ** 31 - 1          # steps are int32 inside the compiled loop


class CheckpointMismatch(CommandError, ValueError):
    """The checkpoint on disk cannot be resumed here: another model, task, seed or settings, or a damaged
    or crafted file. Exit code 2 on the command line."""


def checkpoint_path(out_dir: str | os.PathLike) -> Path:
    """Where the latest checkpoint of a run in ``out_dir`` lives."""
    return Path(out_dir) / CHECKPOINT_NAME


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _leaf_paths(tree: Any) -> list[str]:
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers never see a partial file (missing folders are created)."""
    _files.write_atomic(path, data, make_folders=True)


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

    Raises:
      UnusableFile: it cannot be written (full disk, read-only, a folder in its
        place); the previous checkpoint is left as it was.
    """
    import io

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


def discard(path: str | os.PathLike) -> None:
    """Delete the checkpoint at ``path`` (to start afresh), refusing to delete anything but a file.

    Raises:
      UnusableFile: a folder, FIFO or device has the checkpoint's name, or it cannot be deleted.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise _files.unusable(e, path, "remove") from None
    import stat

    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise UnusableFile(f"{path} is {_files.describe(st.st_mode)}, not a checkpoint file; "
                           "move it away or give another output folder")
    try:
        os.unlink(path)
    except OSError as e:
        raise _files.unusable(e, path, "remove") from None


def exists(path: str | os.PathLike) -> bool:
    """Whether anything (even a broken link, a folder or a FIFO) has the checkpoint's name."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise _files.unusable(e, path, "read") from None
    return True


# ------------------------------------------------------------------ reading, nothing trusted


def _refuse(path: Any, why: str) -> CheckpointMismatch:
    return CheckpointMismatch(f"{path}: not a readable checkpoint ({why}); delete it, start afresh (--fresh) "
                              "or give another output folder")


class _Reader:
    """Array headers and data of an ``.npz`` file, read one member at a time and only as far as checked."""

    def __init__(self, path: str | os.PathLike, zf: zipfile.ZipFile):
        self.path, self.zf = path, zf
        self.names = set(zf.namelist())

    def info(self, name: str) -> zipfile.ZipInfo:
        try:
            return self.zf.getinfo(name + ".npy")
        except KeyError:
            raise _refuse(self.path, f"it has no entry {name}") from None

    def header(self, name: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
        """(shape, fortran order, dtype, data offset) of member ``name``, after checking its declared size."""
        info = self.info(name)
        try:
            with self.zf.open(info) as m:
                version = np.lib.format.read_magic(m)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(m, max_header_size=10_000)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(m, max_header_size=10_000)
                else:
                    raise ValueError(f"array format version {version}")
                offset = m.tell()
        except (ValueError, TypeError, SyntaxError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as e:
            raise _refuse(self.path, f"entry {name}: {e}") from None
        if dtype.hasobject:
            raise _refuse(self.path, f"entry {name} holds Python objects")
        if any(not isinstance(n, int) or n < 0 for n in shape):
            raise _refuse(self.path, f"entry {name} has the shape {shape}")
        nbytes = math.prod(shape) * dtype.itemsize
        if info.file_size != offset + nbytes:
            raise _refuse(self.path, f"entry {name} declares {list(shape)} {dtype} ({nbytes:,} bytes) but holds "
                                     f"{max(info.file_size - offset, 0):,} bytes")
        return tuple(shape), bool(fortran), dtype, offset

    def array(self, name: str) -> np.ndarray:
        """The data of member ``name``; call only after :meth:`header` has been checked against what is wanted."""
        shape, fortran, dtype, offset = self.header(name)
        nbytes = math.prod(shape) * dtype.itemsize
        try:
            with self.zf.open(self.info(name)) as m:
                m.read(offset)
                data = m.read(nbytes)
        except (OSError, EOFError, zipfile.BadZipFile, RuntimeError, ValueError) as e:
            raise _refuse(self.path, f"entry {name}: {e}") from None
        if len(data) != nbytes:
            raise _refuse(self.path, f"entry {name} is cut short")
        return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")

    def meta(self) -> dict[str, Any]:
        shape, _, dtype, _ = self.header(_META)
        if dtype != np.uint8 or len(shape) != 1 or shape[0] > MAX_META_BYTES:
            raise _refuse(self.path, "its metadata record is not JSON text of a sensible size")
        try:
            meta = json.loads(self.array(_META).tobytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise _refuse(self.path, f"its metadata record is not JSON: {e}") from None
        if not isinstance(meta, dict):
            raise _refuse(self.path, "its metadata record is not a JSON object")
        n = meta.get("n_leaves")
        paths = meta.get("leaf_paths")
        if type(n) is not int or not 0 <= n <= 10 ** 6:
            raise _refuse(self.path, f"n_leaves is {n!r}")
        if not isinstance(paths, list) or len(paths) != n or not all(isinstance(p, str) for p in paths):
            raise _refuse(self.path, "leaf_paths does not list n_leaves names")
        want = {f"leaf_{i:05d}.npy" for i in range(n)} | {_META + ".npy"}
        if self.names != want:
            extra, missing = sorted(self.names - want)[:3], sorted(want - self.names)[:3]
            raise _refuse(self.path, f"its entries do not match its record (unexpected: {extra or 'none'}; "
                                     f"missing: {missing or 'none'})")
        return meta


@contextmanager
def _reader(path: str | os.PathLike) -> Iterator[_Reader]:
    with _files.open_regular(path) as f:
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise _refuse(path, str(e)) from None
        with zf:
            yield _Reader(path, zf)


def load_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Read only the metadata record of a checkpoint (checked for structure, nothing else read).

    Raises:
      CheckpointMismatch: not a readable checkpoint.
      UnusableFile: missing, unreadable, or not a regular file (a folder, a FIFO).
    """
    with _reader(path) as r:
        return r.meta()


def _wanted(leaf: Any) -> tuple[tuple[int, ...], np.dtype]:
    if _is_key(leaf):
        leaf = jax.random.key_data(leaf)
    dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
    return tuple(np.shape(leaf)), np.dtype(dtype)


def load(path: str | os.PathLike, template: Any) -> tuple[Any, dict[str, Any]]:
    """Load a checkpoint into the structure of ``template``.

    Every array's shape, dtype and byte count is checked against the template
    before its data is read; float arrays must hold finite numbers.

    Args:
      path: a file written by :func:`save`.
      template: a pytree with the same structure, shapes and dtypes as the
        saved one (e.g. a freshly built model's state); its values are unused.

    Returns:
      ``(tree, meta)``: the restored pytree and the metadata record.

    Raises:
      CheckpointMismatch: the leaves do not match the template by key path,
        shape or dtype, or the file is damaged or inconsistent.
      UnusableFile: missing, unreadable, or not a regular file.
    """
    leaves, treedef = jax.tree_util.tree_flatten(template)
    paths = _leaf_paths(template)
    with _reader(path) as r:
        meta = r.meta()
        if paths != meta["leaf_paths"]:
            missing = sorted(set(paths) - set(meta["leaf_paths"]))[:5]
            extra = sorted(set(meta["leaf_paths"]) - set(paths))[:5]
            raise CheckpointMismatch(
                f"{path} was written for a different model or optimiser "
                f"(missing from checkpoint: {missing or 'none'}; unexpected: {extra or 'none'})"
            )
        names = [f"leaf_{i:05d}" for i in range(len(leaves))]
        # every header first: nothing is allocated before all of them match
        for name, want, entry in zip(paths, leaves, names, strict=True):
            want_shape, want_dtype = _wanted(want)
            shape, _, dtype, _ = r.header(entry)
            if shape != want_shape or dtype != want_dtype:
                what = "RNG key " if _is_key(want) else ""
                raise CheckpointMismatch(
                    f"{path} was written for a different model: {what}{name} is {dtype}{list(shape)} "
                    f"in the checkpoint but {want_dtype}{list(want_shape)} here"
                )
        restored = []
        for name, want, entry in zip(paths, leaves, names, strict=True):
            got = r.array(entry)
            if np.issubdtype(got.dtype, np.inexact) and not np.all(np.isfinite(got)):
                raise _refuse(path, f"{name} holds NaN or infinite values")
            if _is_key(want):
                restored.append(jax.random.wrap_key_data(np.array(got), impl=jax.random.key_impl(want)))
            elif isinstance(getattr(want, "sharding", None), jax.sharding.NamedSharding):
                restored.append(jax.device_put(got, want.sharding))  # onto the template's mesh, whatever it was
            else:
                restored.append(jax.numpy.asarray(got))
    return jax.tree_util.tree_unflatten(treedef, restored), meta


def run_record(meta: Mapping[str, Any], path: str | os.PathLike) -> tuple[int, list[dict[str, Any]], float]:
    """The (step, history, wall time) of a training run's checkpoint, each checked for type and range.

    Raises:
      CheckpointMismatch: a field is missing, of the wrong type, out of range,
        or the history disagrees with the step.
    """
    step = meta.get("step")
    if type(step) is not int or not 0 <= step <= MAX_STEP:
        raise _refuse(path, f"its step is {step!r}, not a whole number from 0 to {MAX_STEP:,}")
    history = meta.get("history")
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise _refuse(path, "its history is not a list of records")
    last = 0
    for row in history:
        s = row.get("step")
        if type(s) is not int or not last <= s <= step:
            raise _refuse(path, f"its history has a record at step {s!r}, out of order or past the "
                                f"checkpoint's step {step}")
        last = s
    wall = meta.get("wall_time")
    if type(wall) not in (int, float) or not math.isfinite(wall) or wall < 0:
        raise _refuse(path, f"its wall time is {wall!r}")
    seed = meta.get("seed")
    if seed is not None and type(seed) is not int:
        raise _refuse(path, f"its seed is {seed!r}")
    return step, [dict(r) for r in history], float(wall)


def differences(have: Any, want: Any, prefix: str = "") -> list[str]:
    """What differs between a stored configuration and the one asked for, one line each.

    >>> differences({"lr": 0.001, "task": {"p": 97}}, {"lr": 0.01, "task": {"p": 97}})
    ['lr: 0.001 in the checkpoint, 0.01 now']
    """
    if isinstance(have, dict) and isinstance(want, dict):
        out = []
        for key in sorted(set(have) | set(want), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in have:
                out.append(f"{name}: not recorded in the checkpoint, {json.dumps(want[key])} now")
            elif key not in want:
                out.append(f"{name}: {json.dumps(have[key])} in the checkpoint, not set now")
            else:
                out += differences(have[key], want[key], name)
        return out
    if have == want and type(have) is type(want):
        return []
    return [f"{prefix or 'settings'}: {json.dumps(have)} in the checkpoint, {json.dumps(want)} now"]
