"""Files on the command line: every unusable input or output is one message and exit 2, nothing is half-written,
output follows the umask, `check` takes folders."""
from __future__ import annotations

import errno
import os
import re
import signal
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from diagrammar.cli import _files, main
from diagrammar.errors import UnusableFile

TINY = """axis p = 7, arg = 2, hidden = 8

circuit Tiny(a: int[], b: int[]) -> [p]:
    x = stack(onehot(a, p), onehot(b, p), along = arg)
    h = relu(linear(x, (arg, p) -> hidden))
    return linear(h, hidden -> p)
"""
BAD = "axis d = 4\ncircuit F(x: [d]) -> [d]:\n    return relu(y)\n"


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.circuit"
    path.write_text(TINY)
    return str(path)


@contextmanager
def read_only(folder: Path):
    """``folder`` made unwritable, even for root (which ignores mode bits: `chattr +i` then)."""
    folder.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root where chattr +i is unavailable: cannot make a read-only folder")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@contextmanager
def no_hang(seconds: int = 20):
    """Fail instead of hanging (a FIFO used to block a command forever)."""
    def alarm(*_):
        raise TimeoutError("the command blocked")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ----------------------------------------------------------------------------- render -o


def test_render_into_a_missing_folder(tiny, tmp_path, capsys):
    assert main(["render", tiny, "-o", str(tmp_path / "nope" / "fig.svg")]) == 2
    err = capsys.readouterr().err
    assert f"cannot write -o {tmp_path}/nope/fig.svg: the folder {tmp_path}/nope does not exist" in err


def test_render_into_a_path_through_a_file(tiny, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["render", tiny, "-o", str(tmp_path / "afile" / "fig.svg")]) == 2
    assert f"{tmp_path}/afile is a file, not a folder" in capsys.readouterr().err


def test_render_onto_a_folder(tiny, tmp_path, capsys):
    (tmp_path / "fig.svg").mkdir()
    assert main(["render", tiny, "-o", str(tmp_path / "fig.svg")]) == 2
    assert f"cannot write -o {tmp_path}/fig.svg: it is a folder, not a regular file" in capsys.readouterr().err


def test_render_onto_a_fifo_neither_blocks_nor_replaces_it(tiny, tmp_path, capsys):
    fifo = tmp_path / "fig.svg"
    os.mkfifo(fifo)
    with no_hang():
        assert main(["render", tiny, "-o", str(fifo)]) == 2
    assert "it is a FIFO (named pipe), not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_render_into_a_read_only_folder(tiny, tmp_path, capsys):
    with read_only(tmp_path / "ro") as ro:
        assert main(["render", tiny, "-o", str(ro / "fig.svg")]) == 2
        assert list(ro.iterdir()) == []
    err = capsys.readouterr().err
    assert f"cannot write -o {ro}/fig.svg: the folder {ro} is not writable (permission denied)" in err


def test_render_on_a_full_disk_leaves_the_old_figure(tiny, tmp_path, monkeypatch, capsys):
    fig = tmp_path / "fig.svg"
    fig.write_text("old figure")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    assert main(["render", tiny, "-o", str(fig)]) == 2
    assert f"cannot write {fig}: no space left on the device" in capsys.readouterr().err
    assert fig.read_text() == "old figure" and leftovers(tmp_path) == []


def test_render_reads_only_regular_files(tmp_path, capsys):
    assert main(["render", str(tmp_path / "missing.circuit")]) == 2
    assert f"no such file: {tmp_path}/missing.circuit" in capsys.readouterr().err
    assert main(["render", str(tmp_path)]) == 2
    assert f"{tmp_path} is a folder, not a file" in capsys.readouterr().err
    os.mkfifo(tmp_path / "pipe.circuit")
    with no_hang():
        assert main(["stats", str(tmp_path / "pipe.circuit")]) == 2
    assert "is a FIFO (named pipe), not a file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- check FOLDER


