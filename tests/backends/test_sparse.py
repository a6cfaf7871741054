"""Sparse routing (topk, dispatch, scatter_add): types, the Flax lowering against hand-written NumPy/JAX
on the same weights, gradients, and cost. The contract is LANGUAGE-v1.md sections 10 and 11."""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import diagrammar
from diagrammar import errors
from diagrammar.backends.cost import analyse
from diagrammar.backends.flax import compile_diagram
from diagrammar.backends.flax.lowering import sparse as flax_sparse


@pytest.fixture(autouse=True)
def strict_ranks():
    """Every broadcast must come from named axes, never from NumPy's rank promotion."""
    old = jax.config.jax_numpy_rank_promotion
    jax.config.update("jax_numpy_rank_promotion", "raise")
    yield
    jax.config.update("jax_numpy_rank_promotion", old)


AXES = "axis n = 5, e = 7, f = 3, g = 2, s = 4, k = 2, big = 9, d = 4, hid = 6, ex = 3, tok = 5, top = 2\n"


def build(src: str, name: str = "F", seed: int = 0, **sizes):
    return compile_diagram(diagrammar.parse(AXES + src)[name], rngs=nnx.Rngs(seed), **sizes)


def rng(seed=0):
    return np.random.default_rng(seed)


def params(model) -> dict[str, nnx.Param]:
    return {".".join(map(str, p)): v for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def randomise(model, seed=1) -> dict[str, np.ndarray]:
    out = {}
    for i, (name, var) in enumerate(sorted(params(model).items())):
        var.set_value(jnp.asarray(rng(seed + i).normal(size=var.shape), jnp.float32))
        out[name] = np.asarray(var.get_value())
    return out


# ---------------------------------------------------------------- topk


def test_topk_values_and_indices_match_numpy_with_ties_in_index_order():
    model = build("circuit F(x: [n, s]) -> ([n, k], int[n, k]):\n    return topk(x, over = s -> k)")
    x = np.array([[1, 3, 3, 2], [0, 0, 0, 0], [5, -1, 7, 7], [2, 9, 1, 8], [4, 4, 5, 4]], np.float32)
    values, indices = model(x)
    order = np.argsort(-x, axis=1, kind="stable")[:, :2]  # stable: equal values in ascending index order
    np.testing.assert_array_equal(np.asarray(indices), order)
    np.testing.assert_array_equal(np.asarray(values), np.take_along_axis(x, order, axis=1))
    assert indices.dtype == jnp.int32 and values.dtype == jnp.float32


def test_topk_of_ints_keeps_the_dtype_and_puts_k_where_the_axis_was():
    model = build("circuit F(x: int[s, n]) -> (int[k, n], int[k, n]):\n    return topk(x, over = s -> k)")
    x = rng().integers(-5, 5, (4, 5)).astype(np.int32)
    values, indices = model(x)
    order = np.argsort(-x, axis=0, kind="stable")[:2]
    np.testing.assert_array_equal(np.asarray(indices), order)
    np.testing.assert_array_equal(np.asarray(values), np.take_along_axis(x, order, axis=0))
    assert values.dtype == jnp.int32


def test_topk_values_carry_gradients_to_the_picked_entries_only():
    model = build("circuit F(x: [n, s]) -> [n, k]:\n    v, i = topk(x, over = s -> k)\n    return v")
    x = jnp.asarray(rng().normal(size=(5, 4)), jnp.float32)
    cot = jnp.asarray(rng(1).normal(size=(5, 2)), jnp.float32)
    got = jax.grad(lambda x: jnp.sum(model(x) * cot))(x)
    order = np.argsort(-np.asarray(x), axis=1, kind="stable")[:, :2]
    want = np.zeros((5, 4), np.float32)
    np.put_along_axis(want, order, np.asarray(cot), axis=1)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)


# ---------------------------------------------------------------- scatter_add

SCATTER = "circuit F(x: [e, f], i: int[e]) -> [n, f]:\n    return scatter_add(x, i, along = e -> n)"


