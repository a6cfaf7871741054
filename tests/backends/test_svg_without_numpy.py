"""The renderer needs only lark: without numpy (the browser playground under Pyodide has none)
it draws the same figures byte for byte, through the plain-Python crossing finder."""
import subprocess
import sys
from pathlib import Path

import pytest

import diagrammar
from diagrammar.backends.svg import axis_formulas, quality, render_svg

ROOT = Path(__file__).resolve().parent.parent.parent
FIGURES = [("pointer.circuit", "PointerNet", 1), ("workspace.circuit", "WorkspaceDigits", 0),
           ("transformer.circuit", "Decoder", None)]

_SCRIPT = """
import sys
sys.modules["numpy"] = None  # importing numpy now fails, as in a Python without it
import diagrammar
from diagrammar.backends.svg import axis_formulas, render_svg
program = diagrammar.load(sys.argv[1])
depth = None if sys.argv[3] == "None" else int(sys.argv[3])
sys.stdout.write(render_svg(program[sys.argv[2]], depth=depth, axis_formulas=axis_formulas(program)))
assert "numpy" not in {m.split(".")[0] for m, v in sys.modules.items() if v is not None}
"""


@pytest.mark.parametrize("file, name, depth", FIGURES)
def test_figures_are_the_same_without_numpy(file, name, depth):
    program = diagrammar.load(ROOT / "circuits" / file)
    want = render_svg(program[name], depth=depth, axis_formulas=axis_formulas(program))
    got = subprocess.run([sys.executable, "-c", _SCRIPT, str(ROOT / "circuits" / file), name, str(depth)],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert got == want


def test_plain_crossing_finder_agrees_with_numpy_on_crossing_wires():
    # two bundles of bends crossing a fan of straight runs: many crossings, some near each other
    subpaths = [[(0.0, 10.0 * k), (100.0, 10.0 * k)] for k in range(6)]
    subpaths += [[(20.0 + 7 * k, -5.0), (60.0 + 7 * k, 60.0)] for k in range(4)]
    subpaths += [[(50.0, 0.0), (50.0, 50.0)]]
    got = quality._crossings_plain(subpaths)
    want = quality._crossings(subpaths)
    assert len(want) > 20
    assert [tuple(map(float, p)) for p in got] == [tuple(map(float, p)) for p in want]
