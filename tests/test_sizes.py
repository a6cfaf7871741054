"""Compile-time size overrides (LANGUAGE-v1 §12) and the per-weight budget that check and compile share.

`load(path, sizes=...)`, `parse(text, sizes=...)`, `Program.with_sizes`, `Program.sizes` and
`--size NAME=N` on check, render, stats and train: the program is checked again as if each
overridden declaration said `axis NAME = N`, and everything derived follows.
"""
from __future__ import annotations

import argparse

import pytest

import diagrammar
from diagrammar import errors
from diagrammar.cli import main

S12 = "tests/language_v1/s12_sizes.circuit"

SMALL = """axis vocab = 1000, seq, d = 256, heads = 8, dk = d // heads, mlp = 4 * d, layers = 4, h2 = 14
require d % heads == 0

circuit Block[hidden = mlp](x: [seq, d]) -> [seq, d]:
    q = linear(layernorm(x, over = d), d -> (heads, dk))
    return x + linear(gelu(linear(x, d -> hidden)), hidden -> d) + linear(q, (heads, dk) -> d)

circuit Small(tokens: int[seq]) -> [seq, vocab]:
    x = embed(tokens, vocab -> d)
    repeat layers:
        x = Block(x)
    return linear(x, d -> vocab)
"""


def _params(d: int, layers: int, vocab: int = 1000, heads: int = 8) -> int:
    """Small's parameter count, by hand."""
    mlp, dk = 4 * d, d // heads
    block = 2 * d + (d * heads * dk + heads * dk) + (d * mlp + mlp) + (mlp * d + d) + (heads * dk * d + d)
    return vocab * d + layers * block + d * vocab + vocab


def test_everything_derived_follows_an_override():
    full = diagrammar.parse(SMALL)
    small = diagrammar.parse(SMALL, sizes={"d": 32, "layers": 1})
    assert full.sizes == {} and small.sizes == {"d": 32, "layers": 1}
    assert small.axes["dk"] == diagrammar.Size.of(4) and small.axes["mlp"] == diagrammar.Size.of(128)
    assert full["Small"].parameter_count().value == _params(256, 4)
    assert small["Small"].parameter_count().value == _params(32, 1)
    # the axis-parameter default `hidden = mlp` follows too
    hidden = {a.name: a.size.value for n, w, _ in small["Block"].weights() for a in w.type.axes}["hidden"]
    assert hidden == 128
    assert small.axis_formulas["d"] == "32" and small.axis_formulas["dk"] == "d // heads"


def test_with_sizes_is_a_new_program_and_merges():
    program = diagrammar.load(S12)
    small = program.with_sizes(d=32)
    smaller = small.with_sizes(layers=1)
    assert program.sizes == {} and program["Small"].parameter_count().value == _params(256, 4)
    assert small.sizes == {"d": 32} and smaller.sizes == {"d": 32, "layers": 1}
    assert smaller["Small"].parameter_count().value == _params(32, 1)
    assert small.file == program.file == S12
    # the same as loading with the overrides
    loaded = diagrammar.load(S12, sizes={"d": 32, "layers": 1})
    assert loaded["Small"] == smaller["Small"]


def test_an_override_may_fix_a_free_axis_or_replace_a_derived_one():
    program = diagrammar.parse(SMALL, sizes={"seq": 16, "dk": 16, "heads": 16})
    assert program.axes["seq"] == diagrammar.Size.of(16)
    assert program["Small"].free_sizes() == set()
    assert program.axes["dk"] == diagrammar.Size.of(16)


def test_a_number_in_the_text_stays_and_may_now_conflict():
    text = "axis d = 64, h2 = 64\ncircuit F(x: [d]) -> [h2]:\n    return rename(x, d -> h2)\n"
    diagrammar.parse(text)
    with pytest.raises(errors.SizeConflict) as e:
        diagrammar.parse(text, sizes={"d": 32})
    assert e.value.format().endswith("(sizes overridden: d = 32)")


