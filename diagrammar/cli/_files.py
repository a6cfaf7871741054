"""Command line: the one place where diagrammar reads its input files and writes its output files.

Every file a command writes (figures, the gallery, a training run's
checkpoint, metrics and plots) goes through :func:`write_atomic`: the bytes go
to a temporary file beside the target, are flushed and fsynced, and the
temporary is renamed over the target. The target is therefore always the old
complete file or the new complete one, never half of one, whatever happens
(a full disk, Ctrl-C, SIGTERM, a crash).

Invariants:
  * a temporary is named ``.NAME.PID-RANDOM.tmp``, next to NAME, so that a
    leftover of a killed writer can be recognised (:func:`remove_temporaries`);
  * it is created with mode 0666 and the user's umask, as ``open()`` would
    (``mkstemp`` made every file 0600); a file that is replaced keeps its mode;
  * every ``OSError`` leaves here as :class:`~diagrammar.errors.UnusableFile`,
    one sentence naming the file and what went wrong, with no traceback;
  * a folder, FIFO, socket or device where a file should be is refused before
    anything is opened for writing, and input files are opened without
    blocking, so a FIFO never hangs a command.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from pathlib import Path

from ..errors import UnusableFile

__all__ = ["write_atomic", "append_text", "open_regular", "check_output", "output_folder", "input_file",
           "remove_temporaries", "describe", "unusable"]

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-[0-9a-f]{8}|[A-Za-z0-9_]{8})\.tmp$")  # ours, and mkstemp's of old

# errno -> how a user reads it; the rest fall back to the system's own words.
_REASONS = {
    errno.ENOENT: "no such file or folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file would be too large",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ELOOP: "too many symbolic links",
    errno.ENXIO: "it is a FIFO or device with nothing on the other end",
}


def describe(mode: int) -> str:
    """What kind of file a ``st_mode`` is, as a noun phrase ("a folder", "a FIFO", ...)."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "a file"


def unusable(e: OSError, path: str | os.PathLike, action: str = "write") -> UnusableFile:
    """``e`` as one sentence: "cannot write out/fig.svg: permission denied"."""
    if isinstance(e, UnusableFile):
        return e
    reason = _REASONS.get(e.errno) if e.errno is not None else None
    return UnusableFile(f"cannot {action} {path}: {reason or e.strerror or e}")


def _first_missing_or_file(path: Path) -> str:
    """Why the folders above ``path`` cannot hold it: the first that is missing or is not a folder."""
    for parent in reversed(path.parents):
        if str(parent) in ("", "."):
            continue
        try:
            st = os.stat(parent)
        except FileNotFoundError:
            return f"the folder {parent} does not exist"
        except OSError as e:
            return f"{parent}: {_REASONS.get(e.errno, e.strerror)}"
        if not stat.S_ISDIR(st.st_mode):
            return f"{parent} is {describe(st.st_mode)}, not a folder"
    return "its folder cannot be used"


