"""Typing rules of the checker: for each operation a program that checks and one that must not."""
import pytest

import diagrammar
from diagrammar import errors as E
from diagrammar.ir import Size, TensorType

HEADER = """\
axis seq = 8, key = seq, d = 16, hidden = 32, heads = 4, dk = d // heads, two = 2, three = 3
axis vocab = 10, n = 3, m = 2, nm = n * m, n2 = n + n, free_len
axis hh = 8, ww = 8, h2 = 4, w2 = 4, c1 = 3, c2 = 5
"""


def check(sig: str, body: str, extra: str = ""):
    """Check one circuit `F` with the shared axis header; returns its diagram."""
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    program = diagrammar.parse(HEADER + extra + f"circuit F{sig}:\n{lines}\n", name="test.circuit")
    return program["F"]


def out(d) -> set[str]:
    return set(d.output.type.names)


# (rule, signature, body that checks, expected output axes,
#  body that fails, error class, words the message must contain)
RULES = [
    ("add broadcasts by name", "(x: [seq, d], y: [d]) -> [seq, d]", "return x + y", {"seq", "d"},
     "return x + y + linear(y, d -> hidden)", E.ShapeMismatch, "signature says"),
    ("comparison gives bool", "(x: [d]) -> bool[d]", "return x > 0", {"d"},
     "return x + 0", E.ShapeMismatch, "bool[d]"),
    ("where needs bool", "(x: [d], mask: bool[d]) -> [d]", "return where(mask, x, -x)", {"d"},
     "return where(x, x, -x)", E.ShapeMismatch, "condition must be bool"),
    ("unary", "(x: [d]) -> [d]", "return gelu(silu(tanh(sigmoid(softplus(exp(log(sqrt(abs(square(relu(x)))))))))))",
     {"d"}, "return relu(x, x)", E.WrongArity, "positional"),
    ("maximum", "(x: [d], y: [seq]) -> [d, seq]", "return maximum(x, y) + minimum(x, y)", {"d", "seq"},
     "return maximum(x)", E.WrongArity, "needs its argument 'b'"),
    ("linear", "(x: [seq, d]) -> [seq, heads, dk]", "return linear(x, d -> (heads, dk))", {"seq", "heads", "dk"},
     "return linear(x, hidden -> d)", E.ShapeMismatch, "linear maps hidden"),
    ("linear square", "(x: [d]) -> [d]", "return linear(x, d -> d, bias = false)", {"d"},
     "return linear(x, d -> d, bias = maybe)", E.InvalidArgument, "true, false"),
    ("linear output clash", "(x: [seq, d]) -> [d]", "return linear(x, (seq, d) -> d)", {"d"},
     "return linear(x, d -> seq)", E.ShapeMismatch, "already on its input"),
    ("dot", "(q: [seq, heads, dk], k: [key, heads, dk]) -> [seq, key, heads]", "return dot(q, k, over = dk)",
     {"seq", "key", "heads"}, "return dot(q, k, over = seq)", E.ShapeMismatch, "no seq"),
    ("einsum", "(a: [seq, d], b: [d, hidden]) -> [seq, hidden]", "return einsum(a, b, -> [seq, hidden])",
     {"seq", "hidden"}, "return einsum(a, b, -> [seq, vocab])", E.ShapeMismatch, "on no operand"),
    ("reductions", "(x: [seq, d]) -> [d]",
     "return sum(x, over = seq) + mean(x, over = seq) + max(x, over = seq) + min(x, over = seq) + logsumexp(x, over = seq)",
     {"d"}, "return sum(x, over = hidden)", E.ShapeMismatch, "no hidden"),
    ("reduce all", "(x: [seq, d]) -> []", "return mean(x)", set(),
     "return mean(x, over = (seq, seq))", E.ShapeMismatch, "twice"),
    ("softmax", "(x: [seq, key]) -> [seq, key]", "return softmax(x, over = key) + log_softmax(x, over = key)",
     {"seq", "key"}, "return softmax(x)", E.WrongArity, "over"),
    ("argmax", "(x: [seq, d]) -> int[seq]", "return argmax(x, over = d)", {"seq"},
     "return argmax(x, over = (seq, d))", E.InvalidArgument, "one axis"),
    ("layernorm", "(x: [seq, d]) -> [seq, d]", "return layernorm(x, over = d) + rmsnorm(x, over = d, eps = 1e-5)",
     {"seq", "d"}, "return layernorm(x, over = vocab)", E.ShapeMismatch, "no vocab"),
    ("causal", "(s: [seq, key]) -> [seq, key]", "return causal(s, seq, key)", {"seq", "key"},
     "return causal(s, seq, seq)", E.InvalidArgument, "two different axes"),
    ("onehot", "(i: int[seq]) -> [seq, vocab]", "return onehot(i, vocab)", {"seq", "vocab"},
     "return onehot(i, seq)", E.ShapeMismatch, "already has it"),
    ("onehot needs int", "(i: int[seq]) -> [seq, vocab]", "return onehot(i, vocab)", {"seq", "vocab"},
     "return onehot(onehot(i, vocab), d)", E.ShapeMismatch, "int indices"),
    ("embed", "(i: int[seq]) -> [seq, d]", "return embed(i, vocab -> d)", {"seq", "d"},
     "return embed(i, vocab -> seq)", E.ShapeMismatch, "already on the indices"),
    ("arange", "() -> int[seq]", "return arange(seq)", {"seq"},
     "return arange(sequence)", E.UnknownName, "sequence"),
    ("gather", "(x: [seq, d], i: int[n]) -> [n, d]", "return gather(x, i, along = seq)", {"n", "d"},
     "return gather(x, i, along = n)", E.ShapeMismatch, "no n"),
    ("take", "(x: [seq, d]) -> [d]", "return take(x, seq, -1)", {"d"},
     "return take(x, seq, 8)", E.InvalidArgument, "outside seq"),
    ("rename", "(x: [seq, d]) -> [key, d]", "return rename(x, seq -> key)", {"key", "d"},
     "return rename(x, seq -> d)", E.SizeConflict, "changes the size"),
    ("merge", "(x: [n, m]) -> [nm]", "return merge(x, (n, m) -> nm)", {"nm"},
     "return merge(x, (n, m) -> d)", E.SizeConflict, "merge makes d"),
    ("split", "(x: [nm]) -> [m, n]", "return split(x, nm -> (m, n))", {"m", "n"},
     "return split(x, nm -> (n, n2))", E.SizeConflict, "split takes nm"),
    ("stack", "(x: [d], y: [d]) -> [two, d]", "return stack(x, y, along = two)", {"two", "d"},
     "return stack(x, y, along = three)", E.SizeConflict, "needs 3 operands"),
    ("stack types", "(x: [d], y: [d]) -> [two, d]", "return stack(x, y, along = two)", {"two", "d"},
     "return stack(x, onehot(arange(seq), d), along = two)", E.ShapeMismatch, "one type"),
    ("concat", "(x: [n, d]) -> [n2, d]", "return concat(x, x, along = n -> n2)", {"n2", "d"},
     "return concat(x, x, x, along = n -> n2)", E.SizeConflict, "size"),
    ("concat different", "(x: [n, d], y: [m, d]) -> [n2, d]", "return concat(x, x, along = (n, n) -> n2)", {"n2", "d"},
     "return concat(x, y, along = (n, m) -> n2)", E.SizeConflict, "concat makes n2"),
    ("conv", "(x: [hh, ww, c1]) -> [hh, ww, c2]", "return conv(x, over = (hh, ww), kernel = (3, 3), c1 -> c2)",
     {"hh", "ww", "c2"}, "return conv(x, over = (hh, ww), kernel = (3, 3), stride = 2, c1 -> c2)", E.SizeConflict,
     "name the new axes"),
    ("conv strided", "(x: [hh, ww, c1]) -> [h2, w2, c2]",
     "return conv(x, over = (hh, ww) -> (h2, w2), kernel = (3, 3), stride = 2, c1 -> c2)", {"h2", "w2", "c2"},
     "return conv(x, over = (hh, ww) -> (h2, w2), kernel = (3, 3), stride = 3, c1 -> c2)", E.SizeConflict,
     "gives h2 the size 3"),
    ("pool", "(x: [hh, ww, c1]) -> [h2, w2, c1]", "return pool(x, over = (hh, ww) -> (h2, w2), window = (2, 2), op = mean)",
     {"h2", "w2", "c1"}, "return pool(x, over = (hh, ww) -> (h2, w2), window = (2, 2), op = median)",
     E.InvalidArgument, "max, mean"),
    ("dropout", "(x: [d]) -> [d]", "return dropout(x, 0.5)", {"d"},
     "return dropout(x, 1.5)", E.InvalidArgument, "[0, 1)"),
    ("param", "(x: [d]) -> [d]", "param s: [d] = uniform(-0.1, 0.1)\nreturn x * s", {"d"},
     "param s: int[d] = zeros\nreturn x", E.InvalidArgument, "float bundle"),
    ("initialiser", "(x: [d]) -> [d]", "param s: [d] = lecun\nreturn x * s", {"d"},
     "param s: [d] = kaiming\nreturn x * s", E.InvalidArgument, "unknown initialiser"),
    ("tuple unpacking", "(x: [d]) -> [d]", "a, b = (x, -x)\nreturn a + b", {"d"},
     "a, b, c = (x, -x)\nreturn a", E.WrongArity, "3 names"),
    ("tuple return", "(x: [d]) -> ([d], [seq])", "return x, onehot(arange(seq), seq)[0:0] " if False else
     "return x, sum(onehot(arange(seq), d), over = d)", {"d"} if False else None,
     "return x", E.WrongArity, "returns 1 bundle"),
    ("size constant", "(x: [d]) -> [d]", "return x / sqrt(dk) * size(heads) + d", {"d"},
     "return x / sqrt(dk, d)", E.WrongArity, "positional"),
]


