"""`diagrammar train --mesh ... --shard ...` on 8 simulated devices."""
import json

from diagrammar.cli import main
from diagrammar.train import checkpoint


def test_train_on_a_mesh_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "circuits/grok_transformer.circuit", "--circuit", "GrokTransformer", "--task", "modadd",
            "--steps", "2", "--steps-per-call", "2", "--batch-size", "64", "--no-progress", "--out", str(out),
            "--mesh", "data=4,model=2", "--shard", "heads=model,mlp=model", "--mesh-axes", "explicit"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 2]
    assert checkpoint.load_meta(checkpoint.checkpoint_path(out))["step"] == 2
    # a mapping of an axis the circuit lacks is a span error (exit 1), before anything is trained
    assert main(argv[:-4] + ["--fresh", "--mesh", "data=8", "--shard", "head=data"]) == 1
    err = capsys.readouterr().err
    assert "grok_transformer.circuit:" in err and "no axis 'head' to shard; did you mean 'heads'?" in err
    # a mesh larger than the devices there are is a usage error
    assert main(argv[:-4] + ["--mesh", "data=16"]) == 2
    assert "needs 16 devices; this process has 8" in capsys.readouterr().err