def test_override_errors():
    with pytest.raises(errors.UnknownName) as e:
        diagrammar.parse(SMALL, sizes={"dd": 32})
    assert "did you mean 'd'" in e.value.format()
    with pytest.raises(errors.UnknownName) as e:
        diagrammar.parse(SMALL, sizes={"hidden": 32})  # an axis parameter is set at its calls
    assert "Block[hidden = N]" in e.value.format()
    with pytest.raises(errors.SizeTooLarge):
        diagrammar.parse(SMALL, sizes={"d": 0})
    for bad in (2.5, "64", True):
        with pytest.raises(errors.InvalidArgument):
            diagrammar.parse(SMALL, sizes={"d": bad})
    assert diagrammar.parse(SMALL, sizes={"d": 64.0}).sizes == {"d": 64}  # a whole number, written as a float


def test_diagnostics_under_overrides_say_so():
    with pytest.raises(errors.RequirementFailed) as e:
        diagrammar.parse(SMALL, sizes={"d": 64, "layers": 2, "heads": 5})
    text = e.value.format()
    assert "require d % heads == 0 fails: d = 64, heads = 5" in text
    assert text.splitlines()[3] == "  (sizes overridden: d = 64, layers = 2, heads = 5)"
    first = e.value.errors[0]
    assert first.format_one().endswith("(sizes overridden: d = 64, layers = 2, heads = 5)")
    assert first.to_json()[0]["notes"] == ["(sizes overridden: d = 64, layers = 2, heads = 5)"]


def test_an_override_reaches_every_file_that_declares_the_axis(tmp_path):
    (tmp_path / "lib.circuit").write_text("axis d = 256\ncircuit Lib(x: [d]) -> [d]:\n    return linear(x, d -> d)\n")
    (tmp_path / "main.circuit").write_text('use "lib.circuit"\naxis d = 256\n'
                                           "circuit Main(x: [d]) -> [d]:\n    return Lib(x)\n")
    program = diagrammar.load(tmp_path / "main.circuit", sizes={"d": 8})
    assert program["Main"].parameter_count().value == 8 * 8 + 8


def test_compile_keeps_declared_sizes_and_its_hint_shows_with_sizes():
    from flax import nnx

    program = diagrammar.load(S12)
    with pytest.raises(errors.SizeConflict) as e:
        program["Small"].compile(rngs=nnx.Rngs(0), d=32, seq=4)
    assert "program.with_sizes(d=32)" in e.value.hint
    # an axis parameter of an inner circuit is set where it is called
    with pytest.raises(errors.SizeConflict) as e:
        program["Small"].compile(rngs=nnx.Rngs(0), hidden=32, seq=4)
    assert "Block[hidden = 32]" in e.value.hint
    model = program.with_sizes(d=32, layers=1)["Small"].compile(rngs=nnx.Rngs(0), seq=4)
    assert model.weight("x.W").shape == (1000, 32)
    assert model.weight("repeat.x.linear_2.W").shape == (1, 32, 128)


# ---------------------------------------------------------------- the weight budget: one rule


def test_check_refuses_what_compile_refuses_on_the_weight_budget():
    from flax import nnx

    text = "axis d = 64, n = 100\ncircuit Deep(x: [d]) -> [d]:\n    repeat n:\n        x = linear(x, d -> d)\n    return x\n"
    budget = 64 * 64 * 50  # one copy fits, a hundred do not
    with pytest.raises(errors.SizeTooLarge) as e:
        diagrammar.parse(text, max_weight_elements=budget)
    assert e.value.span.line == 3 and "4,096 elements per copy x 100 copies = 409,600" in e.value.message
    # with the count free, check cannot tell; compile refuses it before allocating anything
    free = diagrammar.parse(text.replace("n = 100", "n"), max_weight_elements=budget)
    with pytest.raises(errors.SizeTooLarge) as e:
        free["Deep"].compile(rngs=nnx.Rngs(0), n=100, max_weight_elements=budget)
    assert "4,096 elements per copy x 100 copies = 409,600" in e.value.message
    # and check finds it once the count is known from an override
    with pytest.raises(errors.SizeTooLarge):
        diagrammar.parse(text.replace("n = 100", "n"), max_weight_elements=budget, sizes={"n": 100})
    diagrammar.parse(text, max_weight_elements=budget, sizes={"n": 50})


