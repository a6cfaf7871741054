"""compile() draws every weight in one compiled program: the number of XLA compilations it triggers does
not grow with the number of weights or their shapes (benchmarks/compile_time.py measures the seconds)."""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx

import diagrammar
from diagrammar.backends.flax import module

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def compilations(fn) -> int:
    """How many programs XLA compiles while `fn` runs."""
    seen = []

    def listen(event, duration, **_):
        if event == COMPILE_EVENT:
            seen.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        jax.block_until_ready(nnx.state(fn()))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return len(seen)


def test_a_zoo_model_compiles_a_bounded_number_of_xla_programs():
    grok = diagrammar.load("circuits/grok_transformer.circuit")["GrokTransformer"]  # 11 weights, 8 shapes
    jax.clear_caches()  # as in a fresh process
    rngs = nnx.Rngs(0)
    jax.block_until_ready(rngs.params.key[...])
    first = compilations(lambda: grok.compile(rngs=rngs))
    assert first <= 2, first  # the initialiser (drawing each weight on its own compiled 12 programs)
    assert compilations(lambda: grok.compile(rngs=nnx.Rngs(1))) == 0  # the same shapes: nothing new


def test_many_weights_of_new_shapes_compile_one_program():
    axes = ", ".join(f"a{i} = {31 + 2 * i}" for i in range(12))
    body = "\n".join(f"    x{i} = linear(x{i - 1}, a{i - 1} -> a{i})" for i in range(1, 12))
    src = f"axis {axes}\ncircuit F(x0: [a0]) -> [a11]:\n{body}\n    return x11\n"
    d = diagrammar.parse(src)["F"]
    rngs = nnx.Rngs(0)
    jax.block_until_ready(rngs.params.key[...])
    assert compilations(lambda: d.compile(rngs=rngs)) == 1  # 22 weights, 11 shapes of W


def test_weights_are_drawn_as_one_by_one_and_the_stream_moves_on_alike(monkeypatch):
    d = diagrammar.parse("""
axis v = 9, d = 6, h = 5, n = 3
circuit F(i: int[n]) -> [n, h]:
    param p: [d] = normal(0.5)
    param q: [d, h] = uniform(-2, 3)
    x = embed(i, v -> d) + p
    return linear(x, d -> h) + dot(x, q, over = d)
""")["F"]  # normal, uniform, lecun (a truncated normal), embed and zeros

    def draw(one_program: bool):
        monkeypatch.setattr(module, "INIT_IN_ONE_PROGRAM", one_program)
        rngs = nnx.Rngs(5)
        model = d.compile(rngs=rngs)
        weights = {k: np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
        return weights, np.asarray(jax.random.key_data(rngs.params()))

    together, after = draw(True)
    alone, after_alone = draw(False)
    assert together.keys() == alone.keys()
    for name in together:  # the same numbers, up to XLA fusing a multiply differently (the last bit)
        np.testing.assert_allclose(together[name], alone[name], rtol=1e-6, atol=1e-7, err_msg=str(name))
    np.testing.assert_array_equal(after, after_alone)


def test_draws_of_very_different_sizes_are_not_padded_together():
    big, small = ("truncated", (4096, 1024), 1.0, 0.0), ("truncated", (8,), 1.0, 0.0)
    groups = module._draw_groups((small, big, small, ("zeros", (3,), 0.0, 0.0), ("uniform", (8,), -1.0, 1.0)))
    assert groups == [(("truncated", 1.0, 0.0), [0, 2]), (("truncated", 1.0, 0.0), [1]),
                      (("uniform", -1.0, 1.0), [4])]
