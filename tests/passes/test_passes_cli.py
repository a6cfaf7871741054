"""The optimisation passes on the command line: `stats` lists the rewrites, `train --no-pass` turns them off."""
from __future__ import annotations

import json

import pytest

from diagrammar.cli import main
from diagrammar.cli import train as train_cli

GROK = "circuits/grok_transformer.circuit"


def test_stats_lists_the_rewrites_that_fire(capsys):
    assert main(["stats", GROK, "--circuit", "GrokTransformer"]) == 0
    out = capsys.readouterr().out
    assert "optimisation passes that fire when compiled:" in out
    assert "take_early: out:take reads one pos of x@2" in out
    assert "fuse_siblings" not in out  # off by default
    assert main(["stats", GROK, "--circuit", "GrokTransformer", "--pass", "fuse_siblings"]) == 0
    assert "fuse_siblings: attention: k, v read x: one product" in capsys.readouterr().out


def test_stats_without_a_pass(capsys):
    assert main(["stats", GROK, "--circuit", "GrokTransformer", "--no-pass", "multiply_sum", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["circuits"][0]
    assert {r["pass"] for r in report["passes"]} == {"take_early"}
    assert main(["stats", GROK, "--circuit", "GrokTransformer", "--no-pass", "all"]) == 0
    assert "optimisation passes: none fires" in capsys.readouterr().out


def test_stats_refuses_an_unknown_pass(capsys):
    assert main(["stats", GROK, "--circuit", "GrokTransformer", "--no-pass", "fuse"]) == 2
    err = capsys.readouterr().err
    assert "no optimisation pass 'fuse'" in err and "fuse_siblings" in err and "Traceback" not in err


@pytest.mark.parametrize("flags,passes", [([], None), (["--no-pass", "all"], False),
                                          (["--no-pass", "take_early", "--no-pass", "multiply_sum"],
                                           {"take_early": False, "multiply_sum": False}),
                                          (["--pass", "fuse_siblings"], {"fuse_siblings": True})])
def test_train_passes_the_switches_to_compile(tiny, tmp_path, monkeypatch, flags, passes):
    seen = []
    original = train_cli.compile_circuit

    def recording(diagram, seed, sizes, options):
        seen.append(options.get("passes"))
        return original(diagram, seed, sizes, options)

    monkeypatch.setattr(train_cli, "compile_circuit", recording)
    argv = ["train", tiny, "--circuit", "Tiny", "--steps", "2", "--steps-per-call", "2", "--eval-every", "2",
            "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv + flags) == 0
    assert seen == [passes]


def test_train_refuses_an_unknown_pass(tiny, tmp_path, capsys):
    assert main(["train", tiny, "--circuit", "Tiny", "--no-pass", "fuse", "--out", str(tmp_path / "run")]) == 2
    assert "invalid choice: 'fuse'" in capsys.readouterr().err