@pytest.mark.parametrize("rule", RULES, ids=[r[0] for r in RULES])
def test_rule_accepts(rule):
    _, sig, good, axes, *_ = rule
    d = check(sig, good)
    if axes is not None:
        assert out(d) == axes


@pytest.mark.parametrize("rule", RULES, ids=[r[0] for r in RULES])
def test_rule_rejects(rule):
    _, sig, _, _, bad, cls, words = rule
    with pytest.raises(cls) as info:
        check(sig, bad)
    assert words in info.value.message
    assert info.value.span is not None and info.value.span.file == "test.circuit"


def test_call_broadcasts_over_extra_axes():
    extra = "circuit G(x: [d]) -> [hidden]:\n    return relu(linear(x, d -> hidden))\n"
    d = check("(x: [seq, d]) -> [seq, hidden]", "return G(x)", extra)
    call = d.boxes[-1]
    assert call.op == "call" and call.attr("batch") == ("seq",)


def test_call_argument_mismatch_shows_both_types():
    extra = "circuit G(x: [d]) -> [d]:\n    return x\n"
    with pytest.raises(E.ShapeMismatch) as info:
        check("(x: [hidden]) -> [d]", "return G(x)", extra)
    text = info.value.format()
    assert "input" in text and "argument" in text and "hidden" in text


