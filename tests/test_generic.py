"""Axis-generic circuits (LANGUAGE-v1 §1): `axis NAME` parameters, bound to an axis at each call.

Typing is substitution, one instantiation per distinct binding; a binding that merges two axes the
text keeps apart is an AxisCapture. The numbers a generic circuit computes are those of the
hand-written copies, on the same weights.
"""
from __future__ import annotations

import numpy as np
import pytest

import diagrammar
from diagrammar import errors
from diagrammar.cli import main

S01 = "tests/language_v1/s01_generic.circuit"

ATTENTION = """axis seq = 6, mem = 5, key = seq, d = 8, heads = 2, dk = d // heads

circuit Attention[axis q, axis k](x: [q, d], ctx: [k, d]) -> [q, d]:
    qh = linear(x, d -> (heads, dk))
    kh = linear(ctx, d -> (heads, dk))
    vh = linear(ctx, d -> (heads, dk))
    a = softmax(dot(qh, kh, over = dk) / sqrt(dk), over = k)
    return linear(dot(a, vh, over = k), (heads, dk) -> d)

circuit SelfAttention(x: [seq, d], ctx: [key, d]) -> [seq, d]:
    qh = linear(x, d -> (heads, dk))
    kh = linear(ctx, d -> (heads, dk))
    vh = linear(ctx, d -> (heads, dk))
    a = softmax(dot(qh, kh, over = dk) / sqrt(dk), over = key)
    return linear(dot(a, vh, over = key), (heads, dk) -> d)

circuit CrossAttention(x: [seq, d], ctx: [mem, d]) -> [seq, d]:
    qh = linear(x, d -> (heads, dk))
    kh = linear(ctx, d -> (heads, dk))
    vh = linear(ctx, d -> (heads, dk))
    a = softmax(dot(qh, kh, over = dk) / sqrt(dk), over = mem)
    return linear(dot(a, vh, over = mem), (heads, dk) -> d)

circuit Scale[axis c](x: [c]) -> [c]:
    param g: [c] = normal(1.0)
    return x * g

circuit ScaleD(x: [d]) -> [d]:
    param g: [d] = normal(1.0)
    return x * g

circuit Generic(x: [seq, d], enc: [mem, d]) -> [seq, d]:
    self_attn = Attention[q = seq, k = key](x, rename(x, seq -> key))
    cross_attn = Attention[q = seq, k = mem](x, enc)
    return Scale[c = d](x + self_attn + cross_attn)

circuit Hand(x: [seq, d], enc: [mem, d]) -> [seq, d]:
    self_attn = SelfAttention(x, rename(x, seq -> key))
    cross_attn = CrossAttention(x, enc)
    return ScaleD(x + self_attn + cross_attn)
"""


def _check(text, **kw):
    return diagrammar.parse(text, name="g.circuit", **kw)


def test_a_generic_circuit_computes_what_hand_written_copies_compute():
    from flax import nnx

    program = _check(ATTENTION)
    generic, hand = program["Generic"], program["Hand"]
    shapes = {name: tuple(str(a.size) for a in w.type.axes) for name, w, _ in generic.weights()}
    assert shapes == {name: tuple(str(a.size) for a in w.type.axes) for name, w, _ in hand.weights()}
    g = generic.compile(rngs=nnx.Rngs(0))
    h = hand.compile(rngs=nnx.Rngs(1))
    for name in shapes:  # the same weights, under the same names
        h.weight(name)[...] = g.weight(name)[...]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 8)).astype(np.float32)
    enc = rng.standard_normal((3, 5, 8)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(g(x, enc)), np.asarray(h(x, enc)), rtol=1e-5, atol=1e-5)


