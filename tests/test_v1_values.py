"""v1 §4-§7: range slicing, erf/sin/cos and exact GELU, ints (literals, casts, // and %), constant tensors
and initialiser expressions. Types and errors from the checker; values and gradients of the compiled
module against NumPy written out by hand (PyTorch's conventions where the contract names them; torch is
not installed, so each formula says which PyTorch call it mirrors)."""
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import diagrammar
from diagrammar import errors as E
from diagrammar.backends.cost import analyse
from diagrammar.ir import TensorType

EXAMPLES = Path(__file__).resolve().parent / "language_v1"
HEADER = "axis ctx = 16, seq, d = 8, xp = 10, rk = 2, ds = 4, n = 6, big = 10, mid = 6, small = 4\n"
_erf = np.vectorize(math.erf)


def check(body: str, sig: str, extra: str = ""):
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    return diagrammar.parse(HEADER + extra + f"circuit F{sig}:\n{lines}\n", name="t.circuit")["F"]


def fails(body: str, sig: str, cls, words: str, extra: str = ""):
    with pytest.raises(cls) as info:
        check(body, sig, extra)
    assert words in str(info.value), str(info.value)
    return info.value


def run(d, *inputs, **sizes):
    model = d.compile(rngs=nnx.Rngs(0), **sizes)
    return model, model(*inputs)


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- §5 erf, sin, cos, exact GELU


def test_erf_sin_cos_match_numpy_and_fold_constants():
    d = check("return erf(x) + 2 * sin(x) + 3 * cos(x) + sin(0) + cos(0) + erf(1)", "(x: [d]) -> [d]")
    # sin(0), cos(0), erf(1) fold into constants at check time; only the functions of x are boxes
    assert {"sin(0)", "cos(0)", "erf(1)"} <= {b.attr("label") for b in d.boxes if b.op == "const"}
    assert sorted(b.op for b in d.boxes if b.op in ("sin", "cos", "erf")) == ["cos", "erf", "sin"]
    x = rng().standard_normal(8).astype(np.float32)
    _, y = run(d, x)
    want = _erf(x) + 2 * np.sin(x) + 3 * np.cos(x) + 0 + 1 + math.erf(1)
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-5, atol=1e-6)


def test_int_operands_of_functions_promote_to_float():
    d = check("return sin(arange(d)) + erf(i)", "(i: int[d]) -> [d]")
    assert d.output.type.dtype == "float"


def test_gelu_exact_and_tanh_forms_against_pytorch_formulas():
    d = check("return gelu(x, approximate = false) + 10 * gelu(x) + 100 * gelu(x, approximate = true)",
              "(x: [d]) -> [d]")
    x = np.linspace(-4, 4, 8).astype(np.float32)
    _, y = run(d, x)
    exact = 0.5 * x * (1 + _erf(x / np.sqrt(2)))  # torch.nn.functional.gelu(x) (approximate='none')
    tanh = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))  # F.gelu(x, approximate='tanh')
    np.testing.assert_allclose(np.asarray(y), exact + 110 * tanh, rtol=1e-5, atol=1e-4)  # float32 tanh near -4
    gelus = [b for b in d.boxes if b.op == "gelu"]
    assert [b.attr("approximate", True) for b in gelus] == [False, True, True]
    assert gelus[1].attrs == ()  # the v0 form keeps v0's box exactly


def test_gelu_approximate_takes_true_or_false():
    fails("return gelu(x, approximate = 1)", "(x: [d]) -> [d]", E.InvalidArgument, "true, false")


def test_erf_sin_cos_gradients():
    d = check("return sum(erf(x) + sin(x) * cos(x))", "(x: [d]) -> []")
    model = d.compile(rngs=nnx.Rngs(0))
    x = np.linspace(-2, 2, 8).astype(np.float32)
    g = jax.grad(lambda v: model(v))(jnp.asarray(x))
    want = 2 / np.sqrt(np.pi) * np.exp(-x ** 2) + np.cos(x) ** 2 - np.sin(x) ** 2
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-5, atol=1e-5)