def test_call_axis_parameters_bind_per_call():
    extra = "circuit G[w = 2 * d](x: [d]) -> [d]:\n    return linear(relu(linear(x, d -> w)), w -> d)\n"
    d = check("(x: [d]) -> [d]", "return G[w = 64](x) + G(x)", extra)
    sizes = sorted(w.type.numel().value for name, w, _ in d.weights() if name.endswith(".W"))
    assert sizes == [16 * 32, 16 * 32, 16 * 64, 16 * 64]


def test_unknown_axis_parameter():
    extra = "circuit G[w = 2 * d](x: [d]) -> [d]:\n    return x\n"
    with pytest.raises(E.InvalidArgument, match="no axis parameter 'width'"):
        check("(x: [d]) -> [d]", "return G[width = 64](x)", extra)


def test_recursion_is_an_error():
    with pytest.raises(E.RecursiveCircuit):
        check("(x: [d]) -> [d]", "return F(x)")


def test_scan_types():
    extra = ("circuit Step(s: [hidden], x: [d]) -> ([hidden], [d]):\n"
             "    s = tanh(linear(x, d -> hidden) + s)\n    return s, linear(s, hidden -> d)\n")
    d = check("(xs: [seq, d]) -> [seq, d]", "param s0: [hidden] = zeros\nlast, ys = scan(Step, xs, along = seq, init = s0)\nreturn ys", extra)
    box = [b for b in d.boxes if b.op == "scan"][0]
    assert box.attr("along") == "seq" and box.attr("length") == Size.of(8)
    assert box.name == "step"
    with pytest.raises(E.ShapeMismatch, match="no key"):
        check("(xs: [seq, d]) -> [seq, d]", "param s0: [hidden] = zeros\nlast, ys = scan(Step, xs, along = key, init = s0)\nreturn ys", extra)


