"""Train stage: atomic checkpoints of a training run (weights, optimiser, step, history), checked before loading.

A checkpoint is one ``.npz`` file holding every leaf of a pytree (model state
and optimiser state) plus a JSON metadata record. It is written through
``diagrammar.cli._files.write_atomic`` (a temporary beside it, fsynced, then
renamed), so the file named ``checkpoint.npz`` is always either the previous
complete checkpoint or the new complete one, never a partial write.

Sharded leaves are stored per shard. A ``jax.Array`` that is not fully
replicated (a weight split over a mesh axis) is written as its distinct
addressable shards, one entry ``leaf_NNNNN_KKKKK`` per distinct
``shard.index`` (replicas are written once), and the record's
``leaf_pieces`` maps the leaf to its whole shape and each piece's
``[start, stop]`` per dimension; no whole copy of it is ever made. Every other
leaf is one entry ``leaf_NNNNN`` holding the whole array, as in checkpoints
written before pieces existed, which still load. A leaf restored into a
template with a ``NamedSharding`` is built by ``jax.make_array_from_callback``:
each device's slice is cut from the stored pieces that overlap it, and only
those are read (each at most once per leaf). So a run resumes on another mesh
shape (``data=4,model=2`` to ``data=2,model=4``, or to one device and back)
without any device holding a whole sharded weight.

Several processes: each process sees only its addressable shards, and those
are all :func:`save` writes (it never gathers across processes), so the file of
one process of several does not tile a weight split across hosts and
:func:`load` refuses it by name. Giving each process its own file (all would
write the same path today) and loading them together is not built; everything
here is correct for one process holding every device.

Why this format and not orbax-checkpoint. Orbax writes a folder of
tensorstore (zarr/OCDBT) files, asynchronously, and restores through
tensorstore, which takes shapes, dtypes and chunk layout from the folder's own
metadata files. This loader trusts nothing in
the file: leaves are stored by position and checked against the key paths of
a template tree, and every array's header (shape, dtype, byte count) -- and
for a sharded leaf each piece's box, its header and that the pieces tile the
whole exactly once -- is read and compared with the template *before* any
array data is read, so a checkpoint of another model, or a crafted one whose
header claims terabytes, is refused by name with nothing allocated. Orbax
cannot give that check-before-read guarantee without reimplementing its
reader, nor one file that is atomically either the old or the new checkpoint.
What orbax adds (parallel writes from many hosts, asynchronous saves of very
large states) is not needed by a single process. The run record (step,
history, wall time) is checked for types and ranges too.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
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
PIECES = "leaf_pieces"          # the record's map: leaf number -> {"shape": whole shape, "boxes": [[[start, stop], ...]]}
MAX_PIECES = 2 ** 16            # distinct shards of one leaf (one per device at most)
MAX_GRID = 2 ** 20              # cells of the grid the tiling check lays over one leaf's pieces

# A piece's place in its whole array: (start, stop) per dimension.
Box = tuple[tuple[int, int], ...]


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
    A ``jax.Array`` that is not fully replicated is stored as its distinct
    addressable shards, each copied to the host on its own; every other leaf
    whole, as ``np.asarray(leaf)``.

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
    pieces: dict[str, dict[str, Any]] = {}
    for i, leaf in enumerate(leaves):
        if _is_key(leaf):
            leaf = jax.random.key_data(leaf)
        shards = _distinct_shards(leaf)
        if shards is None:
            arrays[_entry(i)] = np.asarray(leaf)
            continue
        for k, (_, data) in enumerate(shards):
            arrays[_entry(i, k)] = data
        pieces[str(i)] = {"shape": list(leaf.shape), "boxes": [[list(ab) for ab in box] for box, _ in shards]}
    record = dict(meta, leaf_paths=_leaf_paths(tree), n_leaves=len(leaves))
    record.pop(PIECES, None)
    if pieces:  # absent when nothing is sharded: such a file is what it was before pieces existed
        record[PIECES] = pieces
    arrays[_META] = np.frombuffer(json.dumps(record).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _write_atomic(path, buf.getvalue())
    return path


def _entry(leaf: int, piece: int | None = None) -> str:
    """The archive member (without ``.npy``) of a whole leaf, or of one piece of a sharded leaf."""
    return f"leaf_{leaf:05d}" if piece is None else f"leaf_{leaf:05d}_{piece:05d}"


def _box(index: tuple[Any, ...], shape: tuple[int, ...]) -> Box:
    """A shard's ``index`` (a tuple of slices, ``None`` ends for whole dimensions) as (start, stop) pairs."""
    index = tuple(index) + (slice(None),) * (len(shape) - len(index))
    box = []
    for sl, n in zip(index, shape, strict=True):
        start, stop, step = sl.indices(n)
        if step != 1:
            raise ValueError(f"a shard with a strided index {index}")
        box.append((start, max(start, stop)))
    return tuple(box)