def scatter_ref(x, i, n):
    """np.add.at into n rows, indices outside [0, n) dropped."""
    out = np.zeros((n,) + x.shape[1:], x.dtype)
    keep = (i >= 0) & (i < n)
    np.add.at(out, i[keep], x[keep])
    return out


def test_scatter_add_equals_add_at_with_out_of_range_indices_dropped():
    model = build(SCATTER)
    x = rng().normal(size=(7, 3)).astype(np.float32)
    i = np.array([0, 4, 4, -1, 5, 2, 99], np.int32)
    np.testing.assert_allclose(np.asarray(model(x, i)), scatter_ref(x, i, 5), rtol=1e-6)


def test_scatter_add_of_ints_and_counts():
    model = build("circuit F(x: int[e], i: int[e]) -> int[n]:\n    return scatter_add(x, i, along = e -> n)")
    i = np.array([0, 1, 1, 4, 4, 4, 7], np.int32)
    got = model(np.ones(7, np.int32), i)
    assert got.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(got), [1, 2, 0, 0, 3])


def test_scatter_add_batches_the_index_axes_shared_with_x_and_sums_several_source_axes():
    model = build("circuit F(x: [g, s, e, f], i: int[s, e, g]) -> [g, n, f]:\n"
                  "    return scatter_add(x, i, along = (s, e) -> n)")
    x = rng().normal(size=(2, 4, 7, 3)).astype(np.float32)
    i = rng(1).integers(-1, 6, (4, 7, 2)).astype(np.int32)
    want = np.stack([scatter_ref(x[b].reshape(28, 3), i[:, :, b].reshape(28), 5) for b in range(2)])
    np.testing.assert_allclose(np.asarray(model(x, i)), want, rtol=1e-5, atol=1e-6)


def test_scatter_add_with_a_batch_on_the_indices_only():
    model = build(SCATTER)
    x = rng().normal(size=(7, 3)).astype(np.float32)
    i = rng(1).integers(0, 5, (2, 7)).astype(np.int32)  # two index lists for one x
    want = np.stack([scatter_ref(x, i[b], 5) for b in range(2)])
    np.testing.assert_allclose(np.asarray(model(x[None], i)), want, rtol=1e-5, atol=1e-6)


def test_scatter_add_is_the_transpose_of_gather():
    scatter = build(SCATTER)
    gather = build("circuit G(y: [n, f], i: int[e]) -> [e, f]:\n    return gather(y, i, along = n)", "G")
    x = jnp.asarray(rng().normal(size=(7, 3)), jnp.float32)
    y = jnp.asarray(rng(1).normal(size=(5, 3)), jnp.float32)
    i = jnp.asarray([0, 4, 4, 1, 3, 2, 2], jnp.int32)
    # <scatter(x), y> = <x, gather(y)>, and so the gradient of the one is the other
    np.testing.assert_allclose(float(jnp.vdot(scatter(x, i), y)), float(jnp.vdot(x, gather(y, i))), rtol=1e-5)
    got = jax.grad(lambda x: jnp.vdot(scatter(x, i), y))(x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(gather(y, i)), rtol=1e-6)
    # an int index has no gradient: differentiating through it is refused by JAX itself
    assert jax.grad(lambda x: jnp.sum(scatter(x, i) ** 2))(x).shape == (7, 3)