def test_the_budget_counts_copies_of_a_called_circuit():
    text = ("axis d = 64, n = 100\ncircuit Layer(x: [d]) -> [d]:\n    return linear(x, d -> d)\n"
            "circuit Deep(x: [d]) -> [d]:\n    repeat n:\n        x = Layer(x)\n    return x\n")
    with pytest.raises(errors.SizeTooLarge) as e:
        diagrammar.parse(text, max_weight_elements=64 * 64 * 50)
    assert e.value.span.line == 5 and "its weight x.out.W [d, d]" in e.value.message


def test_one_budget_constant():
    from diagrammar import bounds
    from diagrammar.backends.flax import module

    assert diagrammar.DEFAULT_MAX_WEIGHT_ELEMENTS is bounds.DEFAULT_MAX_WEIGHT_ELEMENTS
    assert module.DEFAULT_MAX_WEIGHT_ELEMENTS is bounds.DEFAULT_MAX_WEIGHT_ELEMENTS


# ---------------------------------------------------------------- the command line


def test_cli_check_with_sizes(capsys):
    assert main(["check", S12, "--size", "d=32", "--size", "layers=1"]) == 0
    out = capsys.readouterr().out
    assert f"{_params(32, 1):,} parameters" in out
    assert main(["check", S12, "--size", "d=30"]) == 1
    err = capsys.readouterr().err
    assert "require d % heads == 0 fails: d = 30, heads = 8" in err and "(sizes overridden: d = 30)" in err
    assert main(["check", S12, "--size", "dd=3"]) == 1
    assert "cannot override the size of dd" in capsys.readouterr().err
    assert main(["check", S12, "--size", "d=0"]) == 1
    assert "must be at least 1" in capsys.readouterr().err
    assert main(["check", S12, "--size", "d"]) == 2
    assert "expected NAME=N" in capsys.readouterr().err


def test_cli_stats_and_render_with_sizes(tmp_path, capsys):
    assert main(["stats", S12, "--circuit", "Small", "--size", "d=32", "--size", "layers=1", "--set", "seq=4",
                 "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["circuits"][0]["totals"]["parameters"]["value"] == _params(32, 1)
    out = tmp_path / "small.svg"
    assert main(["render", S12, "--circuit", "Small", "--size", "d=32", "-o", str(out)]) == 0
    assert "d = 32" in out.read_text()


def test_cli_train_applies_sizes():
    from diagrammar.cli import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args([S12, "--circuit", "Small", "--size", "d=32", "--size", "layers=1", "--axis", "seq=4"])
    assert train.run_settings(args, {"seq": 4})["size_overrides"] == {"d": 32, "layers": 1}
    model = train.build_model(args, {"seq": 4}, {})
    assert model.weight("x.W").shape == (1000, 32)
    plain = parser.parse_args([S12, "--circuit", "Small"])
    assert "size_overrides" not in train.run_settings(plain, {"seq": 4})  # runs from before --size still resume


def test_the_budget_counts_the_experts_of_a_dispatch():
    text = """axis d = 64, hidden = 64, experts = 100, top = 2
circuit FFN(x: [d]) -> [d]:
    return linear(x, d -> d)
circuit Routed(x: [d]) -> [d]:
    p, idx = topk(linear(x, d -> experts), over = experts -> top)
    return sum(p * dispatch(FFN, x, index = idx, along = experts), over = top)
"""
    with pytest.raises(errors.SizeTooLarge) as e:
        diagrammar.parse(text, max_weight_elements=64 * 64 * 50)
    assert "100 copies" in e.value.message and e.value.span.line == 6
    diagrammar.parse(text, max_weight_elements=64 * 64 * 100)