def _distinct_shards(leaf: Any) -> list[tuple[Box, np.ndarray]] | None:
    """The distinct shards this process holds of a sharded ``jax.Array``, by box; None to store it whole.

    Only addressable shards are read, each copied to the host on its own: the whole array is never formed.
    """
    if not isinstance(leaf, jax.Array) or leaf.is_fully_replicated:
        return None
    first: dict[Box, Any] = {}
    for shard in leaf.addressable_shards:
        first.setdefault(_box(shard.index, leaf.shape), shard.data)  # replicas share an index: keep one
    return [(box, np.asarray(first[box])) for box in sorted(first)]


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


RESUME_HINT = "delete it, start afresh (--fresh) or give another output folder"  # what a resumed run can do


def _refuse(path: Any, why: str) -> CheckpointMismatch:
    return CheckpointMismatch(f"{path}: not a readable checkpoint ({why}); {RESUME_HINT}")


class _Reader:
    """Array headers and data of an ``.npz`` file, read one member at a time and only as far as checked."""

    def __init__(self, path: str | os.PathLike, zf: zipfile.ZipFile):
        self.path, self.zf = path, zf
        self.names = set(zf.namelist())
        self.pieces: dict[int, tuple[tuple[int, ...], list[Box]]] = {}  # filled by meta(), checked to tile

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
        self.pieces = _pieces_of(self.path, meta.get(PIECES, {}), n, len(self.names))
        want = {_META + ".npy"}
        for i in range(n):
            if i in self.pieces:
                want.update(_entry(i, k) + ".npy" for k in range(len(self.pieces[i][1])))
            else:
                want.add(_entry(i) + ".npy")
        if self.names != want:
            extra, missing = sorted(self.names - want)[:3], sorted(want - self.names)[:3]
            raise _refuse(self.path, f"its entries do not match its record (unexpected: {extra or 'none'}; "
                                     f"missing: {missing or 'none'})")
        return meta


_LEAF_NUMBER = re.compile(r"0|[1-9][0-9]{0,6}")


def _naturals(x: Any, length: int | None = None) -> bool:
    return (isinstance(x, list) and (length is None or len(x) == length)
            and all(type(v) is int and 0 <= v <= 2 ** 62 for v in x))


def _pieces_of(path: Any, raw: Any, n: int, entries: int) -> dict[int, tuple[tuple[int, ...], list[Box]]]:
    """The record's ``leaf_pieces`` checked: leaf number -> (whole shape, boxes), the boxes tiling the shape."""
    if not isinstance(raw, dict):
        raise _refuse(path, f"its {PIECES} is not a JSON object")
    if sum(len(v.get("boxes", ())) if isinstance(v, dict) and isinstance(v.get("boxes"), list) else 0
           for v in raw.values()) > entries:
        raise _refuse(path, f"its {PIECES} lists more pieces than it has entries")
    out = {}
    for key, entry in raw.items():
        if not _LEAF_NUMBER.fullmatch(key) or int(key) >= n:
            raise _refuse(path, f"its {PIECES} names leaf {key!r}, not one of its {n} leaves")
        shape = entry.get("shape") if isinstance(entry, dict) else None
        boxes = entry.get("boxes") if isinstance(entry, dict) else None
        if not _naturals(shape) or len(shape) > 64:
            raise _refuse(path, f"the pieces of leaf {key} have no whole shape (it is {shape!r})")
        if not isinstance(boxes, list) or not 1 <= len(boxes) <= MAX_PIECES:
            raise _refuse(path, f"leaf {key} is not split into 1 to {MAX_PIECES:,} pieces")
        parsed = []
        for box in boxes:
            if not (isinstance(box, list) and len(box) == len(shape) and all(_naturals(ab, 2) for ab in box)):
                raise _refuse(path, f"leaf {key} has a piece at {box!r}, not [start, stop] for each of its "
                                    f"{len(shape)} dimensions")
            parsed.append(tuple((a, b) for a, b in box))
        why = _untiled(tuple(shape), parsed)
        if why:
            raise _refuse(path, f"the pieces of leaf {key} do not tile its shape {shape}: {why}")
        out[int(key)] = (tuple(shape), parsed)
    return out