def test_scan_without_sequences_runs_size_steps():
    extra = "circuit Count(s: [d]) -> ([d], [d]):\n    return s + 1, s\n"
    d = check("(x: [d]) -> [free_len, d]", "last, ys = scan(Count, along = free_len, init = x)\nreturn ys", extra)
    assert d.free_sizes() == {"free_len"}


def test_repeat_keeps_types_and_names_weights():
    d = check("(x: [d]) -> [d]", "repeat 3:\n    x = x + linear(x, d -> d)\nreturn x")
    names = [n for n, _, copies in d.weights()]
    assert names == ["repeat.x.W", "repeat.x.b"]
    assert d.parameter_count().value == 3 * (16 * 16 + 16)
    with pytest.raises(E.ShapeMismatch, match="changes the type of x"):
        check("(x: [d]) -> [d]", "repeat 3:\n    x = linear(x, d -> hidden)\nreturn x")


def test_weight_names_follow_bindings():
    d = diagrammar.load("circuits/grok_transformer.circuit")["GrokTransformer"]
    names = [n for n, _, _ in d.weights()]
    assert "attention.q.W" in names and "pos_embed" in names and "out.W" in names
    assert len(set(names)) == len(names)


def test_all_errors_in_one_run():
    with pytest.raises(E.CircuitError) as info:
        check("(x: [d]) -> [d]", "a = relu(y)\nb = linear(x, hidden -> d)\nc = onehot(x, d)\nreturn x")
    kinds = [type(e) for e in info.value.errors]
    assert kinds == [E.UnknownName, E.ShapeMismatch, E.ShapeMismatch]
    assert "3 errors" in info.value.format()


def test_errors_do_not_cascade():
    with pytest.raises(E.CircuitError) as info:
        check("(x: [d]) -> [d]", "a = relu(y)\nb = a + a\nreturn b * 2")
    assert len(info.value.errors) == 1


def test_axis_value_clash_and_duplicates():
    with pytest.raises(E.AxisValueClash):
        check("(d: [seq]) -> [seq]", "return d")
    with pytest.raises(E.DuplicateDefinition):
        diagrammar.parse("axis d = 2\naxis d = 3\ncircuit F(x: [d]) -> [d]:\n    return x\n")
    with pytest.raises(E.DuplicateDefinition):
        check("(x: [d], x: [d]) -> [d]", "return x")


@pytest.mark.parametrize("header,cls", [
    ("axis d = 0", E.SizeTooLarge),
    ("axis d = 4 - 5", E.SizeTooLarge),
    ("axis d = e", E.UnknownName),
    ("axis d = d2 * 2, d2 = d", E.SizeConflict),
    ("axis d = 8 // 0", E.SizeConflict),
    ("axis d = 2.5", E.CircuitSyntaxError),
])
def test_bad_sizes(header, cls):
    with pytest.raises(cls):
        diagrammar.parse(header + "\ncircuit F(x: [d]) -> [d]:\n    return x\n")


def test_weight_budget_is_configurable():
    src = "axis d = 1000\ncircuit F(x: [d]) -> [d]:\n    return linear(x, d -> d)\n"
    assert diagrammar.parse(src)["F"].parameter_count().value == 1_001_000
    with pytest.raises(E.SizeTooLarge, match="1,000,000 elements"):
        diagrammar.parse(src, max_weight_elements=999_999)


def test_symbolic_sizes_compare_by_value():
    src = ("axis seq, twice = 2 * seq, again = seq + seq\n"
           "circuit F(x: [twice]) -> [again]:\n    return rename(x, twice -> again)\n")
    d = diagrammar.parse(src)["F"]
    assert d.free_sizes() == {"seq"}
    assert str(d.output.type.axes[0].size) == "2*seq"


