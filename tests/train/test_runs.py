"""Training runs on the command line: one run per folder, settings compared on resume, SIGTERM and Ctrl-C save,
file errors are messages, and nothing a run writes is private or half-written."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diagrammar.cli import main
from diagrammar.train import checkpoint as ckpt
from diagrammar.train import loop, rundir


def train(tiny, out, *more, steps=20):
    return main(["train", tiny, "--circuit", "Tiny", "--steps", str(steps), "--steps-per-call", "10",
                 "--eval-every", "10", "--no-progress", "--no-stop", "--out", str(out), *more])


def steps_logged(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- one run per folder


def test_a_second_run_into_the_same_folder_is_refused_with_the_first_ones_pid(tiny, tmp_path, capsys):
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    fd = os.open(out / rundir.LOCK_NAME, os.O_RDWR | os.O_CREAT)  # as a run in another process holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242\n")
        assert train(tiny, out) == 2
        err = capsys.readouterr().err
        assert f"diagrammar train: error: --out {out} is in use by another training run (pid 4242)" in err
        assert sorted(os.listdir(out)) == [rundir.LOCK_NAME]  # the refused run wrote nothing
    finally:
        os.close(fd)  # the lock goes with its holder
    assert train(tiny, out) == 0
    assert steps_logged(out) == [0, 10, 20]


def test_the_lock_is_nested_within_a_process_and_freed_on_exit(tmp_path):
    with rundir.claim(tmp_path / "a") as a:
        with rundir.claim(a):  # the CLI holds the folder and the training loop claims it again
            pass
        assert (a / rundir.LOCK_NAME).exists()
    assert not (tmp_path / "a").exists()  # created, left empty: removed again


# ----------------------------------------------------------------------------- settings on resume


def test_changed_optimiser_settings_are_refused_on_resume(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(tiny, out) == 0
    capsys.readouterr()
    assert train(tiny, out, "--lr", "0.01", "--weight-decay", "0.5", steps=30) == 2
    err = capsys.readouterr().err
    assert f"{out}/checkpoint.npz belongs to a run with other settings: " in err
    assert "optimizer.learning_rate: 0.001 in the checkpoint, 0.01 now" in err
    assert "optimizer.weight_decay: 1.0 in the checkpoint, 0.5 now" in err
    assert "--force" in err and "--fresh" in err
    assert train(tiny, out, "--seed", "1", steps=30) == 2
    assert "seed: 0 in the checkpoint, 1 now" in capsys.readouterr().err
    assert train(tiny, out, "--batch-size", "8", steps=30) == 2
    assert "batch_size: null in the checkpoint, 8 now" in capsys.readouterr().err
    assert steps_logged(out) == [0, 10, 20]  # every refused run left the run as it was


@pytest.mark.slow
def test_force_continues_with_the_new_settings_and_fresh_starts_over(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(tiny, out) == 0
    # --steps, --eval-every and the like may change: the same run goes on
    assert train(tiny, out, "--eval-every", "5", steps=30) == 0
    assert steps_logged(out) == [0, 10, 20, 25, 30]
    capsys.readouterr()
    assert train(tiny, out, "--lr", "0.01", "--force", steps=40) == 0
    text = capsys.readouterr().out
    assert "resumed from step 30" in text
    assert "continued with changed settings (--force): optimizer.learning_rate: 0.001 in the checkpoint" in text
    assert train(tiny, out, "--lr", "0.01", steps=50) == 0  # the forced settings are the run's settings now
    assert train(tiny, out, "--fresh", steps=10) == 0
    assert steps_logged(out) == [0, 10]


# ----------------------------------------------------------------------------- stopping


def _stop_at(monkeypatch, step: int, how):
    real = loop._show

    def show(bar, post, row, loss, aux):
        real(bar, post, row, loss, aux)
        if row is not None and row["step"] == step:
            how()

    monkeypatch.setattr(loop, "_show", show)


def test_sigterm_saves_like_ctrl_c(tiny, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _stop_at(monkeypatch, 30, lambda: os.kill(os.getpid(), signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    assert train(tiny, out, steps=1000) == 143
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the command's only
    err = capsys.readouterr().err
    assert f"diagrammar train: terminated (SIGTERM); steps up to 30 are saved in {out}; run the same command" in err
    assert ckpt.load_meta(out / "checkpoint.npz")["step"] == 30
    monkeypatch.undo()
    assert train(tiny, out, steps=40) == 0
    assert "resumed from step 30" in capsys.readouterr().out and steps_logged(out) == [0, 10, 20, 30, 40]


def test_ctrl_c_saves_and_exits_130(tiny, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"

    def interrupt():
        raise KeyboardInterrupt

    _stop_at(monkeypatch, 20, interrupt)
    assert train(tiny, out, steps=1000) == 130
    assert f"interrupted; steps up to 20 are saved in {out}" in capsys.readouterr().err
    assert ckpt.load_meta(out / "checkpoint.npz")["step"] == 20


@pytest.mark.slow
def test_two_processes_one_folder_then_sigterm(tiny, tmp_path, capsys):
    """Real processes: the second run is refused while the first holds the folder; SIGTERM saves; no row twice."""
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "diagrammar", "train", tiny, "--circuit", "Tiny", "--steps",
                              "100000000", "--steps-per-call", "10", "--eval-every", "10", "--no-progress",
                              "--no-stop", "--out", str(out)], stderr=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out.joinpath("metrics.jsonl").exists() and len(steps_logged(out)) >= 3):
            time.sleep(0.2)
        assert len(steps_logged(out)) >= 3, "the first run did not start"
        assert train(tiny, out) == 2
        assert f"is in use by another training run (pid {first.pid})" in capsys.readouterr().err
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 143, err
    assert "terminated (SIGTERM); steps up to" in err and "Traceback" not in err
    saved = ckpt.load_meta(out / "checkpoint.npz")["step"]
    logged = steps_logged(out)
    assert len(logged) == len(set(logged)) and saved >= logged[-1] > 0  # saved: the last completed chunk
    assert train(tiny, out, steps=saved + 10) == 0
    assert steps_logged(out) == logged + [saved + 10]


# ----------------------------------------------------------------------------- files of a run


def test_out_that_is_a_file(tiny, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert train(tiny, tmp_path / "afile") == 2
    assert f"diagrammar train: error: --out {tmp_path}/afile is a file, not a folder" in capsys.readouterr().err


def test_out_in_a_read_only_folder(tiny, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0:
        pytest.skip("running as root where chattr +i is unavailable: cannot make a read-only folder")
    try:
        assert train(tiny, ro) == 2
        assert f"diagrammar train: error: cannot write into --out {ro}: permission denied" in capsys.readouterr().err
        assert train(tiny, ro / "run") == 2
        assert f"cannot create the folder --out {ro}/run: permission denied" in capsys.readouterr().err
        assert list(ro.iterdir()) == []
    finally:
        if os.geteuid() != 0:
            ro.chmod(0o755)
        else:
            subprocess.run(["chattr", "-i", str(ro)], check=True)


def test_checkpoint_that_is_a_folder_or_a_fifo(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.npz").mkdir()
    assert train(tiny, out) == 2
    assert f"{out}/checkpoint.npz is a folder, not a file" in capsys.readouterr().err
    assert train(tiny, out, "--fresh") == 2  # and --fresh does not delete a folder
    assert f"{out}/checkpoint.npz is a folder, not a checkpoint file" in capsys.readouterr().err
    (out / "checkpoint.npz").rmdir()
    os.mkfifo(out / "checkpoint.npz")
    signal.alarm(60)  # a FIFO used to block forever
    try:
        assert train(tiny, out) == 2
    finally:
        signal.alarm(0)
    assert f"{out}/checkpoint.npz is a FIFO (named pipe), not a file" in capsys.readouterr().err


def test_a_full_disk_during_training_keeps_the_last_checkpoint(tiny, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert train(tiny, out) == 0
    before = (out / "checkpoint.npz").read_bytes()
    real = os.fsync

    def full_for_checkpoints(fd):
        if ".checkpoint.npz." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(28, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", full_for_checkpoints)
    assert train(tiny, out, steps=40) == 2
    err = capsys.readouterr().err
    assert f"diagrammar train: error: cannot write {out}/checkpoint.npz: no space left on the device" in err
    assert "Traceback" not in err
    monkeypatch.undo()
    assert (out / "checkpoint.npz").read_bytes() == before
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    assert all(line.endswith("}") for line in (out / "metrics.jsonl").read_text().splitlines())
    assert train(tiny, out, steps=40) == 0  # and the run goes on from its last checkpoint
    assert steps_logged(out) == [0, 10, 20, 30, 40]


def test_files_follow_the_umask_and_leftover_temporaries_are_removed(tiny, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    leftover = [out / ".checkpoint.npz.999999999-0123abcd.tmp", out / ".metrics.jsonl.a8f_k2lq.tmp"]
    for p in leftover:
        p.write_bytes(b"half a file")
    old = os.umask(0o022)
    try:
        assert train(tiny, out) == 0
    finally:
        os.umask(old)
    assert not any(p.exists() for p in leftover)
    for name in ("checkpoint.npz", "metrics.jsonl", "curves.png", "fourier.png"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name  # was 0600
