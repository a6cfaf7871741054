"""The catalogue of operations: every operation has a rule in every stage's table, no table has a rule for
anything else, and an operation registered from Python runs through every stage."""
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import diagrammar
from diagrammar import ops
from diagrammar.backends import dot
from diagrammar.backends.cost import analyse, format_table
from diagrammar.backends.cost import rules as cost_rules
from diagrammar.backends.flax import compile_diagram, lowering
from diagrammar.backends.svg import geometry, render_svg
from diagrammar.backends.tikz import render_tikz, tex_escape
from diagrammar.check import rules as typing_rules
from diagrammar.errors import ShapeMismatch, UnknownName
from diagrammar.ir import Axis, TensorType

ROOT = Path(__file__).resolve().parent.parent

# stage -> (its table, its NOT_SUPPORTED, whether it needs only the operations that reach the IR)
TABLES = {
    "typing (check/rules)": (typing_rules.TYPING, typing_rules.NOT_SUPPORTED, False),
    "flax lowering (backends/flax/lowering)": (lowering.LOWERING, lowering.NOT_SUPPORTED, True),
    "cost (backends/cost/rules.py)": (cost_rules.COST, cost_rules.NOT_SUPPORTED, True),
    "DOT label (backends/dot.py)": (dot.LABELS, dot.NOT_SUPPORTED, True),
    "SVG and TikZ glyph (backends/svg/geometry.py)": (geometry.GLYPHS, geometry.NOT_SUPPORTED, True),
}


@pytest.mark.parametrize("stage", sorted(TABLES))
def test_every_operation_has_a_rule_or_says_why_not(stage):
    table, not_supported, ir_only = TABLES[stage]
    missing = [op.name for op in ops.CATALOGUE.values()
               if (op.in_ir or not ir_only) and op.name not in table and op.name not in not_supported]
    assert not missing, (f"no {stage} rule for {', '.join(missing)}: add one, or put the operation in that "
                         "table's NOT_SUPPORTED with the reason")


@pytest.mark.parametrize("stage", sorted(TABLES))
def test_no_rule_for_an_operation_the_catalogue_lacks(stage):
    table, not_supported, ir_only = TABLES[stage]
    orphans = sorted(set(table) - set(ops.CATALOGUE))
    assert not orphans, f"{stage} has rules for {', '.join(orphans)}, which ops.CATALOGUE does not declare"
    for name, reason in not_supported.items():
        assert name in ops.CATALOGUE, f"{stage}: NOT_SUPPORTED names {name}, which the catalogue lacks"
        assert name not in table, f"{stage}: {name} has a rule and is also NOT_SUPPORTED"
        assert isinstance(reason, str) and reason.strip(), f"{stage}: say why {name} is not supported"
    if ir_only:
        assert not [n for n in table if not ops.CATALOGUE[n].in_ir], "a rule for an operation never in the IR"


def test_every_operation_in_the_zoo_is_in_the_catalogue():
    seen = set()
    for path in sorted((ROOT / "circuits").glob("*.circuit")):
        program = diagrammar.load(path)
        for name in program:
            seen.update(b.op for _path, b in program[name].walk())
    assert seen <= set(ops.CATALOGUE), seen - set(ops.CATALOGUE)
    assert {"linear", "call", "repeat", "scan", "const", "add"} <= seen


def test_the_tables_of_earlier_versions_derive_from_the_catalogue():
    from diagrammar.check import OPERATIONS, OWNS_WEIGHTS, SIGNATURES, UNARY, VARIADIC

    assert OPERATIONS == ops.callable_names()  # nothing registered here
    assert set(SIGNATURES) | VARIADIC == set(OPERATIONS)
    assert {"relu", "gelu", "sqrt"} <= UNARY and "neg" not in UNARY
    assert {"linear", "embed", "conv", "layernorm", "param", "call", "repeat", "scan"} <= OWNS_WEIGHTS
    assert SIGNATURES["conv"][1]["padding"] == "same" and SIGNATURES["dot"][1]["over"] is ops.REQUIRED
    assert ops.CATALOGUE["layernorm"].signature() == "layernorm(x, over = ..., eps = 1e-05)"


def test_every_glyph_text_can_be_written_in_tikz():
    # TikZ draws the SVG layout's shapes, so its rule for an operation is the glyph; LaTeX must spell its text
    for name, glyph in geometry.GLYPHS.items():
        assert tex_escape(glyph.text).count("?") == glyph.text.count("?"), (name, glyph.text)  # "?" is unknown


# ---------------------------------------------------------------- an operation registered from Python


def softsign_type(x):
    return x


def softsign_cost(out, x):
    return out * 3  # |x|, 1 + |x|, x / (1 + |x|)


@pytest.fixture
def softsign():
    op = ops.register_operation("softsign", params=["x"], typing=softsign_type,
                                lower=lambda x: x / (1 + jnp.abs(x)), cost=softsign_cost, glyph="ss",
                                doc="x / (1 + |x|)")
    yield op
    ops.unregister_operation("softsign")


SOFTSIGN = """\
axis n = 5
axis d = 4
circuit Block(x: [d]) -> [d]:
    return linear(softsign(x), d -> d)
circuit F(x: [n, d]) -> [n, d]:
    y = softsign(x) * 2
    z = Block(y)
    return z
"""


