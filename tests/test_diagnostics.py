"""Golden diagnostics: each bad program in tests/diagnostics/ and the exact text a user sees.

Run `pytest tests/test_diagnostics.py --update-golden` after an intended change
and review the diff of the .expected files.
"""
import shlex
from pathlib import Path

import pytest

from diagrammar.cli import main

HERE = Path(__file__).resolve().parent / "diagnostics"
CASES = sorted(p.stem for p in HERE.glob("*.circuit"))


def test_there_are_cases():
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES)
def test_diagnostic_text(case, capsys, update_golden):
    source = Path("tests/diagnostics") / f"{case}.circuit"
    # a first line `# check --size d=64` gives the command more arguments
    first_line = (HERE / f"{case}.circuit").read_text(encoding="utf-8").split("\n", 1)[0]
    extra = shlex.split(first_line[len("# check "):]) if first_line.startswith("# check ") else []
    status = main(["check", str(source), *extra])
    captured = capsys.readouterr()
    assert status == 1, "a bad program must exit 1"
    assert "Traceback" not in captured.err
    expected_file = HERE / f"{case}.expected"
    if update_golden or not expected_file.exists():
        expected_file.write_text(captured.err, encoding="utf-8")
    assert captured.err == expected_file.read_text(encoding="utf-8")
    first = captured.err.splitlines()[0]
    assert first.startswith(f"{source}:") and ": error: " in first