def test_size_arithmetic():
    s = Size.symbol("d")
    assert (s * Size.of(4)) // Size.of(2) == s * Size.of(2)
    assert str((s * Size.of(4)) // s) == "4"
    assert (s // Size.of(3)).evaluate({"d": 10}) == 3
    assert (s - s) == Size.of(0)


def test_types_are_sets_of_axes():
    d = check("(x: [seq, d]) -> [d, seq]", "return x")
    assert d.output.type.same(TensorType(tuple(reversed(d.inputs[0].type.axes))))


def test_use_reads_bundled_library_and_refuses_escape(tmp_path):
    (tmp_path / "m.circuit").write_text('use "attention.circuit"\ncircuit F(x: [seq, d]) -> [seq, d]:\n'
                                        '    return SelfAttention(x)\n')
    assert "SelfAttention" in diagrammar.load(tmp_path / "m.circuit")
    secret = tmp_path.parent / "outside_secret.circuit"
    secret.write_text("axis d = 1\n")
    sub = tmp_path / "proj"
    sub.mkdir()
    (sub / "m.circuit").write_text('use "../outside_secret.circuit"\naxis e = 2\n'
                                   'circuit F(x: [e]) -> [e]:\n    return x\n')
    with pytest.raises(E.UseOutsideRoots):
        diagrammar.load(sub / "m.circuit")
    (sub / "link.circuit").symlink_to(secret)
    (sub / "n.circuit").write_text('use "link.circuit"\naxis e = 2\ncircuit F(x: [e]) -> [e]:\n    return x\n')
    with pytest.raises(E.UseOutsideRoots):
        diagrammar.load(sub / "n.circuit")
    (sub / "o.circuit").write_text('use "/etc/passwd.circuit"\naxis e = 2\ncircuit F(x: [e]) -> [e]:\n    return x\n')
    with pytest.raises(E.UseOutsideRoots):
        diagrammar.load(sub / "o.circuit")
    (sub / "p.circuit").write_text('use "missing.circuit"\naxis e = 2\ncircuit F(x: [e]) -> [e]:\n    return x\n')
    with pytest.raises(E.UseNotFound):
        diagrammar.load(sub / "p.circuit")


def test_use_diamond_and_size_agreement(tmp_path):
    (tmp_path / "base.circuit").write_text("axis d = 4\ncircuit Id(x: [d]) -> [d]:\n    return x\n")
    (tmp_path / "a.circuit").write_text('use "base.circuit"\n')
    (tmp_path / "b.circuit").write_text('use "base.circuit"\naxis d = 4\n')
    (tmp_path / "top.circuit").write_text('use "a.circuit"\nuse "b.circuit"\n'
                                          'circuit F(x: [d]) -> [d]:\n    return Id(x)\n')
    assert diagrammar.load(tmp_path / "top.circuit")["F"].output.type.names == ("d",)
    (tmp_path / "c.circuit").write_text('use "base.circuit"\naxis d = 5\n')
    with pytest.raises(E.SizeConflict):
        diagrammar.load(tmp_path / "c.circuit")


def test_ir_is_deterministic_and_hashable():
    a = diagrammar.load("circuits/transformer.circuit")["Decoder"]
    b = diagrammar.load("circuits/transformer.circuit")["Decoder"]
    assert a == b and hash(a) == hash(b)
    assert repr(a) == repr(b)


def test_graph_view():
    d = diagrammar.load("circuits/grok_transformer.circuit")["GrokTransformer"]
    g = d.graph()
    import networkx as nx
    assert nx.is_directed_acyclic_graph(g)
    assert g.number_of_nodes() == len(d.boxes) + len(d.inputs) + 1


def test_roles_mark_broadcasting():
    d = check("(x: [seq, d]) -> [seq, hidden]", "return linear(x, d -> hidden)")
    box = d.boxes[-1]
    assert dict(box.roles) == {"seq": "passing", "hidden": "produced", "d": "consumed"}


def test_whole_number_constants_keep_int_dtype():
    d = check("() -> int[seq]", "return maximum(arange(seq) - 1, 0) * 2")
    assert d.output.type.dtype == "int"
    d = check("() -> [seq]", "return arange(seq) / 2")
    assert d.output.type.dtype == "float"


def test_failed_call_does_not_cascade_into_unpacking():
    extra = "circuit G(x: [d]) -> ([d], [d]):\n    return relu(q), x\n"
    with pytest.raises(E.CircuitError) as info:
        check("(x: [d]) -> [d]", "a, b = G(x)\nreturn a + b", extra)
    assert [type(e) for e in info.value.errors] == [E.UnknownName]