def test_weights_are_named_after_the_call_and_the_binding_is_in_their_shape():
    program = diagrammar.load(S01)
    weights = {name: [(a.name, a.size.value) for a in w.type.axes] for name, w, _ in program["Decoder"].weights()}
    assert weights["self_attn.qh.W"] == [("d", 32), ("heads", 4), ("dk", 8)]
    assert weights["out.g"] == [("d", 32)]
    assert not any("seq" in name or "mem" in name or "[" in name for name in weights)
    text = """axis h1 = 8, w1 = 8, c64 = 4, h2 = 4, w2 = 4, c128 = 6
circuit Block[axis h, axis w, axis c](x: [h, w, c]) -> [h, w, c]:
    conv1 = relu(conv(x, over = (h, w), kernel = (3, 3), c -> c))
    return relu(x + conv(conv1, over = (h, w), kernel = (3, 3), c -> c))
circuit Net(x: [h1, w1, c64]) -> [h2, w2, c128]:
    layer1_0 = Block[h = h1, w = w1, c = c64](x)
    down = conv(layer1_0, over = (h1, w1) -> (h2, w2), kernel = (3, 3), stride = 2, c64 -> c128)
    layer2_1 = Block[h = h2, w = w2, c = c128](down)
    return layer2_1
"""
    w = {name: wt for name, wt, _ in _check(text)["Net"].weights()}
    assert [a.size.value for a in w["layer2_1.conv1.W"].type.axes] == [3, 3, 6, 6]
    assert w["layer2_1.conv1.W"].type.names[2:] == ("c128", "c128")


def test_one_instantiation_per_distinct_binding():
    program = _check(ATTENTION + """
circuit Twice(x: [seq, d], enc: [mem, d]) -> [seq, d]:
    a = Attention[q = seq, k = mem](x, enc)
    b = Attention[k = mem, q = seq](x, enc)
    return a + b
""")
    d = program["Twice"]
    a, b = (box.body for box in d.boxes if box.op == "call")
    assert a is b and a.axis_args == (("q", "seq"), ("k", "mem"))
    assert program.instantiate("Attention", q="seq", k="mem") is a


