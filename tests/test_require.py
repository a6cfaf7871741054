"""Size constraints (LANGUAGE-v1 §8): `require SIZE OP SIZE` at the top level and in bodies, `%` in sizes,
decided at check time when the sizes are known and otherwise when the free sizes are bound."""
from __future__ import annotations

import pytest

import diagrammar
from diagrammar import errors
from diagrammar.cli import main

S08 = "tests/language_v1/s08_require.circuit"

FREE = """axis ctx = 32, seq, n, d = 24, heads = 4
require seq <= ctx
require n * 2 > seq
circuit Pos(x: [seq, d]) -> [seq, d]:
    param table: [ctx, d] = normal(0.02)
    return x + gather(table, arange(seq), along = ctx)
"""


def test_requirements_known_at_check_time():
    diagrammar.parse("axis d = 24, heads = 4\nrequire d % heads == 0\nrequire d >= 2 * heads\n"
                     "require heads < d\nrequire heads > 1\nrequire d == 6 * heads\n")
    with pytest.raises(errors.RequirementFailed) as e:
        diagrammar.parse("axis d = 30, heads = 4\nrequire d % heads == 0\n", name="m.circuit")
    assert e.value.message == "require d % heads == 0 fails: d = 30, heads = 4"
    assert str(e.value.span) == "m.circuit:2:1"


def test_check_reports_every_failure():
    with pytest.raises(errors.RequirementFailed) as e:
        diagrammar.parse("axis a = 3, b = 5\nrequire a > b\nrequire a == b\nrequire a <= b\n")
    assert [x.message for x in e.value.errors] == ["require a > b fails: a = 3, b = 5",
                                                   "require a == b fails: a = 3, b = 5"]


def test_modulo_in_sizes():
    program = diagrammar.parse("axis d = 30, r = d % 7, q = (d + 1) % (2 * 4)\n")
    assert program.axes["r"].value == 2 and program.axes["q"].value == 7
    with pytest.raises(errors.SizeConflict):
        diagrammar.parse("axis d = 30, r = d % (d - 30)\n")
    # free: symbolic, decided when bound
    free = diagrammar.parse("axis n\nrequire n % 4 == 0\ncircuit F(x: [n]) -> [n]:\n    return x\n")
    assert free["F"].requires[0].holds({"n": 8}) is True and free["F"].requires[0].holds({"n": 6}) is False


def test_free_sizes_are_checked_when_compiled_before_anything_is_allocated(monkeypatch):
    from flax import nnx

    from diagrammar.backends.flax import module

    program = diagrammar.parse(FREE, name="free.circuit")
    d = program["Pos"]
    assert d.free_sizes() == {"seq"}  # n is named only by a requirement: not a free size of Pos
    monkeypatch.setattr(module, "_init_weight", lambda *a: pytest.fail("allocated before the check"))
    with pytest.raises(errors.RequirementFailed) as e:
        d.compile(rngs=nnx.Rngs(0), seq=40)
    assert e.value.message == "require seq <= ctx fails: seq = 40, ctx = 32"
    assert str(e.value.span) == "free.circuit:2:1"
    monkeypatch.undo()
    model = d.compile(rngs=nnx.Rngs(0), seq=32)
    assert model.weight("table").shape == (32, 24)


def test_compile_raises_the_first_failure_in_source_order():
    from flax import nnx

    text = ("axis a, b\nrequire b <= 4\nrequire a <= 4\n"
            "circuit F(x: [a, b]) -> [a, b]:\n    require a + b <= 5\n    return x\n")
    d = diagrammar.parse(text)["F"]
    with pytest.raises(errors.RequirementFailed) as e:
        d.compile(rngs=nnx.Rngs(0), a=9, b=9)
    assert e.value.message == "require b <= 4 fails: b = 9"
    with pytest.raises(errors.RequirementFailed) as e:
        d.compile(rngs=nnx.Rngs(0), a=3, b=3)
    assert e.value.message == "require a + b <= 5 fails: a = 3, b = 3" and e.value.span.line == 5
    d.compile(rngs=nnx.Rngs(0), a=2, b=3)


def test_a_body_requirement_is_checked_per_instantiation():
    text = ("axis d = 24\ncircuit Heads[h = 4](x: [d]) -> [d]:\n    require d % h == 0\n    return x\n"
            "circuit F(x: [d]) -> [d]:\n    return Heads(x) + Heads[h = 6](x)\n")
    diagrammar.parse(text)
    with pytest.raises(errors.RequirementFailed) as e:
        diagrammar.parse(text.replace("h = 6", "h = 5"), name="h.circuit")
    assert e.value.message == "require d % h == 0 fails: d = 24, h = 5"
    assert e.value.span.line == 3 and e.value.notes == ["in Heads[h = 5], called at h.circuit:6:23"]


