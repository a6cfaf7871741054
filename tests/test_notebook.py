"""In a notebook a bad program shows its diagnostic, not a traceback of diagrammar's frames.

IPython (and so Jupyter's kernel) shows ``exception._render_traceback_()`` instead of the traceback when an
exception has one; the cells run in a real IPython shell in a subprocess (a shell is a process-wide singleton).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import diagrammar
from diagrammar.errors import CircuitError

BAD = "axis d = 4\ncircuit F(x: [d]) -> [d]:\n    y = relu(zz)\n    return gelu(x, d)\n"  # two errors

_SHELL = textwrap.dedent("""
    import sys
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config
    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "NoColor"
    shell = InteractiveShell.instance(config=config)
    shell.run_cell("import diagrammar")
    shell.run_cell("diagrammar.parse(" + repr(sys.argv[1]) + ", 'bad.circuit')")
    print("=== next cell ===")
    shell.run_cell("1 / 0")
    print("=== next cell ===")
    shell.run_cell("import os; os.environ['DIAGRAMMAR_DEBUG'] = '1'")
    shell.run_cell("diagrammar.parse(" + repr(sys.argv[1]) + ", 'bad.circuit')")
""")


@pytest.fixture(scope="module")
def cells() -> list[str]:
    """What the shell printed for: the bad program; a cell dividing by zero; the bad program with DIAGRAMMAR_DEBUG."""
    pytest.importorskip("IPython")
    env = {k: v for k, v in os.environ.items() if k != "DIAGRAMMAR_DEBUG"}
    proc = subprocess.run([sys.executable, "-c", _SHELL, BAD], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("=== next cell ===\n")


def test_a_bad_program_in_ipython_shows_the_diagnostic_alone(cells):
    bad, other, _ = cells
    with pytest.raises(CircuitError) as info:
        diagrammar.parse(BAD, "bad.circuit")
    assert bad.strip() == info.value.format()  # exactly what the command line prints
    assert "bad.circuit:3:14: error: unknown name 'zz'" in bad and "^^" in bad and "2 errors" in bad
    assert "Traceback" not in bad and "File " not in bad and "program.py" not in bad
    # other exceptions keep IPython's traceback
    assert "Traceback" in other and "ZeroDivisionError" in other


def test_with_diagrammar_debug_the_traceback_shows(cells):
    debug = cells[2]
    assert "Traceback" in debug and "UnknownName" in debug and "program.py" in debug


def test_the_hook_returns_the_diagnostic_lines(monkeypatch):
    monkeypatch.delenv("DIAGRAMMAR_DEBUG", raising=False)
    with pytest.raises(CircuitError) as info:
        diagrammar.parse(BAD, "bad.circuit")
    lines = info.value._render_traceback_()
    assert lines == info.value.format().split("\n") and all(isinstance(line, str) for line in lines)
    monkeypatch.setenv("DIAGRAMMAR_DEBUG", "1")
    assert not hasattr(info.value, "_render_traceback_")
