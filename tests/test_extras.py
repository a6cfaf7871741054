"""Installed with lark alone: check, render and stats work; a command that needs more names it and the pip
command in one line and exits 2, with no traceback.

The subprocess hides every other package behind a `sys.meta_path` finder that refuses them, as a Python
where they are not installed would (the real install is checked by hand in a venv: see the issue 13 notes).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from diagrammar.cli import _needs
from diagrammar.errors import MissingDependency

HIDDEN = ("jax", "jaxlib", "flax", "optax", "numpy", "scipy", "matplotlib", "tqdm", "sklearn", "networkx",
          "graphviz", "cairosvg", "pygls", "lsprotocol", "sphinx", "IPython")

_SCRIPT = """
import contextlib, io, json, sys
HIDDEN = set(sys.argv[1].split(","))

class NotInstalled:
    '''Finds nothing of HIDDEN, as in a Python where those packages are not installed.'''
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
from diagrammar.cli import main

results = {}
for key, argv in json.loads(sys.argv[2]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    results[key] = [code, err.getvalue()]
results["imported"] = sorted({m.split(".")[0] for m in sys.modules} & HIDDEN)
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def lark_only(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("extras")
    model = "circuits/modadd_mlp.circuit"
    runs = {
        "check": ["check", model],
        "render": ["render", model, "-o", str(out / "m.svg")],
        "render_cost": ["render", model, "--cost", "-o", str(out / "c.svg")],
        "render_tex": ["render", model, "-o", str(out / "m.tex")],
        "render_dot": ["render", model, "-o", str(out / "m.dot")],
        "stats": ["stats", model, "--circuit", "ModAddMLP"],
        "fmt": ["fmt", "--check", model],
        "train": ["train", model, "--circuit", "ModAddMLP", "--steps", "1", "--out", str(out / "run")],
        "png": ["render", model, "-o", str(out / "m.png")],
        "dot_svg": ["render", model, "--dot", "-o", str(out / "d.svg")],
        "lsp": ["lsp"],
    }
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, ",".join(HIDDEN), json.dumps(runs)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    results["out"] = out
    return results


@pytest.mark.parametrize("key", ["check", "render", "render_cost", "render_tex", "render_dot", "stats", "fmt"])
def test_check_render_and_stats_work_with_lark_alone(lark_only, key):
    code, err = lark_only[key]
    assert code == 0, err
    assert "Traceback" not in err and "needs" not in err


def test_nothing_but_lark_was_imported(lark_only):
    assert lark_only["imported"] == []
    out = lark_only["out"]
    assert (out / "m.svg").read_text().startswith("<?xml") and "class=\"annotation\"" in (out / "c.svg").read_text()


@pytest.mark.parametrize("key, says", [
    ("train", "diagrammar train needs jax, flax, optax, numpy, matplotlib, tqdm, which are not installed. "
              "Install them with: python3 -m pip install 'jax"),
    ("png", "PNG output (or write .svg) needs cairosvg, which is not installed. Install it with: "
            "python3 -m pip install 'diagrammar[png]' (or python3 -m pip install cairosvg)"),
    ("dot_svg", "--dot .svg needs graphviz, which is not installed. Install it with: "
                "python3 -m pip install 'graphviz>=0.20'"),
    ("lsp", "diagrammar lsp needs pygls, lsprotocol, which are not installed. Install them with: "
            "python3 -m pip install 'diagrammar[lsp]'"),
])
def test_a_command_that_needs_more_names_it_in_one_line_and_exits_2(lark_only, key, says):
    code, err = lark_only[key]
    assert code == 2, err
    assert says in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "ModuleNotFoundError" not in err
    assert not (lark_only["out"] / "run").exists() and not (lark_only["out"] / "m.png").exists()


def test_core_packages_name_their_versions_and_the_reinstall():
    command, is_core = _needs.install_command(["jax", "sklearn"])
    assert command == "python3 -m pip install 'jax>=0.4.30' 'scikit-learn>=1.3'" and is_core
    text = _needs.describe("diagrammar train", ["jax", "sklearn"])
    assert text.endswith("(or reinstall diagrammar with its dependencies: python3 -m pip install diagrammar)")


def test_extras_are_named_once_and_unknown_packages_plainly():
    assert _needs.install_command(["pygls", "lsprotocol", "cairosvg", "scipy"]) == (
        "python3 -m pip install 'diagrammar[lsp,png]' 'scipy'", False)


def test_require_passes_when_present_and_raises_a_usage_error_when_not():
    _needs.require("check", ["json", "lark"])
    with pytest.raises(MissingDependency) as info:
        _needs.require("x", ["json", "surely_not_a_module_here"])
    assert info.value.exit_code == 2
    assert str(info.value) == ("diagrammar x needs surely_not_a_module_here, which is not installed. "
                               "Install it with: python3 -m pip install 'surely_not_a_module_here'")


def test_load_turns_a_broken_install_into_the_same_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):  # found on the path, but importing it fails
        if name == "colorsys":
            raise ImportError("libcairo.so.2: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(MissingDependency) as info:
        _needs.load("render", "colorsys", what="PNG output")
    assert str(info.value) == ("PNG output needs colorsys, which does not import here (libcairo.so.2: cannot open "
                               "shared object file). Install it with: python3 -m pip install 'colorsys'")
    monkeypatch.setattr(builtins, "__import__", real_import)
    assert _needs.load("render", "colorsys").__name__ == "colorsys"