def _untiled(shape: tuple[int, ...], boxes: list[Box]) -> str | None:
    """Why ``boxes`` do not cover ``shape`` exactly once, or None when they tile it.

    The boxes' starts and stops cut each dimension; every cell of that grid must lie under exactly one box.
    Pieces of a sharding form a grid of as many cells as pieces, so ``MAX_GRID`` cells only refuse crafted ones.

    >>> _untiled((4, 6), [((0, 2), (0, 6)), ((2, 4), (0, 6))]) is None
    True
    >>> _untiled((4, 6), [((0, 2), (0, 6)), ((1, 4), (0, 6))])
    'pieces overlap at [1:2, 0:6]'
    >>> _untiled((4, 6), [((0, 2), (0, 6))])
    'nothing covers [2:4, 0:6]'
    """
    for box in boxes:
        if any(not a <= b <= n for (a, b), n in zip(box, shape, strict=True)):
            return f"a piece at {_show(box)} lies outside it"
    cuts = [sorted({0, n} | {a for box in boxes for a in box[d]}) for d, n in enumerate(shape)]
    if math.prod(len(c) - 1 for c in cuts) > MAX_GRID:
        return f"the pieces cut it into more than {MAX_GRID:,} cells"
    cover = np.zeros([len(c) - 1 for c in cuts], np.int32)
    for box in boxes:
        cover[tuple(slice(bisect.bisect_left(c, a), bisect.bisect_left(c, b)) for (a, b), c in zip(box, cuts))] += 1
    for count, what in ((cover > 1, "pieces overlap at"), (cover == 0, "nothing covers")):
        if count.any():
            cell = np.argwhere(count)[0]
            return f"{what} {_show(tuple((c[j], c[j + 1]) for c, j in zip(cuts, cell)))}"
    return None


def _show(box: Box) -> str:
    return "[" + ", ".join(f"{a}:{b}" for a, b in box) + "]"


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