def test_s05_example_against_numpy():
    program = diagrammar.load(EXAMPLES / "s05_erf_sin_cos.circuit")
    x = rng().standard_normal((16, 32)).astype(np.float32)
    model, y = run(program["SinCos"], x)
    half = np.arange(16)
    inv_freq = np.exp(-half * 2 / 32 * np.log(10000))
    angle = np.arange(16)[:, None] * inv_freq[None, :]
    table = np.stack([np.sin(angle), np.cos(angle)], axis=-1).reshape(16, 32)  # merge (half, two) -> d
    np.testing.assert_allclose(np.asarray(y), x + table, rtol=1e-5, atol=1e-5)
    d = program["Mlp"]
    model, y = run(d, x)
    w = {name: np.asarray(model.weight(name)[...]) for name, _, _ in d.weights()}
    boxes = [b for b in d.boxes if b.op == "linear"]
    (l1, l2, l3, l4) = [b.name for b in boxes]

    def lin(v, name):
        return v @ w[f"{name}.W"] + w[f"{name}.b"]

    exact = lin(0.5 * lin(x, l1) * (1 + _erf(lin(x, l1) / np.sqrt(2))), l2)
    h = lin(x, l3)
    tanh = lin(0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3))), l4)
    np.testing.assert_allclose(np.asarray(y), exact + tanh + 0.5 * x * (1 + _erf(x / np.sqrt(2))),
                               rtol=2e-4, atol=2e-4)


def test_functions_cost_one_transcendental_per_element():
    d = check("return erf(x) + sin(x) + cos(x) + gelu(x, approximate = false)", "(x: [n, d]) -> [n, d]")
    r = analyse(d, batch=1)
    per = {b.op: (b.flops["elementwise"].number, b.flops["transcendental"].number) for b in r.boxes}
    assert per["erf"] == per["sin"] == per["cos"] == (0, 48)
    assert per["gelu"] == (4 * 48, 48)


# ---------------------------------------------------------------- §6 ints, casts, // and %


def test_whole_number_literals_and_the_four_int_cases():
    # (1) element-wise with int wires (v0), (2) // and %, (3) an int input and an int return, (4) int(...)
    d = check("j = i - 1 + Shift(i, 2) + i // 2 + i % 3 + int(2.7)\nreturn j", "(i: int[d]) -> int[d]",
              "circuit Shift(i: int[d], k: int[]) -> int[d]:\n    return i + k\n")
    assert d.output.type.dtype == "int"
    assert {b.attr("label"): d.wire(b.outputs[0]).type.dtype for b in d.boxes if b.op == "const"} == {
        "1": "int", "2": "int", "3": "int", "int(2.7)": "int"}
    assert check("return 7 // 2", "() -> int[]").boxes[0].attr("value") == ("floordiv", ("num", 7), ("num", 2))
    # a constant elsewhere stays float, as in v0
    d = check("return x * 3 + 1", "(x: [d]) -> [d]")
    assert {d.wire(b.outputs[0]).type.dtype for b in d.boxes if b.op == "const"} == {"float"}


def test_v0_int_context_keeps_whole_valued_float_literals_int():
    d = check("return i - 1.0", "(i: int[d]) -> int[d]")  # v0 typed this int; v1 changes no v0 program
    assert d.output.type.dtype == "int"