def test_a_registered_operation_runs_through_every_stage(softsign, tmp_path, capsys):
    program = diagrammar.parse(SOFTSIGN)
    d = program["F"]
    box = d.box("y:softsign")
    assert box.op == "softsign" and str(d.wire(box.outputs[0]).type) == "[n, d]"
    assert dict(box.roles) == {"n": "passing", "d": "passing"}

    # Flax, against NumPy, with a batch and through a call broadcast over n
    model = compile_diagram(d, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
    _, wires = model(x, capture=["y", "z.out:softsign"])
    np.testing.assert_allclose(wires["y"], 2 * x / (1 + np.abs(x)), rtol=1e-6)
    y = 2 * x / (1 + np.abs(x))
    np.testing.assert_allclose(wires["z.out:softsign"], y / (1 + np.abs(y)), rtol=1e-6)

    # cost: 3 FLOPs an element, in both places (the call's runs once per row of n)
    report = analyse(d, batch=3)
    assert report.box("y:softsign").flops["elementwise"].number == 3 * 3 * 5 * 4
    assert report.box("z.out:softsign").flops["elementwise"].number == 3 * 3 * 5 * 4
    assert "softsign" in format_table(report)
    path = tmp_path / "softsign.circuit"
    path.write_text(SOFTSIGN)
    from diagrammar.cli import main

    capsys.readouterr()
    assert main(["stats", str(path)]) == 0  # in this process, where softsign is registered
    assert "y:softsign      softsign    [n, d]       -     60" in capsys.readouterr().out

    # the figures: a tag with its glyph text
    svg = render_svg(d, depth=1)
    assert 'data-op="softsign"' in svg and ">ss<" in svg
    assert "{ss}" in render_tikz(d)
    assert "softsign" in dot.to_dot(d)


def test_keywords_and_axis_names_reach_every_rule():
    def typing(x, over, scale):
        if x.axis(over) is None:
            raise ValueError(f"{x} has no axis {over}")
        return TensorType(tuple(a for a in x.axes if a.name != over), x.dtype)

    ops.register_operation(
        "rowsum", params=["x"], keywords={"over": ops.REQUIRED, "scale": 1.0}, typing=typing,
        lower=lambda x, over, scale, axes: scale * jnp.sum(x, axis=axes[0].index(over)),
        cost=lambda out, x, over, scale: {"elementwise": x - out + out, "backward": x}, glyph=("box", "Σs"))
    try:
        program = diagrammar.parse("axis n = 3, d = 4\n"
                                   "circuit F(x: [n, d], y: [d, n]) -> [n]:\n"
                                   "    return rowsum(x, over = d) + rowsum(y, over = d, scale = 2)\n")
        d = program["F"]
        assert dict(d.box("out:rowsum").attrs) == {"over": "d", "scale": 1.0}
        model = compile_diagram(d, rngs=nnx.Rngs(0))
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        np.testing.assert_allclose(model(x, x.T), 3 * x.sum(axis=1))
        report = analyse(d)
        assert report.box("out:rowsum").flops["elementwise"].number == 12
        assert report.box("out:rowsum").backward_flops.number == 12
        assert ">Σs<" in render_svg(d)
        with pytest.raises(ShapeMismatch, match="rowsum: \\[n, d\\] has no axis q"):
            diagrammar.parse("axis n = 3, d = 4, q = 2\ncircuit F(x: [n, d]) -> [n]:\n    return rowsum(x, over = q)\n")
    finally:
        ops.unregister_operation("rowsum")


def test_registration_refuses_taken_names_and_a_file_cannot_define_one(softsign):
    rules = {"params": ["x"], "typing": softsign_type, "lower": lambda x: x, "cost": softsign_cost}
    for name, match in (("relu", "built-in"), ("softsign", "already registered"), ("axis", "word of the language"),
                        ("zeros", "word of the language"), ("soft sign", "not a name"), ("lambda", "not a name")):
        with pytest.raises(ValueError, match=match):
            ops.register_operation(name, **rules)
    with pytest.raises(ValueError, match="default of k"):
        ops.register_operation("badkw", params=["x"], keywords={"k": [1]}, typing=softsign_type,
                               lower=lambda x: x, cost=softsign_cost)
    with pytest.raises(TypeError, match="glyph"):
        ops.register_operation("badglyph", params=["x"], typing=softsign_type, lower=lambda x: x,
                               cost=softsign_cost, glyph=3)
    assert "badkw" not in ops.CATALOGUE and "badglyph" not in ops.CATALOGUE
    assert "softsign" in ops.callable_names()
    ops.unregister_operation("softsign")
    # once gone it is unknown again: a .circuit file calls operations, it never declares one
    with pytest.raises(UnknownName, match="unknown operation or circuit 'softsign'"):
        diagrammar.parse("axis d = 4\ncircuit F(x: [d]) -> [d]:\n    return softsign(x)\n")
    assert all("softsign" not in table for table, _, _ in TABLES.values())
    ops.register_operation("softsign", **rules)  # for the fixture to remove


def test_a_typing_rule_must_give_known_axes():
    ops.register_operation("widen", params=["x"], typing=lambda x: TensorType(x.axes + (Axis("zz", x.axes[0].size),)),
                           lower=lambda x: x, cost=lambda out, x: 0)
    try:
        with pytest.raises(UnknownName, match="widen gives an axis zz that no input has"):
            diagrammar.parse("axis d = 4\ncircuit F(x: [d]) -> [d]:\n    return sum(widen(x), over = zz)\n")
    finally:
        ops.unregister_operation("widen")


def test_registering_imports_no_jax_and_backends_loaded_later_see_the_operation():
    import subprocess
    import sys

    code = ("import sys, diagrammar\n"
            "diagrammar.register_operation('softsign', params=['x'], typing=lambda x: x,\n"
            "                              lower=lambda x: x / (1 + abs(x)), cost=lambda out, x: out * 3)\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('jax', 'flax')]\n"
            "from diagrammar.backends.flax import LOWERING\n"
            "from diagrammar.backends.cost import COST\n"
            "assert 'softsign' in LOWERING and 'softsign' in COST\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=ROOT)