def test_a_body_requirement_on_a_size_bound_at_compile_time():
    from flax import nnx

    text = ("axis d = 24\ncircuit Heads[h](x: [d]) -> [d]:\n    repeat 2:\n        require d % h == 0\n"
            "        x = x * 2\n    return x\n")
    d = diagrammar.parse(text)["Heads"]
    assert d.free_sizes() == set()  # h only appears in the requirement
    d2 = diagrammar.parse(text.replace("* 2", "* 2 + sum(arange(h), over = h)"))["Heads"]
    with pytest.raises(errors.RequirementFailed) as e:
        d2.compile(rngs=nnx.Rngs(0), h=5)
    assert e.value.message == "require d % h == 0 fails: d = 24, h = 5"
    d2.compile(rngs=nnx.Rngs(0), h=6)


def test_the_contract_example_at_run_time():
    from flax import nnx

    program = diagrammar.load(S08)
    with pytest.raises(errors.RequirementFailed) as e:
        program["Embed"].compile(rngs=nnx.Rngs(0), seq=40)
    assert e.value.message == "require seq <= ctx fails: seq = 40, ctx = 32"
    with pytest.raises(errors.RequirementFailed) as e:
        program.with_sizes(seq=40)  # with_sizes decides it when checking
    assert "(sizes overridden: seq = 40)" in e.value.format()
    program.with_sizes(d=16, heads=8)  # dk = 2: the body's dk >= 2 holds


def test_the_contract_example_body_requirement():
    program = diagrammar.load(S08)
    with pytest.raises(errors.RequirementFailed) as e:
        program.with_sizes(d=8, heads=8)
    assert e.value.message == "require dk >= 2 fails: dk = 1"


def test_merge_and_split_with_free_sizes_wait_for_them():
    from flax import nnx

    text = "axis n, m, nm = 12\ncircuit F(x: [n, m]) -> [nm]:\n    return merge(x, (n, m) -> nm)\n"
    d = diagrammar.parse(text)["F"]
    with pytest.raises(errors.SizeConflict):
        d.compile(rngs=nnx.Rngs(0), n=3, m=5)
    d.compile(rngs=nnx.Rngs(0), n=3, m=4)
    with pytest.raises(errors.SizeConflict):
        diagrammar.parse(text, sizes={"n": 3, "m": 5})


def test_stats_set_checks_requirements_and_reshapes(tmp_path, capsys):
    path = tmp_path / "free.circuit"
    path.write_text(FREE)
    assert main(["stats", str(path), "--set", "seq=40"]) == 1
    assert "require seq <= ctx fails: seq = 40, ctx = 32" in capsys.readouterr().err
    assert main(["stats", str(path), "--set", "seq=30"]) == 0
    capsys.readouterr()
    merge = tmp_path / "merge.circuit"
    merge.write_text("axis n, m = 4, nm = 12\ncircuit F(x: [n, m]) -> [nm]:\n    return merge(x, (n, m) -> nm)\n")
    assert main(["stats", str(merge), "--set", "n=5"]) == 1
    assert "merge" in capsys.readouterr().err
    assert main(["stats", str(merge), "--set", "n=3"]) == 0


def test_require_in_a_used_file_holds_for_the_program(tmp_path):
    (tmp_path / "lib.circuit").write_text("axis d = 24, heads = 4\nrequire d % heads == 0\n")
    (tmp_path / "main.circuit").write_text('use "lib.circuit"\ncircuit F(x: [d]) -> [d]:\n    return x\n')
    diagrammar.load(tmp_path / "main.circuit")
    with pytest.raises(errors.RequirementFailed) as e:
        diagrammar.load(tmp_path / "main.circuit", sizes={"heads": 5})
    assert e.value.span.file.endswith("lib.circuit")


def test_require_is_a_reserved_word():
    with pytest.raises(errors.CircuitSyntaxError):
        diagrammar.parse("axis d = 4\ncircuit F(x: [d]) -> [d]:\n    require = x\n    return require\n")
    with pytest.raises(errors.CircuitSyntaxError):
        diagrammar.parse("axis d = 4\nrequire d\n")
    with pytest.raises(errors.UnknownName):
        diagrammar.parse("axis d = 4\nrequire d < dd\n")