class _Stored:
    """One leaf as the file holds it: a whole entry, or pieces cut and joined into whatever box is asked for.

    Built only after every header of the leaf has been checked; each piece is read at most once (the
    pieces a device's slice overlaps, when it first asks) and checked for finite values when read.
    """

    def __init__(self, r: _Reader, name: str, i: int, dtype: np.dtype):
        self.r, self.name, self.i, self.dtype = r, name, i, dtype
        self.shape, self.boxes = r.pieces.get(i, (None, None))
        self.read_pieces: dict[int, np.ndarray] = {}

    def _checked(self, entry: str, shape: tuple[int, ...]) -> np.ndarray:
        got = self.r.array(entry)
        if got.shape != shape or got.dtype != self.dtype:  # the headers were checked; the file must not change
            raise _refuse(self.r.path, f"entry {entry} changed while it was read")
        if np.issubdtype(got.dtype, np.inexact) and not np.all(np.isfinite(got)):
            raise _refuse(self.r.path, f"{self.name} holds NaN or infinite values")
        return got

    def whole(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.boxes is None:
            return self._checked(_entry(self.i), shape)
        return self.cut(tuple((0, n) for n in shape))

    def cut(self, want: Box) -> np.ndarray:
        """The ``want`` box of the leaf, from the pieces that overlap it (the pieces tile the leaf)."""
        out = np.empty([b - a for a, b in want], self.dtype)
        if out.size == 0:
            return out
        for k, box in enumerate(self.boxes):
            common = tuple((max(a, c), min(b, d)) for (a, b), (c, d) in zip(box, want, strict=True))
            if any(lo >= hi for lo, hi in common):
                continue
            if k not in self.read_pieces:
                self.read_pieces[k] = self._checked(_entry(self.i, k), tuple(b - a for a, b in box))
            piece = self.read_pieces[k]
            if box == want:
                return piece
            out[tuple(slice(lo - a, hi - a) for (lo, hi), (a, _) in zip(common, want))] = \
                piece[tuple(slice(lo - a, hi - a) for (lo, hi), (a, _) in zip(common, box))]
        return out


def _stored_header(r: _Reader, i: int) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of leaf ``i`` as stored, every one of its entries' headers checked; nothing read."""
    if i not in r.pieces:
        shape, _, dtype, _ = r.header(_entry(i))
        return shape, dtype
    shape, boxes = r.pieces[i]
    dtypes = set()
    for k, box in enumerate(boxes):
        got, _, dtype, _ = r.header(_entry(i, k))
        size = tuple(b - a for a, b in box)
        if got != size:
            raise _refuse(r.path, f"entry {_entry(i, k)} holds {list(got)} but the record places it at "
                                  f"{_show(box)}, {list(size)}")
        dtypes.add(dtype)
    if len(dtypes) != 1:
        raise _refuse(r.path, f"the pieces of leaf {i} hold different dtypes {sorted(map(str, dtypes))}")
    return shape, dtypes.pop()


def load(path: str | os.PathLike, template: Any, *, subset: bool = False,
         here: str = "here") -> tuple[Any, dict[str, Any]]:
    """Load a checkpoint into the structure of ``template``.

    Every array's shape, dtype and byte count (for a sharded leaf: every
    piece's, and that the pieces tile the whole) is checked against the
    template before any data is read; float arrays must hold finite numbers.
    A template leaf with a ``NamedSharding`` is restored onto that sharding,
    whatever mesh wrote the file, each device's slice cut from the stored
    pieces that overlap it.

    Args:
      path: a file written by :func:`save`.
      template: a pytree with the same structure, shapes and dtypes as the
        saved one (e.g. a freshly built model's state); its values are unused,
        its leaves' shardings say where the restored arrays go.
      subset: the template may be part of the saved tree (e.g. the model
        without its optimiser state); its leaves are found by key path.
      here: how messages name the template ("in Decoder with sizes ...").

    Returns:
      ``(tree, meta)``: the restored pytree and the metadata record.

    Raises:
      CheckpointMismatch: the leaves do not match the template by key path,
        shape or dtype, or the file is damaged, crafted or inconsistent.
      UnusableFile: missing, unreadable, or not a regular file.
    """
    leaves, treedef = jax.tree_util.tree_flatten(template)
    paths = _leaf_paths(template)
    with _reader(path) as r:
        meta = r.meta()
        if subset:
            number = {name: i for i, name in enumerate(meta["leaf_paths"])}
            missing = [name for name in paths if name not in number]
            if missing:
                raise CheckpointMismatch(f"{path} was written for a different model (missing from the checkpoint: "
                                         f"{missing[:5]}; needed {here})")
            numbers = [number[name] for name in paths]
        elif paths != meta["leaf_paths"]:
            missing = sorted(set(paths) - set(meta["leaf_paths"]))[:5]
            extra = sorted(set(meta["leaf_paths"]) - set(paths))[:5]
            raise CheckpointMismatch(
                f"{path} was written for a different model or optimiser "
                f"(missing from checkpoint: {missing or 'none'}; unexpected: {extra or 'none'})"
            )
        else:
            numbers = list(range(len(leaves)))
        # every header first: nothing is allocated before all of them match
        stored = []
        for name, want, i in zip(paths, leaves, numbers, strict=True):
            want_shape, want_dtype = _wanted(want)
            shape, dtype = _stored_header(r, i)
            if shape != want_shape or dtype != want_dtype:
                what = "RNG key " if _is_key(want) else ""
                raise CheckpointMismatch(
                    f"{path} was written for a different model: {what}{name} is {dtype}{list(shape)} "
                    f"in the checkpoint but {want_dtype}{list(want_shape)} {here}"
                )
            stored.append(_Stored(r, name, i, dtype))
        restored = []
        for want, leaf in zip(leaves, stored, strict=True):
            shape, _ = _wanted(want)
            sharding = getattr(want, "sharding", None)
            if _is_key(want):
                restored.append(jax.random.wrap_key_data(np.array(leaf.whole(shape)), impl=jax.random.key_impl(want)))
            elif isinstance(sharding, jax.sharding.NamedSharding):  # onto the template's mesh, whatever it was
                if leaf.boxes is None:
                    restored.append(jax.device_put(leaf.whole(shape), sharding))
                else:
                    restored.append(jax.make_array_from_callback(
                        shape, sharding, lambda index, leaf=leaf, shape=shape: leaf.cut(_box(index, shape))))
            else:
                restored.append(jax.numpy.asarray(leaf.whole(shape)))
            leaf.read_pieces.clear()
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