def test_check_a_folder_checks_every_circuit_below_it(tmp_path, capsys):
    (tmp_path / "a.circuit").write_text(TINY)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.circuit").write_text(BAD)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.circuit").write_text(BAD)
    (tmp_path / "notes.txt").write_text("not a circuit")
    assert main(["check", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert f"{tmp_path}/a.circuit: Tiny(" in out
    assert f"{tmp_path}/sub/b.circuit:3:17: error: unknown name 'y'" in err
    assert ".hidden" not in out + err
    (tmp_path / "sub" / "b.circuit").unlink()
    assert main(["check", str(tmp_path)]) == 0


def test_check_file_errors_are_exit_2_and_the_rest_is_still_checked(tmp_path, tiny, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["check", str(tmp_path / "empty"), str(tmp_path / "gone.circuit"), tiny]) == 2
    out, err = capsys.readouterr()
    assert f"diagrammar check: error: {tmp_path}/empty is a folder with no .circuit file in it" in err
    assert f"diagrammar check: error: no such file or folder: {tmp_path}/gone.circuit" in err
    assert "Tiny(" in out  # the good file was checked all the same
    assert main(["check", "--json", str(tmp_path / "gone.circuit")]) == 2
    assert '"code": "UnusableFile"' in capsys.readouterr().out


# ----------------------------------------------------------------------------- gallery and stats


def test_gallery_out_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["gallery", "--out", str(tmp_path / "afile")]) == 2
    assert f"--out {tmp_path}/afile is a file, not a folder" in capsys.readouterr().err
    assert main(["gallery", "--circuits", str(tmp_path / "none"), "--out", str(tmp_path / "g")]) == 2
    assert f"--circuits {tmp_path}/none: no such folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the shared writer


def test_written_files_follow_the_umask_and_keep_a_replaced_files_mode(tmp_path):
    old = os.umask(0o027)
    try:
        new = _files.write_atomic(tmp_path / "new.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(new.stat().st_mode) == 0o640  # mkstemp used to make every file 0600
    kept = tmp_path / "kept.txt"
    kept.write_text("old")
    kept.chmod(0o604)
    _files.write_atomic(kept, b"new")
    assert kept.read_text() == "new" and stat.S_IMODE(kept.stat().st_mode) == 0o604


def test_append_is_all_or_nothing(tmp_path, monkeypatch):
    log = tmp_path / "metrics.jsonl"
    _files.append_text(log, '{"step": 0}\n')
    real = os.write

    def half_then_full(fd, data):
        if len(data) > 4:
            real(fd, bytes(data[:4]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(UnusableFile, match="no space left on the device"):
        _files.append_text(log, '{"step": 1}\n')
    monkeypatch.undo()
    assert log.read_text() == '{"step": 0}\n'  # not half a line


def test_temporaries_of_killed_writers_are_removed(tmp_path):
    dead = tmp_path / ".fig.svg.999999999-0123abcd.tmp"  # no such pid
    alive = tmp_path / f".fig.svg.{os.getpid()}-0123abcd.tmp"
    legacy = tmp_path / ".checkpoint.npz.k3j_x9q2.tmp"  # mkstemp's, no pid: only a folder's owner removes it
    mine = tmp_path / "notes.tmp"
    for p in (dead, alive, legacy, mine):
        p.write_text("x")
    assert _files.remove_temporaries(tmp_path) == [dead]
    assert sorted(p.name for p in _files.remove_temporaries(tmp_path, any_writer=True)) == sorted(
        [alive.name, legacy.name])
    assert [p.name for p in tmp_path.iterdir()] == ["notes.tmp"]


def test_temporary_names_carry_the_pid():
    tmp, fd = _files._temporary(Path("/tmp") / "x.svg")
    os.close(fd)
    os.unlink(tmp)
    assert re.fullmatch(rf"\.x\.svg\.{os.getpid()}-[0-9a-f]{{8}}\.tmp", tmp.name)