def test_floordiv_and_mod_have_pythons_floor_semantics():
    # torch.div(a, b, rounding_mode='floor') and torch.remainder (not torch.fmod) mirror Python here
    d = check("return (a // b) * 1000 + a % b", "(a: int[n], b: int[n]) -> int[n]")
    a = np.array([-7, 7, -7, 7, 0, -1], np.int32)
    b = np.array([2, 2, -2, -2, 3, 5], np.int32)
    _, y = run(d, a, b)
    want = [(int(p) // int(q)) * 1000 + int(p) % int(q) for p, q in zip(a, b)]
    assert np.asarray(y).tolist() == want
    assert [int(p) // int(q) for p, q in zip(a, b)][:4] == [-4, 3, 3, -4]
    # bool operands count as ints; a // b * b + a % b == a always
    d = check("return (a // b) * b + a % b + m // 1", "(a: int[n], b: int[n], m: bool[n]) -> int[n]")
    _, y = run(d, a, b, np.ones(6, bool))
    assert np.asarray(y).tolist() == (a + 1).tolist()


def test_constant_floordiv_and_mod_fold_as_python():
    d = check("return float(-7 // 2) * 10 + float(-7 % 2) + float(size(big) // 3)", "() -> []")
    _, y = run(d)
    assert float(y) == -40 + 1 + 3


def test_casts_truncate_toward_zero_and_keep_axes():
    d = check("return float(int(x)) * 10 + float(bool(x)) + float(int(x > 0))", "(x: [d]) -> [d]")
    x = np.array([-2.7, -0.5, 0.0, 0.5, 2.7, -3.0, 3.0, 1e-3], np.float32)
    _, y = run(d, x)
    trunc = np.trunc(x)  # torch.Tensor.int() and NumPy's astype(int32) truncate toward zero
    np.testing.assert_array_equal(np.asarray(y), trunc * 10 + (x != 0) + (x > 0))
    assert check("return int(x)", "(x: [n, d]) -> int[n, d]").output.type.names == ("n", "d")


def test_float_of_int_is_exact_below_two_to_the_24():
    d = check("return float(i)", "(i: int[n]) -> [n]")
    i = np.array([0, 1, -5, 2 ** 24, -(2 ** 24), 12345678], np.int32)
    _, y = run(d, i)
    assert np.asarray(y).astype(np.int64).tolist() == i.tolist()


def test_cast_gradients_are_zero_through_int_and_one_through_float():
    d = check("return sum(float(int(x * 4)) + float(x) * 3)", "(x: [d]) -> []")
    model = d.compile(rngs=nnx.Rngs(0))
    g = jax.grad(lambda v: model(v))(jnp.linspace(-1, 1, 8))
    np.testing.assert_allclose(np.asarray(g), 3.0)


def test_s06_example_against_numpy():
    program = diagrammar.load(EXAMPLES / "s06_int_casts.circuit")
    x = rng().standard_normal((24, 8)).astype(np.float32)
    _, y = run(program["Phase"], x)
    t = np.arange(24)
    pos = (t + 3) % 6
    cycle = (t // 6).astype(np.float32)
    odd = pos % 2 != 0
    want = np.where(odd[:, None], x * cycle[:, None], np.trunc(x * 8) / 8)
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-6)
    _, k = run(program["Offset"], np.int32(10), np.int32(-3))
    assert int(k) == (10 - 3) % 6


def test_int_errors():
    fails("return x // 2", "(x: [d]) -> [d]", E.ShapeMismatch, "int(x)")
    fails("return float(i % 2.5)", "(i: int[d]) -> [d]", E.ShapeMismatch, "float constant")
    fails("return i // 0", "(i: int[d]) -> int[d]", E.InvalidArgument, "which is 0")
    fails("return i // (d - 8)", "(i: int[d]) -> int[d]", E.InvalidArgument, "which is 0")
    fails("return 2.5", "() -> int[]", E.ShapeMismatch, "an int is wanted")
    fails("return Shift(i, 3.0)", "(i: int[d]) -> int[d]", E.ShapeMismatch, "an int is wanted",
          "circuit Shift(i: int[d], k: int[]) -> int[d]:\n    return i + k\n")
    e = fails("return Scale(i)", "(i: int[d]) -> [d]", E.ShapeMismatch, "float(x)",
              "circuit Scale(x: [d]) -> [d]:\n    return x * 2\n")
    assert "hint: convert it: float(x)" in str(e)
    fails("return i + 3000000000", "(i: int[d]) -> int[d]", E.InvalidArgument, "does not fit in int32")
    fails("return int(inf)", "() -> int[]", E.InvalidArgument, "not finite")


def test_a_zero_divisor_that_reads_a_free_size_is_found_when_compiling():
    d = check("return i // (seq - 5)", "(i: int[d], s: [seq]) -> int[d]")
    with pytest.raises(E.InvalidArgument, match="0 with these sizes"):
        d.compile(rngs=nnx.Rngs(0), seq=5)
    _, y = run(d, np.arange(8, dtype=np.int32), np.zeros(7, np.float32), seq=7)
    assert np.asarray(y).tolist() == (np.arange(8) // 2).tolist()


def test_int_scan_state_from_a_literal():
    d = check("f, ys = scan(Count, along = n, init = 0)\nreturn ys + f", "() -> int[n]",
              "circuit Count(c: int[]) -> (int[], int[]):\n    return c + 1, c\n")
    _, y = run(d)
    assert np.asarray(y).tolist() == [6 + k for k in range(6)]


def test_integer_division_costs_as_xla_counts_it():
    d = check("return float(i // 3) + float(i % 3)", "(i: int[n]) -> [n]")
    per = {b.op: b.flops["elementwise"].number for b in analyse(d, batch=1).boxes}
    assert (per["floordiv"], per["mod"], per["float"]) == (9 * 6, 10 * 6, 6)


# ---------------------------------------------------------------- §4 slice


def test_slice_against_numpy_with_negative_and_size_starts():
    d = check("return slice(x, xp -> rk, 0), slice(x, xp -> ds, rk), slice(x, xp -> small, -4), "
              "slice(x, xp -> mid, (big - small) // 2)",
              "(x: [n, xp]) -> ([n, rk], [n, ds], [n, small], [n, mid])")
    x = rng().standard_normal((6, 10)).astype(np.float32)
    _, (a, b, c, e) = run(d, x)
    np.testing.assert_array_equal(np.asarray(a), x[:, 0:2])
    np.testing.assert_array_equal(np.asarray(b), x[:, 2:6])
    np.testing.assert_array_equal(np.asarray(c), x[:, 6:10])  # x[:, -4:] in PyTorch
    np.testing.assert_array_equal(np.asarray(e), x[:, 3:9])


def test_slice_keeps_dtype_and_other_axes_in_any_order():
    d = check("return slice(i, xp -> ds, 3)", "(i: int[xp, n]) -> int[n, ds]")
    i = np.arange(60, dtype=np.int32).reshape(10, 6)
    _, y = run(d, i)
    np.testing.assert_array_equal(np.asarray(y), i[3:7].T)


def test_s04_example_positions_and_gradient_into_the_range():
    program = diagrammar.load(EXAMPLES / "s04_slice.circuit")
    model = program["Positions"].compile(rngs=nnx.Rngs(0), seq=5)
    x = rng().standard_normal((5, 32)).astype(np.float32)
    table = np.asarray(model.weight("table")[...])
    np.testing.assert_allclose(np.asarray(model(x)), x + table[:5], rtol=1e-6)
    grads = nnx.grad(lambda m: jnp.sum(m(x) * 3.0))(model)
    g = np.asarray(grads["table"][...])
    np.testing.assert_array_equal(g[:5], 3.0)  # the sliced rows
    np.testing.assert_array_equal(g[5:], 0.0)  # the rest of the table gets nothing


def test_slice_bounds_of_a_free_size_are_checked_when_compiling():
    program = diagrammar.load(EXAMPLES / "s04_slice.circuit")
    with pytest.raises(E.SizeConflict) as info:
        program["Positions"].compile(rngs=nnx.Rngs(0), seq=129)
    e = info.value
    assert (e.span.line, e.span.column) == (6, 16)  # the slice
    assert "ctx[0:129]" in e.message and "seq = 129" in e.message
    program["Positions"].compile(rngs=nnx.Rngs(0), seq=128)  # the whole table fits
    d = check("return slice(x, ctx -> seq, -seq)", "(x: [ctx]) -> [seq]")  # the last seq rows
    _, y = run(d, np.arange(16, dtype=np.float32), seq=3)
    assert np.asarray(y).tolist() == [13, 14, 15]
    with pytest.raises(E.SizeConflict):
        d.compile(rngs=nnx.Rngs(0), seq=17)


def test_slice_errors():
    fails("return slice(x, d -> rk, 7)", "(x: [d]) -> [rk]", E.SizeConflict, "d[7:9]")
    fails("return slice(x, d -> rk, -1)", "(x: [d]) -> [rk]", E.SizeConflict, "from -8 to -2")
    fails("return slice(x, ds -> rk, 0)", "(x: [d]) -> [rk]", E.ShapeMismatch, "has no ds")
    fails("return slice(x, d -> n, 0)", "(x: [d, n]) -> [n]", E.ShapeMismatch, "already has it")
    fails("return slice(x, d -> rk, 1.0)", "(x: [d]) -> [rk]", E.InvalidArgument, "whole-number constant")
    fails("return slice(x, d -> rk, d / 4)", "(x: [d]) -> [rk]", E.InvalidArgument, "whole-number constant")
    fails("return slice(x, d -> rk, y)", "(x: [d], y: []) -> [rk]", E.InvalidArgument, "got a wire")
    fails("return slice(x, d -> nope, 0)", "(x: [d]) -> [rk]", E.UnknownName, "nope")


def test_slice_costs_nothing():
    d = check("return slice(x, xp -> ds, 1)", "(x: [n, xp]) -> [n, ds]")
    (row,) = analyse(d, batch=3).boxes
    assert all(f.number == 0 for f in row.flops.values())


# ---------------------------------------------------------------- §7 full, initialiser expressions


def test_full_and_fixed_tables_against_numpy():
    d = check("mask = where(arange(seq) >= arange(ctx), 0, -inf)\n"
              "rel = arange(ctx) - arange(seq)\n"
              "return x + full([seq, ctx], 1e-9) * 0 + full([], 2) + mask + float(rel)",
              "(x: [seq, ctx]) -> [seq, ctx]")
    x = rng().standard_normal((5, 16)).astype(np.float32)
    _, y = run(d, x, seq=5)
    q, k = np.arange(5)[:, None], np.arange(16)[None, :]
    np.testing.assert_allclose(np.asarray(y), x + 2 + np.where(q >= k, 0, -np.inf) + (k - q), rtol=1e-6)
    box = next(b for b in d.boxes if b.op == "full")
    assert d.wire(box.outputs[0]).type == TensorType(d.wire(box.outputs[0]).type.axes, "float")


def test_values_made_from_no_input_are_made_once_per_call():
    program = diagrammar.load(EXAMPLES / "s07_constants.circuit")
    d = program["WindowBias"]
    one, four = analyse(d, batch=1), analyse(d, batch=4)
    for b1, b4 in zip(one.boxes, four.boxes):
        n1, n4 = b1.flops["elementwise"].number, b4.flops["elementwise"].number
        if b1.op == "add" and b1.path.startswith("out"):  # the sums that read the input s
            assert n4 == 4 * n1 > 0
        else:  # dist, slope, allowed, slope * dist and the full table: the same at any batch
            assert n1 == n4, b1.path
    model = d.compile(rngs=nnx.Rngs(0))
    s = rng().standard_normal((3, 4, 10, 10)).astype(np.float32)  # a batch of 3
    dist = np.arange(10)[None, :] - np.arange(10)[:, None]
    slope = np.exp(-(np.arange(4) + 1) * 8 / 4 * np.log(2))
    allowed = np.where(dist > -3, np.where(dist <= 0, 0, -np.inf), -np.inf)
    want = s + slope[:, None, None] * dist + allowed
    np.testing.assert_allclose(np.asarray(model(s)), want, rtol=1e-5)


def test_initialiser_expressions_are_evaluated_once_and_broadcast():
    program = diagrammar.load(EXAMPLES / "s07_constants.circuit")
    d = program["Decay"]
    assert d.parameter_count().value == 8 * 4 + 8
    model = d.compile(rngs=nnx.Rngs(0))
    a_log = np.asarray(model.weight("A_log")[...])
    np.testing.assert_allclose(a_log, np.broadcast_to(np.log(np.arange(4) + 1.0), (8, 4)), rtol=1e-6)
    assert a_log.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(model.weight("D")[...]), np.ones(8))
    assert isinstance(model.weight("A_log"), nnx.Param)
    u = rng().standard_normal(8).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(u)), np.exp(-np.exp(a_log)) * u[:, None] + 1, rtol=1e-6)
    # trainable: a gradient reaches it
    grads = nnx.grad(lambda m: jnp.sum(m(u)))(model)
    assert np.abs(np.asarray(grads["A_log"][...])).sum() > 0


def test_initialiser_expressions_with_free_sizes_repeats_and_casts():
    d = check("param p: [seq, d] = float(arange(seq) * 10) + sin(0) + size(d) // 3\n"
              "repeat 2:\n"
              "    param q: [d] = cos(0) * 2\n"
              "    x = x + q\n"
              "return x + p", "(x: [seq, d]) -> [seq, d]")
    model = d.compile(rngs=nnx.Rngs(0), seq=3)
    p = np.asarray(model.weight("p")[...])
    np.testing.assert_array_equal(p, np.broadcast_to((np.arange(3) * 10.0 + 2)[:, None], (3, 8)))
    q = np.asarray(model.weight("repeat.q")[...])
    assert q.shape == (2, 8) and (q == 2).all()
    assert str(next(w for _, w, _ in d.weights() if w.init.kind == "expr").init) == \
        "float(arange(seq) * 10) + sin(0) + size(d) // 3"


def test_v0_initialisers_keep_their_meaning():
    d = check("param a: [d] = zeros\nparam b: [d] = normal(0.5)\nparam c: [d] = lecun\nreturn x + a + b + c",
              "(x: [d]) -> [d]")
    assert [w.init.kind for _, w, _ in d.weights()] == ["zeros", "normal", "lecun"]
    fails("param s: [d] = kaiming\nreturn x * s", "(x: [d]) -> [d]", E.InvalidArgument, "unknown initialiser")


def test_full_and_initialiser_errors():
    fails("return x + full([d, nope], 0)", "(x: [d]) -> [d]", E.UnknownName, "nope")
    fails("return full([d], x)", "(x: [d]) -> [d]", E.InvalidArgument, "not a wire")
    fails("param p: [d] = x * 2\nreturn p", "(x: [d]) -> [d]", E.InvalidArgument, "the input x")
    fails("y = x * 2\nparam p: [d] = y\nreturn p", "(x: [d]) -> [d]", E.InvalidArgument, "the value y")
    fails("param a: [d] = 1\nparam b: [d] = a + 1\nreturn x + b", "(x: [d]) -> [d]", E.InvalidArgument,
          "the param a")
    fails("param p: [d] = normal(0.02) + 1\nreturn x + p", "(x: [d]) -> [d]", E.InvalidArgument, "random")
    fails("param p: [d] = ones * 2\nreturn x + p", "(x: [d]) -> [d]", E.InvalidArgument, "only on its own")
    fails("param p: [d] = sum(arange(d))\nreturn x + p", "(x: [d]) -> [d]", E.InvalidArgument,
          "cannot appear in an initialiser")
    fails("param p: [d] = float(arange(n))\nreturn x + p", "(x: [d]) -> [d]", E.ShapeMismatch,
          "n is not among its axes")


def test_slice_full_and_initialisers_inside_a_generic_circuit():
    program = diagrammar.parse("axis d = 4, e = 3\n"
                               "circuit Scale[axis c](x: [c]) -> [c]:\n"
                               "    param g: [c] = c\n"
                               "    param h: [c] = float(arange(c)) + 1\n"
                               "    return slice(x, c -> c, 0) * g + h + full([c], size(c))\n"
                               "circuit Top(x: [d], y: [e]) -> [d]:\n"
                               "    return Scale[c = d](x) + sum(Scale[c = e](y))\n", name="t.circuit")
    _, y = run(program["Top"], np.ones(4, np.float32), np.ones(3, np.float32))
    inner_e = (3 + np.arange(1, 4) + 3).sum()
    np.testing.assert_array_equal(np.asarray(y), 4 + np.arange(1, 5) + 4 + inner_e)