def test_message_sum_contract_example_against_numpy():
    program = diagrammar.load("tests/language_v1/s11_scatter_add.circuit")
    model = compile_diagram(program["MessageSum"], rngs=nnx.Rngs(0), n=6, e=9)
    w = randomise(model)
    x = rng().normal(size=(6, 12)).astype(np.float32)
    src = rng(1).integers(0, 6, 9).astype(np.int32)
    dst = rng(2).integers(-2, 8, 9).astype(np.int32)
    weight = rng(3).normal(size=9).astype(np.float32)
    h = x @ w["h.W"]
    want = scatter_ref(h[src] * weight[:, None], dst, 6) + h
    np.testing.assert_allclose(np.asarray(model(x, src, dst, weight)), want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- dispatch

MOE = (Path(__file__).resolve().parents[1] / "language_v1" / "s10_topk_dispatch.circuit").read_text(encoding="utf-8")


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def ffn_ref(w, e, x, prefix="y."):
    """Expert e of the stacked FFN weights on one token."""
    h = gelu(x @ w[prefix + "linear.W"][e] + w[prefix + "linear.b"][e])
    return h @ w[prefix + "linear_2.W"][e] + w[prefix + "linear_2.b"][e]


def routed_ref(w, x):
    """Routed by looping over tokens and their chosen experts in NumPy."""
    logits = x @ w["probs.W"] + w["probs.b"]
    z = np.exp(logits - logits.max(-1, keepdims=True))
    probs = z / z.sum(-1, keepdims=True)
    out = np.array(x, np.float64)
    for t in range(x.shape[0]):
        chosen = np.argsort(-probs[t], kind="stable")[:2]
        for j, e in enumerate(chosen):
            out[t] += probs[t, e] * ffn_ref(w, e, x[t])
    return out


def test_dispatch_weights_are_stacked_copies_named_like_a_call():
    model = compile_diagram(diagrammar.parse(MOE)["Routed"], rngs=nnx.Rngs(0))
    assert model.y.linear.W.shape == (4, 16, 64) and model.y.linear_2.b.shape == (4, 16)
    assert model.y.linear.W.get_metadata()["axes"] == ("experts", "d", "hidden")
    w = np.asarray(model.y.linear.W[...])
    assert not np.allclose(w[0], w[1]), "each expert starts from its own weights"
    d = diagrammar.parse(MOE)["Routed"]
    assert d.parameter_count().value == 16 * 4 + 4 + 4 * (16 * 64 + 64 + 64 * 16 + 16)


def test_dispatch_matches_a_loop_over_experts_in_numpy():
    model = compile_diagram(diagrammar.parse(MOE)["Routed"], rngs=nnx.Rngs(0))
    w = randomise(model)
    x = rng().normal(size=(6, 16)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(x)), routed_ref(w, x), rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(np.asarray(model(x[2])), routed_ref(w, x[2:3])[0], rtol=2e-4, atol=2e-4)


def test_dispatch_gradients_reach_the_chosen_experts_and_the_topk_values_only():
    src = AXES + """
circuit Expert(x: [d]) -> [d]:
    return linear(x, d -> d, bias = false)

circuit F(x: [tok, d], i: int[tok]) -> [tok, d]:
    return dispatch(Expert, x, index = i, along = ex)
"""
    model = compile_diagram(diagrammar.parse(src)["F"], rngs=nnx.Rngs(0))
    w = randomise(model)["out.out.W"]
    x = jnp.asarray(rng().normal(size=(5, 4)), jnp.float32)
    i = jnp.asarray([0, 2, 0, 2, 2], jnp.int32)  # expert 1 is never chosen
    cot = jnp.asarray(rng(1).normal(size=(5, 4)), jnp.float32)
    grads = nnx.grad(lambda m: jnp.sum(m(x, i) * cot))(model)
    got = np.asarray(grads.out.out.W[...])
    want = np.zeros_like(w)
    for t, e in enumerate(np.asarray(i)):
        want[e] += np.outer(np.asarray(x[t]), np.asarray(cot[t]))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not got[1].any()
    # the input's gradient goes through each token's own expert
    gx = jax.grad(lambda x: jnp.sum(model(x, i) * cot))(x)
    want_x = np.stack([w[e] @ np.asarray(cot[t]) for t, e in enumerate(np.asarray(i))])
    np.testing.assert_allclose(np.asarray(gx), want_x, rtol=1e-5, atol=1e-6)


def test_moe_router_gets_gradients_through_the_topk_values():
    model = compile_diagram(diagrammar.parse(MOE)["Routed"], rngs=nnx.Rngs(0))
    w = randomise(model)
    x = rng().normal(size=(6, 16)).astype(np.float32)

    def ref(router_w):
        logits = x @ router_w + w["probs.b"][None]
        probs = jax.nn.softmax(logits, axis=-1)
        _, chosen = jax.lax.top_k(jax.lax.stop_gradient(probs), 2)
        p = jnp.take_along_axis(probs, chosen, axis=-1)
        y = jnp.stack([jnp.stack([jnp.asarray(ffn_ref(w, int(e), x[t]), jnp.float32) for e in chosen[t]])
                       for t in range(6)])
        return jnp.sum((x + jnp.sum(p[..., None] * y, axis=1)) ** 2)

    got = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model).probs.W[...]
    want = jax.grad(ref)(jnp.asarray(w["probs.W"]))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-3, atol=1e-4)


