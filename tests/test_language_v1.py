"""The v1 contract's complete programs (LANGUAGE-v1.md, copied verbatim into tests/language_v1/)
parse, check, render and compile as written, and their compiled forward passes run to finite numbers.

What each new operation computes is tested against hand-written JAX/NumPy next to the operation's
other tests; this file holds the contract's promise that its examples work as written.
"""
from pathlib import Path

import numpy as np
import pytest

import diagrammar
from diagrammar import errors
from diagrammar.ir import TupleType

EXAMPLES = sorted((Path(__file__).parent / "language_v1").glob("*.circuit"))
FREE = 6  # the size given to every free axis when an example is compiled


def _generic(program, name) -> bool:
    try:
        program[name]
    except errors.InvalidArgument:
        return True  # a circuit generic over axis names has no diagram of its own
    return False


def _inputs(diagram, sizes, rng, batch=()):
    def make(t):
        if isinstance(t, TupleType):
            return tuple(make(x) for x in t.items)
        # model.sizes holds the free sizes bound at compile time; the others are fixed by the program
        shape = tuple(batch) + tuple(a.size.value if a.size.is_const else sizes[a.name] for a in t.axes)
        if t.dtype == "float":
            return rng.standard_normal(shape).astype(np.float32)
        return np.zeros(shape, dtype=np.int32 if t.dtype == "int" else bool)
    return [make(p.type) for p in diagram.inputs]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_contract_example_checks_renders_and_runs(path):
    from flax import nnx

    program = diagrammar.load(path)
    names = [n for n in program.own_circuits() if not _generic(program, n)]
    assert names, f"{path.name} has no circuit that can be compiled"
    rng = np.random.default_rng(0)
    for name in names:
        d = program[name]
        svg = d.render_svg(depth=None)
        assert "<svg" in svg[:200] and name in svg
        free = {a: FREE for a in sorted(d.free_sizes())}
        model = d.compile(rngs=nnx.Rngs(0), **free)
        # batchnorm trains on a batch's statistics: one example alone is N = 1, a ValueError (§9)
        batch = (2,) if d.state_count() != diagrammar.Size.of(0) else ()
        out = model(*_inputs(d, model.sizes, rng, batch))
        for leaf in (out if isinstance(out, tuple) else (out,)):
            a = np.asarray(leaf)
            if a.dtype.kind == "f":
                # -inf is a value, not a failure: §7's WindowBias returns scores with masked entries at -inf
                assert not np.isnan(a).any() and (a != np.inf).all(), f"{name} gave NaN or +inf"
