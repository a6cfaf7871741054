"""Train stage: a run's output folder, owned by one process at a time.

:func:`claim` takes an exclusive ``flock`` on ``.lock`` inside the folder and
writes the owner's pid into it, so a second run into the same folder is
refused at once with the first one's pid (two runs used to write every
metrics row twice and race on the checkpoint). The kernel drops the lock when
its process dies, however it dies, so a killed run never leaves a stale lock.
While it holds the folder, the owner removes the temporaries that killed
writers left there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..cli import _files
from ..errors import RunInProgress

__all__ = ["claim", "LOCK_NAME"]

LOCK_NAME = ".lock"

_held: dict[str, int] = {}  # real path -> descriptor, the folders this process holds (claims nest)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "a process that has not written its pid yet"


@contextmanager
def claim(folder: str | os.PathLike, *, what: str = "--out") -> Iterator[Path]:
    """Hold ``folder`` (created if missing) for this process's run.

    Args:
      folder: the run's output folder.
      what: how messages name it (the option that gave it).

    Yields:
      ``folder`` as a Path. A folder this call created and that holds nothing
      but the lock afterwards (the run failed before writing) is removed again.

    Raises:
      RunInProgress: another process holds the folder; the message gives its pid.
      UnusableFile: the folder is a file, or cannot be created or written.
    """
    folder = Path(folder)
    key = os.path.realpath(folder)
    if key in _held:
        yield folder
        return
    created = not os.path.lexists(folder)
    _files.output_folder(folder, what=what)
    lock = folder / LOCK_NAME
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking, as before
        fcntl = None
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0),
                     0o666)
    except OSError as e:
        raise _files.unusable(e, lock, "create") from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunInProgress(f"{what} {folder} is in use by another training run ({_holder(fd)}); wait for "
                                    "it to finish or stop it, or give another output folder") from None
            except OSError as e:
                raise _files.unusable(e, lock, "lock") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as e:
            raise _files.unusable(e, lock) from None
    except BaseException:
        os.close(fd)
        raise
    _held[key] = fd
    try:
        _files.remove_temporaries(folder, any_writer=True)
        yield folder
    finally:
        del _held[key]
        try:
            os.ftruncate(fd, 0)
            if created and os.listdir(folder) == [LOCK_NAME]:
                os.unlink(lock)  # still locked: nobody can have claimed this empty folder meanwhile
                os.rmdir(folder)
        except OSError:
            pass
        os.close(fd)