def test_dispatch_runs_k_per_token_never_every_expert():
    """The compiled program's matrix products have one row per chosen (token, expert) pair."""
    model = compile_diagram(diagrammar.parse(MOE)["Routed"], rngs=nnx.Rngs(0))
    x = jnp.zeros((10, 16), jnp.float32)  # 10 tokens, 4 experts, top 2
    jaxpr = jax.make_jaxpr(lambda x: model(x))(x)
    shapes = []

    def visit(jx):
        for eqn in jx.eqns:
            if eqn.primitive.name == "dot_general":
                shapes.append(tuple(eqn.outvars[0].aval.shape))
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    if hasattr(sub, "eqns"):
                        visit(sub)
                    elif hasattr(sub, "jaxpr"):
                        visit(sub.jaxpr)

    visit(jaxpr.jaxpr)
    expert = [s for s in shapes if 64 in s]  # the d -> hidden products
    assert expert and all(np.prod(s) == 20 * 64 for s in expert), shapes


def test_dispatch_broadcasts_over_the_inputs_extra_axes_with_a_two_input_expert_and_a_tuple_result():
    src = AXES + """
circuit Pair(a: [d], b: [f]) -> ([d], [hid]):
    p = linear(a, d -> d)
    q = linear(a, d -> hid)
    r = linear(b, f -> hid)
    return relu(p) * 2, q + r

circuit F(x: [tok, d], z: [g, tok, f], i: int[tok, top]) -> ([tok, top, g, d], [hid, g, top, tok]):
    u, v = dispatch(Pair, x, z, index = i, along = ex)
    return u, v
"""
    d = diagrammar.parse(src)["F"]
    (box,) = [b for b in d.boxes if b.op == "dispatch"]
    assert box.attr("index_axes") == ("top",) and set(box.attr("batch")) == {"tok", "g"}
    model = compile_diagram(d, rngs=nnx.Rngs(0))
    w = {k.split(".", 1)[1]: v for k, v in randomise(model).items()}
    x = rng().normal(size=(5, 4)).astype(np.float32)
    z = rng(1).normal(size=(2, 5, 3)).astype(np.float32)
    i = rng(2).integers(0, 3, (5, 2)).astype(np.int32)
    u, v = model(x, z, i)
    want_u = np.zeros((5, 2, 2, 4), np.float32)
    want_v = np.zeros((6, 2, 2, 5), np.float32)
    for t in range(5):
        for j in range(2):
            e = i[t, j]
            for b in range(2):
                want_u[t, j, b] = np.maximum(x[t] @ w["p.W"][e] + w["p.b"][e], 0) * 2
                want_v[:, b, j, t] = x[t] @ w["q.W"][e] + w["q.b"][e] + z[b, t] @ w["r.W"][e] + w["r.b"][e]
    np.testing.assert_allclose(np.asarray(u), want_u, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(v), want_v, rtol=1e-4, atol=1e-5)


