"""The public surface, and the promise that checking never imports jax."""
import json
import subprocess
import sys

import diagrammar
from diagrammar.cli import main


def test_public_names():
    assert sorted(diagrammar.__all__) == sorted([
        "load", "parse", "Program", "Diagram", "Size", "Span", "CircuitError", "CircuitSyntaxError",
        "ShapeMismatch", "DEFAULT_MAX_WEIGHT_ELEMENTS", "register_operation"])
    for name in diagrammar.__all__:
        assert hasattr(diagrammar, name)


def test_import_and_check_do_not_import_jax():
    code = ("import sys, diagrammar\n"
            "from diagrammar.cli import main\n"
            "assert main(['check', 'circuits/transformer.circuit', 'circuits/grok_transformer.circuit']) == 0\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'flax', 'optax')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_load_and_index():
    program = diagrammar.load("circuits/modadd_mlp.circuit")
    d = program["ModAddMLP"]
    assert [p.name for p in d.inputs] == ["a", "b"]
    assert str(d.output.type) == "[p]"
    try:
        program["ModAddMlp"]
    except KeyError as e:
        assert "ModAddMLP" in str(e)
    else:
        raise AssertionError("unknown circuit must raise KeyError")


def test_instantiate_axis_parameters():
    program = diagrammar.load("circuits/mlp.circuit")
    assert program["MLP"].parameter_count().value == 64 * 256 * 2 + 256 + 64
    assert program.instantiate("MLP", hidden=8).parameter_count().value == 64 * 8 * 2 + 8 + 64


def test_cli_check_exit_codes(capsys, tmp_path):
    assert main(["check", "circuits/modadd_mlp.circuit"]) == 0
    assert "ModAddMLP(a: int[], b: int[]) -> [p]" in capsys.readouterr().out
    bad = tmp_path / "bad.circuit"
    bad.write_text("axis d = 4\ncircuit F(x: [d]) -> [d]:\n    return relu(y)\n")
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3:17: error: unknown name 'y'" in err
    assert main(["check"]) == 2  # missing FILE: a usage error, returned, never a SystemExit
    assert main(["check", str(tmp_path / "missing.circuit")]) == 2  # a file error


def test_cli_check_json(capsys, tmp_path):
    bad = tmp_path / "bad.circuit"
    bad.write_text("axis d = 4\ncircuit F(x: [d]) -> [d]:\n    y = relu(q)\n    return linear(y, e -> d)\n")
    assert main(["check", "--json", str(bad), "circuits/mlp.circuit"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report[0]["ok"] is False
    assert [(d["line"], d["column"], d["code"]) for d in report[0]["diagnostics"]] == [(3, 14, "UnknownName")]
    assert report[1]["ok"] is True and report[1]["circuits"][0]["name"] == "MLP"


def test_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    assert "check" in out and "examples:" in out