def test_a_generic_circuit_has_no_diagram_of_its_own(capsys, tmp_path):
    program = diagrammar.load(S01)
    with pytest.raises(errors.InvalidArgument) as e:
        program["Attention"]
    assert "q, k" in e.value.message and "generic" in e.value.message
    assert "Attention" in program and "Attention" not in list(program)
    assert program.own_circuits() == ["Attention", "Scale", "Decoder"]
    assert program.generics == {"Attention": "Attention[axis q, axis k]", "Scale": "Scale[axis c]"}
    assert main(["check", S01]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{S01}: Attention[axis q, axis k] (generic)"
    assert out[1] == f"{S01}: Scale[axis c] (generic)"
    assert out[2].startswith(f"{S01}: Decoder(x: [seq, d], enc: [mem, d]) -> [seq, d]  17 weights")
    svg = tmp_path / "d.svg"
    assert main(["render", S01, "-o", str(svg)]) == 0  # the default circuit is the last with a diagram
    assert "for q = seq, k = key" in svg.read_text()  # the one definition of Attention, drawn for its first binding


def test_one_definition_per_generic_circuit_captioned_with_its_binding():
    from diagrammar.backends.svg.page import definitions

    from diagrammar.backends.svg.page import call_binding_of

    defs = definitions(diagrammar.load(S01)["Decoder"], 1)
    # one definition per generic circuit (every binding shares it), drawn for its first call
    assert [t for t, _, _ in defs] == ["Attention", "Scale"]
    assert [call_binding_of(body) for _, _, body in defs] == ["q = seq, k = key", "c = d"]


def test_an_uncalled_generic_circuit_is_resolved_but_not_typed():
    ok = "axis d = 4\ncircuit G[axis a](x: [a]) -> [a]:\n    return linear(x, a -> d)\n"
    _check(ok)  # a type error nobody instantiates is not reported
    for body, where in (("x + zz", "zz"), ("Foo(x)", "Foo"), ("linear(x, a -> dd)", "dd")):
        with pytest.raises(errors.UnknownName) as e:
            _check(f"axis d = 4\ncircuit G[axis a](x: [a]) -> [a]:\n    return {body}\n")
        assert repr(where) in e.value.message
    with pytest.raises(errors.UnknownName):
        _check("axis d = 4\ncircuit G[axis a](x: [a, b]) -> [a]:\n    return x\n")


def test_binding_errors():
    base = "axis seq = 8, d = 16\ncircuit Scale[axis c](x: [c]) -> [c]:\n    return x\n"
    cases = [("Scale(x)", errors.WrongArity), ("Scale[c = 2 * d](x)", errors.InvalidArgument),
             ("Scale[c = 3](x)", errors.InvalidArgument), ("Scale[c](x)", errors.InvalidArgument),
             ("Scale[c = dd](x)", errors.UnknownName), ("Scale[c = d, c = seq](x)", errors.DuplicateDefinition),
             ("Scale[e = d](x)", errors.InvalidArgument)]
    for call, cls in cases:
        with pytest.raises(cls):
            _check(base + f"circuit F(x: [seq, d]) -> [seq, d]:\n    return {call}\n")
    with pytest.raises(errors.CircuitSyntaxError) as e:
        _check("axis d = 4\ncircuit G[axis a = 4](x: [a]) -> [a]:\n    return x\n")
    assert "no default" in e.value.hint
    with pytest.raises(errors.DuplicateDefinition):
        _check("axis d = 4\ncircuit G[axis a, axis a](x: [a]) -> [a]:\n    return x\n")
    with pytest.raises(errors.AxisValueClash):
        _check("axis d = 4\ncircuit G[axis a](a: [d]) -> [d]:\n    return a\n"
               "circuit F(x: [d]) -> [d]:\n    return G[a = d](x)\n")


def test_axis_capture():
    with pytest.raises(errors.AxisCapture) as e:
        _check("""axis d = 4
circuit Outer[axis a, axis b](x: [a], y: [b]) -> [a]:
    return sum(x * y, over = b)
circuit Bad(u: [d]) -> [d]:
    return Outer[a = d, b = d](u, u)
""")
    assert (e.value.span.line, e.value.span.column, e.value.span.end_column) == (3, 16, 21)  # `x * y`
    assert e.value.notes == ["in Outer[a = d, b = d], called at g.circuit:5:12"]
    # the callee names the bound axis itself: an einsum would match them
    with pytest.raises(errors.AxisCapture):
        _check("""axis d = 4
circuit Inner[axis a](x: [a], y: [d]) -> []:
    return einsum(x, y, -> [])
circuit Bad(u: [d]) -> []:
    return Inner[a = d](u, u)
""")
    # one axis twice in a type
    with pytest.raises(errors.AxisCapture) as e:
        _check("""axis d = 4
circuit Pairs[axis a, axis b](x: [a, b]) -> [b]:
    return sum(x, over = a)
circuit Bad(u: [d]) -> [d]:
    return Pairs[a = d, b = d](rename(u, d -> d))
""")
    assert e.value.span.line == 2


def test_two_parameters_may_share_an_axis_when_the_meaning_is_kept():
    """MAB[qf = hid, kf = hid]: the two feature axes never meet, and hid is also named by the callee."""
    program = _check("""axis n = 5, m = 7, hid = 8
circuit MAB[axis rows, axis cols, axis qf, axis kf](q: [rows, qf], k: [cols, kf]) -> [rows, hid]:
    qh = linear(q, qf -> hid)
    kh = linear(k, kf -> hid)
    a = softmax(dot(qh, kh, over = hid), over = cols)
    return dot(a, kh, over = cols)
circuit Set(x: [n, hid], y: [m, hid]) -> [n, hid]:
    return MAB[rows = n, cols = m, qf = hid, kf = hid](x, y)
""")
    w = {name: wt.type.names for name, wt, _ in program["Set"].weights()}
    assert w["out.qh.W"] == ("hid", "hid")


def test_broadcast_over_axes_the_instantiation_does_not_have():
    program = diagrammar.load(S01)
    out = next(b for b in program["Decoder"].boxes if b.name == "out")
    assert out.attr("batch") == ("seq",) and out.body.axis_args == (("c", "d"),)
    with pytest.raises(errors.ShapeMismatch):  # d is the instantiation's own axis: not broadcast
        _check("""axis seq = 4, d = 8
circuit Proj[axis a](x: [a]) -> [a]:
    return linear(linear(x, a -> d), d -> a)
circuit F(x: [seq, d]) -> [seq, d]:
    return Proj[a = seq](x)
""")


def test_an_error_inside_an_instantiation_names_the_binding_and_the_call():
    with pytest.raises(errors.ShapeMismatch) as e:
        _check("""axis seq = 8, key = seq, d = 16, hidden = 32
circuit Mix[axis q, axis k](x: [q, d], ctx: [k, d]) -> [q, d]:
    a = softmax(dot(x, ctx, over = d), over = k)
    return dot(a, linear(ctx, d -> hidden), over = k)
circuit F(x: [seq, d]) -> [seq, d]:
    return Mix[q = seq, k = key](x, rename(x, seq -> key))
""")
    assert e.value.span.line == 4 and "[seq, hidden]" in e.value.message
    assert e.value.notes == ["in Mix[q = seq, k = key], called at g.circuit:6:12"]
    assert "note: in Mix[q = seq, k = key], called at g.circuit:6:12" in e.value.format()


def test_generic_circuits_compose():
    program = _check("""axis n = 3, m = 4, d = 5, big = 2
circuit Outer[axis a, axis b](x: [a], y: [b]) -> [a, b]:
    return x * y
circuit Swap[axis a, axis b](x: [a], y: [b]) -> [b, a]:
    return Outer[a = b, b = a](y, x)
circuit MLP[axis c, hidden = big * c](x: [c]) -> [c]:
    return linear(relu(linear(x, c -> hidden)), hidden -> c)
circuit Norm[axis d](x: [d]) -> [d]:
    return MLP[c = d](layernorm(x, over = d))
circuit F(x: [n], y: [m], z: [d]) -> ([n, m], [m, n], [d]):
    return Swap[a = m, b = n](y, x), Swap[a = n, b = m](x, y), Norm[d = d](z)
""")
    f = program["F"]
    assert str(f.output.type) == "([n, m], [m, n], [d])"
    weights = {name: [a.size.value for a in w.type.axes] for name, w, _ in f.weights()}
    assert weights["norm.mlp.linear.W"] == [5, 10]  # hidden = big * c follows the binding


def test_scan_and_dispatch_take_an_instantiation():
    from flax import nnx

    program = _check("""axis t = 5, d = 4, hidden = 8, experts = 3, top = 2
circuit Step[axis c](h: [c], x: [c]) -> ([c], [c]):
    h2 = tanh(linear(h, c -> c) + x)
    return h2, h2
circuit Expert[axis c](x: [c]) -> [c]:
    return linear(relu(linear(x, c -> hidden)), hidden -> c)
circuit F(xs: [t, d]) -> [t, d]:
    h0 = sum(xs, over = t)
    last, ys = scan(Step[c = d], xs, along = t, init = h0)
    return ys + last
circuit Routed(x: [d]) -> [d]:
    p, idx = topk(softmax(linear(x, d -> experts), over = experts), over = experts -> top)
    return sum(p * dispatch(Expert[c = d], x, index = idx, along = experts), over = top)
""")
    model = program["F"].compile(rngs=nnx.Rngs(0))
    assert model(np.ones((5, 4), np.float32)).shape == (5, 4)
    assert program["Routed"].parameter_count().value == 3 * (4 * 8 + 8 + 8 * 4 + 4) + 4 * 3 + 3
    with pytest.raises(errors.WrongArity):
        _check("""axis t = 5, d = 4
circuit Step[axis c](h: [c], x: [c]) -> ([c], [c]):
    return h + x, h
circuit F(xs: [t, d]) -> [t, d]:
    last, ys = scan(Step, xs, along = t, init = sum(xs, over = t))
    return ys
""")
    with pytest.raises(errors.InvalidArgument):  # named without a call anywhere else
        _check("axis d = 4\ncircuit G[axis c](x: [c]) -> [c]:\n    return x\n"
               "circuit F(x: [d]) -> [d]:\n    y = G[c = d]\n    return x\n")


def test_a_name_parameter_shadows_a_global_axis_and_may_be_bound_to_a_free_one():
    from flax import nnx

    program = _check("""axis c = 3, seq, d = 4
circuit Scale[axis c](x: [c]) -> [c]:
    param g: [c] = ones
    return x * g * size(c)
circuit F(x: [seq, d]) -> [seq, d]:
    return Scale[c = seq](Scale[c = d](x))
""")
    f = program["F"]
    assert {name: w.type.names for name, w, _ in f.weights()} == {"scale.g": ("d",), "scale_2.g": ("seq",)}
    model = f.compile(rngs=nnx.Rngs(0), seq=2)
    np.testing.assert_allclose(np.asarray(model(np.ones((2, 4), np.float32))), np.full((2, 4), 8.0))


def test_require_in_a_generic_body_is_checked_per_binding():
    text = """axis d = 24, e = 10
circuit Heads[axis c, h = 4](x: [c]) -> [c]:
    require c % h == 0
    return x
circuit F(x: [d], y: [e]) -> [d]:
    return Heads[c = d](x) + sum(Heads[c = e](y), over = e)
"""
    with pytest.raises(errors.RequirementFailed) as e:
        _check(text)
    assert e.value.message == "require c % h == 0 fails: c = 10, h = 4"
    assert e.value.notes == ["in Heads[c = e], called at g.circuit:6:34"]