def test_dispatch_of_a_generic_expert_names_its_instantiation_in_brackets():
    src = AXES + """
circuit Expert[axis c, h = 2 * c](x: [c]) -> [c]:
    w1 = relu(linear(x, c -> h))
    return linear(w1, h -> c)

circuit F(x: [tok, d], i: int[tok]) -> [tok, d]:
    y = dispatch(Expert[c = d, h = 8], x, index = i, along = ex)
    return y
"""
    model = compile_diagram(diagrammar.parse(src)["F"], rngs=nnx.Rngs(0))
    w = randomise(model)
    assert w["y.w1.W"].shape == (3, 4, 8)
    x = rng().normal(size=(5, 4)).astype(np.float32)
    i = np.array([0, 2, 1, 2, 0], np.int32)
    want = np.stack([np.maximum(x[t] @ w["y.w1.W"][e] + w["y.w1.b"][e], 0) @ w["y.out.W"][e] + w["y.out.b"][e]
                     for t, e in enumerate(i)])
    np.testing.assert_allclose(np.asarray(model(x, i)), want, rtol=1e-4, atol=1e-5)


def test_dispatch_in_chunks_gives_the_same_result(monkeypatch):
    model = compile_diagram(diagrammar.parse(MOE)["Routed"], rngs=nnx.Rngs(0))
    x = rng().normal(size=(7, 16)).astype(np.float32)
    whole = np.asarray(model(x))
    monkeypatch.setattr(flax_sparse, "_GATHER_BUDGET", 3 * 2200)  # three pairs at a time: 14 pairs, a remainder
    np.testing.assert_allclose(np.asarray(model(x)), whole, rtol=1e-5, atol=1e-6)


def test_dispatch_inside_a_repeat_and_captures_inside_the_expert():
    src = AXES + """
circuit Expert(x: [d]) -> [d]:
    h = relu(linear(x, d -> hid))
    return linear(h, hid -> d)

circuit F(x: [tok, d], i: int[tok, top]) -> [tok, d]:
    repeat 2:
        x = x + sum(dispatch(Expert, x, index = i, along = ex), over = top)
    return x
"""
    model = compile_diagram(diagrammar.parse(src)["F"], rngs=nnx.Rngs(0))
    w = randomise(model)
    p = "repeat.x."  # the dispatch box is named after the statement's target, like a call
    assert w[p + "h.W"].shape == (2, 3, 4, 6)  # repeat copies, then experts
    x = rng().normal(size=(5, 4)).astype(np.float32)
    i = rng(2).integers(0, 3, (5, 2)).astype(np.int32)
    want = x.astype(np.float64)
    hs = []
    for c in range(2):
        step = np.zeros_like(want)
        hc = np.zeros((5, 2, 6))
        for t in range(5):
            for j in range(2):
                e = i[t, j]
                h = np.maximum(want[t] @ w[p + "h.W"][c, e] + w[p + "h.b"][c, e], 0)
                hc[t, j] = h
                step[t] += h @ w[p + "out.W"][c, e] + w[p + "out.b"][c, e]
        hs.append(hc)
        want = want + step
    out, wires = model(x, i, capture=["repeat.x.h"])
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-4, atol=1e-4)
    # a wire inside the expert: the repeat's copies, then the positions (token, top), then its own axes
    np.testing.assert_allclose(np.asarray(wires["repeat.x.h"]), np.stack(hs), rtol=1e-4, atol=1e-4)


def test_dispatch_cost_counts_the_expert_k_times_per_token_and_every_copy_of_its_weights():
    d = diagrammar.parse(MOE)["Routed"]
    r = analyse(d, batch=32)
    d_, hidden, experts, top = 16, 64, 4, 2
    assert r.flops["matmul"].number == 32 * (2 * d_ * experts + top * 2 * 2 * d_ * hidden)
    assert r.parameters.number == d_ * experts + experts + experts * (2 * d_ * hidden + hidden + d_)
    row = next(b for b in r.boxes if b.path == "y")
    assert row.params.number == experts * (2 * d_ * hidden + hidden + d_)
    assert row.label == "dispatch FFN among experts"


def test_scatter_add_cost_is_one_flop_per_element_of_x():
    d = diagrammar.parse(AXES + SCATTER)["F"]
    r = analyse(d, batch=2)
    assert r.flops["elementwise"].number == 2 * 7 * 3 and r.flops["matmul"].number == 0