def check_output(path: str | os.PathLike, *, what: str = "") -> Path:
    """Refuse, before any work is done, a path that cannot become a regular file.

    Args:
      path: where a file is about to be written.
      what: how the message names it (e.g. "-o"); default the path alone.

    Returns:
      ``path`` as a Path.

    Raises:
      UnusableFile: its folder is missing, is a file or is not writable; or
        ``path`` itself is a folder, FIFO, socket or device.
    """
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    parent = path.parent
    try:
        st = os.stat(parent)
    except OSError:
        raise UnusableFile(f"cannot write {name}: {_first_missing_or_file(path)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UnusableFile(f"cannot write {name}: {parent} is {describe(st.st_mode)}, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UnusableFile(f"cannot write {name}: the folder {parent} is not writable (permission denied)")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path
    except OSError as e:
        raise unusable(e, name) from None
    if not stat.S_ISREG(st.st_mode):
        raise UnusableFile(f"cannot write {name}: it is {describe(st.st_mode)}, not a regular file")
    return path


def output_folder(path: str | os.PathLike, *, what: str = "", create: bool = True) -> Path:
    """A folder to write into, created (with its parents) if missing.

    Raises:
      UnusableFile: ``path`` is a file (or FIFO, ...), or it cannot be created or written.
    """
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not create:
            raise UnusableFile(f"{name}: no such folder") from None
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise UnusableFile(f"cannot create the folder {name}: {_first_missing_or_file(path / 'x')}") from None
        except OSError as e:
            if e.errno == errno.ENOTDIR:
                raise UnusableFile(f"cannot create the folder {name}: {_first_missing_or_file(path)}") from None
            raise unusable(e, f"the folder {name}", "create") from None
        return path
    except OSError as e:
        raise unusable(e, name, "use") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UnusableFile(f"{name} is {describe(st.st_mode)}, not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UnusableFile(f"cannot write into {name}: permission denied")
    return path


def input_file(path: str | os.PathLike, *, what: str = "") -> Path:
    """A file to read: it exists, is a regular file and is readable.

    Raises:
      UnusableFile: it is missing, unreadable, or a folder, FIFO, socket or device.
    """
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UnusableFile(f"no such file: {name}") from None
    except OSError as e:
        raise unusable(e, name, "read") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnusableFile(f"{name} is {describe(st.st_mode)}, not a file")
    if not os.access(path, os.R_OK):
        raise UnusableFile(f"cannot read {name}: permission denied")
    return path


def open_regular(path: str | os.PathLike):
    """Open ``path`` for reading in binary mode, refusing anything but a regular file.

    The file is opened non-blocking and checked with ``fstat`` on the open
    descriptor, so a FIFO is refused at once instead of waiting for a writer,
    and nothing can swap the file between the check and the read.

    Raises:
      UnusableFile: missing, unreadable, or not a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise unusable(e, path, "read") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnusableFile(f"{path} is {describe(st.st_mode)}, not a file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _temporary(path: Path) -> tuple[Path, int]:
    """Create a fresh temporary beside ``path`` (mode 0666 less the umask); its name and descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_atomic(path: str | os.PathLike, data: bytes | str, *, make_folders: bool = False) -> Path:
    """Write ``data`` to ``path`` so that no reader ever sees a partial file.

    Args:
      path: the file to create or replace.
      data: bytes, or text (written as UTF-8).
      make_folders: create missing parent folders instead of refusing.

    Returns:
      ``path`` as a Path.

    Raises:
      UnusableFile: the file cannot be written (see :func:`check_output`), or
        writing failed (full disk, quota, I/O error); the target is then as it was.

    Example:
      >>> import tempfile, os
      >>> folder = tempfile.mkdtemp()
      >>> write_atomic(os.path.join(folder, "a.txt"), "hello").read_text()
      'hello'
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if make_folders:
        output_folder(path.parent)
    check_output(path)
    try:
        old_mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        old_mode = None
    try:
        tmp, fd = _temporary(path)
    except OSError as e:
        raise unusable(e, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if old_mode is not None:
                os.fchmod(f.fileno(), old_mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        _remove(tmp)
        if isinstance(e, OSError):
            raise unusable(e, path) from None
        raise
    _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    """Make a rename durable (POSIX); harmless where folders cannot be opened."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` to a log file, all of it or none of it.

    A write that fails part-way (full disk) is cut back to the old length, so a
    log never ends in half a line.

    Raises:
      UnusableFile: the log cannot be written; it is left as it was.
    """
    data = text.encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0),
                     0o666)
    except OSError as e:
        raise unusable(e, path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnusableFile(f"cannot write {path}: it is {describe(st.st_mode)}, not a regular file")
        size = st.st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException as e:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            if isinstance(e, OSError):
                raise unusable(e, path) from None
            raise
    finally:
        os.close(fd)


def remove_temporaries(folder: str | os.PathLike, *, any_writer: bool = False) -> list[Path]:
    """Delete temporaries left in ``folder`` by writers that were killed.

    Args:
      folder: where to look (not below it).
      any_writer: also delete those of live processes; only safe when this
        process owns the folder (a training run holding its lock).

    Returns:
      The files removed.
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TEMP.match(name)
        if m is None:
            continue
        pid = m.group("pid")
        if not any_writer and pid is not None and _alive(int(pid)):
            continue
        if not any_writer and pid is None:
            continue  # an old-style name without a pid: only its folder's owner may judge it
        p = Path(folder) / name
        try:
            if stat.S_ISREG(os.lstat(p).st_mode):
                os.unlink(p)
                removed.append(p)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
