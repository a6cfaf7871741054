"""The command line's shape and its argument checks: one module per verb, every misuse a message and exit 2."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import diagrammar
from diagrammar.cli import COMMANDS, main


def test_one_module_per_verb():
    assert set(COMMANDS) == {"check", "render", "stats", "train", "gallery", "fmt", "lsp", "serve", "analyse"}
    for verb, (module, _) in COMMANDS.items():
        assert module == f"diagrammar.cli.{verb}"
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.run)
    for old in ("diagrammar.render_cli", "diagrammar.stats_cli", "diagrammar.gallery_cli",
                "diagrammar.train.cli_train"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(old)


def test_python_dash_m_is_the_same_command():
    out = subprocess.run([sys.executable, "-m", "diagrammar", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("diagrammar ")
    out = subprocess.run([sys.executable, "-m", "diagrammar", "train", "x.circuit", "--circuit", "X", "--steps", "-5"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "diagrammar train: error: argument --steps: must be a whole number of at least 1, got -5" in out.stderr


def test_main_returns_codes_and_never_exits(capsys):
    assert main(["--help"]) == 0 and "examples:" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert main([]) == 2
    assert main(["frobnicate"]) == 2 and "invalid choice" in capsys.readouterr().err
    assert main(["check"]) == 2
    assert main(["train", "--help"]) == 0 and "exit codes" in capsys.readouterr().out
    assert main(["check", "--help"]) == 0 and "every .circuit file below it" in capsys.readouterr().out


# verb arguments -> the message after "error: argument ..."; each is refused before any work, with exit 2
MISUSES = [
    (["render", "{tiny}", "--cost", "--batch", "0"], "--batch: must be a whole number of at least 1, got 0"),
    (["render", "{tiny}", "--depth", "-1"], "--depth: must be a whole number of at least 0, got -1"),
    (["render", "{tiny}", "--depth", "two"], "--depth: must be a whole number, got 'two'"),
    (["render", "{tiny}", "--style", "neon"], "--style: invalid choice: 'neon'"),
    (["stats", "{tiny}", "--batch", "0"], "--batch: must be a whole number of at least 1, got 0"),
    (["stats", "{tiny}", "--set", "d"], "--set: expected NAME=SIZE (e.g. hidden=256), got 'd'"),
    (["stats", "{tiny}", "--set", "d=0"], "--set: d: the size must be from 1 to 2,147,483,647, got 0"),
    (["check", "{tiny}", "--max-weight-elements", "0"],
     "--max-weight-elements: must be a whole number of at least 1, got 0"),
    (["train", "{tiny}", "--circuit", "Tiny", "--steps", "-5"],
     "--steps: must be a whole number of at least 1, got -5"),
    (["train", "{tiny}", "--circuit", "Tiny", "--steps", "0"], "--steps: must be a whole number of at least 1, got 0"),
    (["train", "{tiny}", "--circuit", "Tiny", "--steps", "3000000000"], "--steps: must be at most 2,147,483,647"),
    (["train", "{tiny}", "--circuit", "Tiny", "--steps-per-call", "0"],
     "--steps-per-call: must be a whole number of at least 1, got 0"),
    (["train", "{tiny}", "--circuit", "Tiny", "--eval-every", "-1"],
     "--eval-every: must be a whole number of at least 1, got -1"),
    (["train", "{tiny}", "--circuit", "Tiny", "--batch-size", "0"],
     "--batch-size: must be a whole number of at least 1, got 0"),
    (["train", "{tiny}", "--circuit", "Tiny", "--seed", "99999999999999999999"],
     "--seed: must be at most 4,294,967,295, got 99,999,999,999,999,999,999"),
    (["train", "{tiny}", "--circuit", "Tiny", "--seed", "-1"], "--seed: must be a whole number of at least 0, got -1"),
    (["train", "{tiny}", "--circuit", "Tiny", "--lr", "0"], "--lr: must be greater than 0, got 0"),
    (["train", "{tiny}", "--circuit", "Tiny", "--lr", "nan"], "--lr: must be a finite number, got 'nan'"),
    (["train", "{tiny}", "--circuit", "Tiny", "--lr", "inf"], "--lr: must be a finite number, got 'inf'"),
    (["train", "{tiny}", "--circuit", "Tiny", "--weight-decay", "-1"], "--weight-decay: must be at least 0, got -1"),
    (["train", "{tiny}", "--circuit", "Tiny", "--train-frac", "1"], "--train-frac: must be in (0, 1), got 1"),
    (["train", "{tiny}", "--circuit", "Tiny", "--train-frac", "0"], "--train-frac: must be in (0, 1), got 0"),
    (["train", "{tiny}", "--circuit", "Tiny", "--stop-at-test-acc", "1.5"],
     "--stop-at-test-acc: must be in [0, 1], got 1.5"),
    (["train", "{tiny}", "--circuit", "Tiny", "--p", "1"], "--p: must be a whole number of at least 2, got 1"),
    (["train", "{tiny}", "--circuit", "Tiny", "--axis", "hidden"], "--axis: expected NAME=SIZE (e.g. hidden=256)"),
    (["train", "{tiny}", "--circuit", "Tiny", "--axis", "hidden=-3"],
     "--axis: hidden: the size must be from 1 to 2,147,483,647, got -3"),
    (["train", "{tiny}", "--circuit", "Tiny", "--max-parameters", "0"],
     "--max-parameters: must be a whole number of at least 1, got 0"),
    (["train", "{tiny}", "--circuit", "Tiny", "--task", "chess"], "--task: invalid choice: 'chess'"),
    (["train", "{tiny}", "--circuit", "Tiny", "--fresh", "--force"],
     "argument --force: not allowed with argument --fresh"),
    (["train", "{tiny}"], "the following arguments are required: --circuit"),
]


@pytest.mark.parametrize("argv,message", MISUSES, ids=[" ".join(a[:1] + a[2:]) for a, _ in MISUSES])
def test_each_misuse_is_one_message_and_exit_2(argv, message, tiny, capsys):
    assert main([a.replace("{tiny}", tiny) for a in argv]) == 2
    err = capsys.readouterr().err
    assert f"diagrammar {argv[0]}: error: " in err and message in err, err
    assert "Traceback" not in err


# misuses found only when the command runs: the message, and nothing written
RUN_MISUSES = [
    (["render", "{tiny}", "--circuit", "Nope"], 2, "no circuit named 'Nope' in {tiny}; circuits: Tiny"),
    (["stats", "{tiny}", "--circuit", "Nope"], 2, "no circuit named 'Nope' in {tiny}; circuits: Tiny"),
    (["train", "{tiny}", "--circuit", "Nope", "--out", "{tmp}/run"], 2, "no circuit named 'Nope' in {tiny}"),
    (["train", "{tiny}", "--circuit", "Tiny", "--axis", "nope=3", "--out", "{tmp}/run"], 2,
     "--axis nope: Tiny has no free axis nope (it has no free axes; sizes the program declares are fixed)"),
    (["train", "circuits/pointer.circuit", "--circuit", "PointerNet", "--out", "{tmp}/run"], 2,
     "PointerNet has free axes without a size: n, steps; give them with --axis n=N --axis steps=N (--task modadd "
     "expects a circuit called as model(a, b)"),
    (["render", "{tiny}", "-o", "{tmp}/fig.pdf"], 2, "cannot tell the format of -o '{tmp}/fig.pdf'"),
    (["stats", "{tiny}", "--set", "d=3"], 2, "--set d: not a free size or axis parameter of Tiny"),
    (["train", "{tiny}", "--circuit", "Tiny", "--task", "sort", "--out", "{tmp}/run"], 1,
     "Tiny cannot be trained on --task sort: it has no free axes, and the task sets n, steps. --task sort expects "
     "a pointer network with free axes n and steps (PointerNet in circuits/pointer.circuit)"),
]


@pytest.mark.parametrize("argv,code,message", RUN_MISUSES, ids=[" ".join(a[:1] + a[2:]) for a, _, _ in RUN_MISUSES])
def test_misuses_found_when_running(argv, code, message, tiny, tmp_path, capsys):
    fill = lambda s: s.replace("{tiny}", tiny).replace("{tmp}", str(tmp_path))  # noqa: E731
    assert main([fill(a) for a in argv]) == code
    err = capsys.readouterr().err
    assert fill(message) in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.circuit"]  # no output, no run folder left


def test_train_over_the_parameter_budget_refuses_before_allocating(tiny, tmp_path, capsys):
    big = tmp_path / "big.circuit"
    big.write_text(Path(tiny).read_text().replace("axis hidden = 8", "axis hidden = 8\naxis wide = 32768, wider = 32769")
                   .replace("    return linear(h, hidden -> p)",
                            "    g = linear(linear(h, hidden -> wide), wide -> wider)\n"
                            "    return linear(linear(g, wider -> wide), wide -> p)"))
    # each weight is under the checker's per-weight budget (2**31); together they are over the model budget
    assert main(["check", str(big)]) == 0
    capsys.readouterr()
    count = diagrammar.load(big)["Tiny"].parameter_count().value
    assert count > 2 ** 31
    assert main(["train", str(big), "--circuit", "Tiny", "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"Tiny has {count:,} parameters, over the training budget of 2,147,483,648 (--max-parameters)" in err
    assert "nothing was allocated" in err and "largest weights:" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    assert main(["train", str(big), "--circuit", "Tiny", "--max-parameters", "1000", "--out",
                 str(tmp_path / "run")]) == 1
    assert "over the training budget of 1,000" in capsys.readouterr().err


def test_train_names_the_missing_packages(tiny, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("jax", "optax") else real(name, *a))
    assert main(["train", tiny, "--circuit", "Tiny"]) == 2
    err = capsys.readouterr().err
    assert "diagrammar train needs jax, optax, which are not installed" in err
    assert "python3 -m pip install 'jax" in err and "optax" in err and "Traceback" not in err


def test_check_and_stats_work_without_jax_numpy_or_matplotlib(tiny, tmp_path):
    """As installed with lark alone: check and stats run, render runs or names what to install, train names
    what to install; no traceback."""
    code = f"""
import sys
for name in ('jax', 'jaxlib', 'flax', 'optax', 'numpy', 'matplotlib', 'tqdm', 'sklearn'):
    sys.modules[name] = None  # import raises ModuleNotFoundError, find_spec returns None: as if not installed
from diagrammar.cli import main
assert main(['check', {tiny!r}]) == 0
assert main(['stats', {tiny!r}]) == 0
assert main(['render', {tiny!r}, '-o', {str(tmp_path / 'fig.svg')!r}]) in (0, 2)
assert main(['train', {tiny!r}, '--circuit', 'Tiny']) == 2
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "diagrammar train needs jax, flax, optax, numpy, matplotlib, tqdm" in out.stderr
    assert "Traceback" not in out.stderr
    if (tmp_path / "fig.svg").exists():
        assert "diagrammar render" not in out.stderr
    else:  # the renderer needs a package that is gone: it says which
        assert "diagrammar render: error: this needs the package" in out.stderr