# ---------------------------------------------------------------- errors

ERRORS = [  # (id, error, the body of a circuit F after `circuit F`)
    ("topk_k_larger", errors.SizeConflict, "(x: [k]) -> [s]:\n    v, i = topk(x, over = k -> s)\n    return v"),
    ("topk_k_on_x", errors.ShapeMismatch, "(x: [s, k]) -> [k]:\n    v, i = topk(x, over = s -> k)\n    return v"),
    ("topk_no_axis", errors.ShapeMismatch, "(x: [n]) -> [k]:\n    v, i = topk(x, over = s -> k)\n    return v"),
    ("scatter_float_index", errors.ShapeMismatch, "(x: [e], i: [e]) -> [n]:\n    return SCATTER"),
    ("scatter_source_not_on_x", errors.ShapeMismatch, "(x: [f], i: int[e]) -> [n, f]:\n    return SCATTER"),
    ("scatter_source_not_on_i", errors.ShapeMismatch, "(x: [e, f], i: int[f]) -> [n]:\n    return SCATTER"),
    ("scatter_index_axis_not_on_x", errors.ShapeMismatch, "(x: [e], i: int[e, g]) -> [n]:\n    return SCATTER"),
    ("scatter_n_on_x", errors.ShapeMismatch, "(x: [e, n], i: int[e]) -> [n]:\n    return SCATTER"),
    ("float_index", errors.ShapeMismatch, "(x: [tok, d], i: [tok]) -> [tok, d]:\n    return DISPATCH"),
    ("experts_on_input", errors.ShapeMismatch, "(x: [ex, d], i: int[ex]) -> [ex, d]:\n    return DISPATCH"),
    ("experts_on_index", errors.ShapeMismatch, "(x: [tok, d], i: int[tok, ex]) -> [tok, ex, d]:\n    return DISPATCH"),
    ("experts_in_expert", errors.ShapeMismatch,
     "(x: [tok, d], i: int[tok]) -> [tok, d]:\n    return dispatch(Ex, x, index = i, along = d)"),
    ("index_axis_of_expert", errors.ShapeMismatch, "(x: [tok, d], i: int[d]) -> [tok, d]:\n    return DISPATCH"),
    ("not_a_circuit", errors.InvalidArgument,
     "(x: [tok, d], i: int[tok]) -> [tok, d]:\n    return dispatch(x, x, index = i, along = ex)"),
    ("no_index", errors.WrongArity, "(x: [tok, d], i: int[tok]) -> [tok, d]:\n    return dispatch(Ex, x, along = ex)"),
    ("no_along", errors.WrongArity, "(x: [tok, d], i: int[tok]) -> [tok, d]:\n    return dispatch(Ex, x, index = i)"),
    ("wrong_input", errors.ShapeMismatch, "(x: [tok, f], i: int[tok]) -> [tok, d]:\n    return DISPATCH"),
]
EXPERT = "circuit Ex(x: [d]) -> [d]:\n    return linear(x, d -> d)\n\n"


@pytest.mark.parametrize("case", ERRORS, ids=lambda c: c[0])
def test_errors(case):
    _, cls, body = case
    body = (body.replace("SCATTER", "scatter_add(x, i, along = e -> n)")
            .replace("DISPATCH", "dispatch(Ex, x, index = i, along = ex)"))
    with pytest.raises(cls) as info:
        diagrammar.parse(AXES + EXPERT + "circuit F" + body + "\n")
    assert info.value.span is not None


def test_an_expert_with_batchnorm_is_refused():
    src = AXES + """
circuit Ex(x: [tok, d]) -> [tok, d]:
    return batchnorm(x, over = tok)

circuit F(x: [tok, d], i: int[tok]) -> [tok, d]:
    return dispatch(Ex, x, index = i, along = ex)
"""
    if "batchnorm" not in diagrammar.ops.CATALOGUE:
        pytest.skip("batchnorm is not built yet")
    with pytest.raises(errors.InvalidArgument, match="batchnorm"):
        diagrammar.parse(src)
