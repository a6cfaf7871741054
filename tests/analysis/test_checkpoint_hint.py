"""A damaged checkpoint given to `render` or `analyse` is refused with advice for a reader, not a resumed run."""
from __future__ import annotations

from diagrammar.cli import main


def test_a_damaged_checkpoint_is_refused_with_a_readers_advice(tmp_path, capsys):
    bad = tmp_path / "checkpoint.npz"
    bad.write_bytes(b"not a zip file")
    assert main(["render", "circuits/modadd_mlp.circuit", "-c", "ModAddMLP", "--overlay", "norms",
                 "--checkpoint", str(bad), "-o", str(tmp_path / "f.svg")]) == 2
    err = capsys.readouterr().err
    assert "not a readable checkpoint" in err and "that `diagrammar train` wrote" in err
    assert "--fresh" not in err and "Traceback" not in err
    assert not (tmp_path / "f.svg").exists()
    assert main(["analyse", "circuits/modadd_mlp.circuit", "--circuit", "ModAddMLP", "--checkpoint", str(bad),
                 "--task", "modadd", "--wires", "h,x", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a readable checkpoint" in err and "--fresh" not in err and "Traceback" not in err
