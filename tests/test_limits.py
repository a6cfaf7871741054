"""Limits (issue 13): a bad program gets a span error, never a Python traceback.

Each case is a small program built here. At a limit the program checks; just over it, the error is a
CircuitError with a line and a column (never RecursionError, OverflowError or ValueError).
"""
import re
from pathlib import Path

import pytest

import diagrammar
from diagrammar import errors as E
from diagrammar import limits

N = limits.MAX_NESTING
HEADER = "axis d = 4\n"


def program(body: str, sig: str = "(x: [d]) -> [d]", header: str = HEADER) -> str:
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    return header + f"circuit F{sig}:\n{lines}\n"


def fails(text: str, cls, words: str = "", **kw) -> E.CircuitError:
    with pytest.raises(cls) as info:
        diagrammar.parse(text, name="t.circuit", **kw)
    e = info.value
    assert e.span is not None and e.span.line >= 1 and e.span.column >= 1, e
    assert words in e.message, e.message
    return e


def checks(text: str, **kw):
    return diagrammar.parse(text, name="t.circuit", **kw)


# ---------------------------------------------------------------- nesting depth

def _tuple_type(n: int) -> str:
    t = "[d]"
    for _ in range(n):
        t = f"({t}, [d])"
    return t


def _repeats(n: int) -> str:  # n repeats nested, around a statement 1 deep
    lines = ["circuit F(x: [d]) -> [d]:"]
    lines += ["    " * (i + 1) + "repeat 2:" for i in range(n)]
    lines += ["    " * (n + 1) + "x = relu(x)", "    return x"]
    return HEADER + "\n".join(lines) + "\n"


NESTED = {  # depth -> a program whose deepest part is nested that deep
    "sum": lambda n: program("return " + " + ".join(["x"] * (n + 1))),
    "calls": lambda n: program("return " + "relu(" * n + "x" + ")" * n),
    "negations": lambda n: program("return " + "-" * n + "x"),
    "casts": lambda n: program("return " + "float(" * n + "x" + ")" * n),
    "calls and sums": lambda n: program("return " + "relu(x + " * (n // 2) + ("relu(x)" if n % 2 else "x")
                                           + ")" * (n // 2)),
    "constant": lambda n: program("return x * (" + " + ".join(["1"] * n) + ")"),
    "constant functions": lambda n: program("return x * " + "tanh(" * (n - 1) + "1" + ")" * (n - 1)),
    "size": lambda n: "axis d = " + " + ".join(["1"] * (n + 1)) + "\n" + program("return x", header=""),
    "tuple type": lambda n: program("return x", f"(x: {_tuple_type(n)}) -> {_tuple_type(n)}"),
}


def test_repeats_nested_over_the_nesting_limit_are_a_syntax_error():
    """Loops have a lower limit of their own (MAX_LOOP_DEPTH, tests/test_call_chains.py); past
    MAX_NESTING the parser stops first."""
    e = fails(_repeats(N), E.CircuitSyntaxError, f"the limit is {N}")
    assert "MAX_NESTING" in e.message
    checks(_repeats(limits.MAX_LOOP_DEPTH))
    fails(_repeats(limits.MAX_LOOP_DEPTH + 1), E.InvalidArgument, "MAX_LOOP_DEPTH")


@pytest.mark.parametrize("kind", sorted(NESTED))
def test_nesting_at_the_limit_checks_and_one_more_is_a_span_error(kind):
    checks(NESTED[kind](N))
    e = fails(NESTED[kind](N + 1), E.CircuitSyntaxError, f"the limit is {N}")
    assert "MAX_NESTING" in e.message


def test_nesting_leaves_room_on_the_stack(monkeypatch):
    """At the limit the deepest construct needs well under Python's default recursion limit (1000)."""
    import sys
    monkeypatch.setattr(sys, "getrecursionlimit", sys.getrecursionlimit)  # restored by monkeypatch
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(800)
    try:
        for kind in NESTED:
            checks(NESTED[kind](N))
    finally:
        sys.setrecursionlimit(old)


@pytest.mark.parametrize("text", [
    program("return " + " + ".join(["x"] * 500)),  # an expression of 500 terms
    program("return " + "relu(" * 500 + "x" + ")" * 500),  # 500 nested calls
    "axis d = " + " + ".join(["1"] * 1000) + "\n" + program("return x", header=""),  # a size of 1,000 terms
    program("return x", f"(x: {_tuple_type(500)}) -> [d]"),  # a tuple type 500 deep
    program("return " + "(" * 5000 + "x" + ")" * 5000 + " + " + "relu(" * 300 + "x" + ")" * 300),
], ids=["sum500", "calls500", "size1000", "tuple500", "parens-and-calls"])
def test_issue_13_deep_programs_are_span_errors(text):
    fails(text, E.CircuitSyntaxError, "MAX_NESTING")


def test_parentheses_alone_do_not_nest():
    checks(program("return " + "(" * 1000 + "x" + ")" * 1000))


def test_each_statement_starts_afresh():
    body = "\n".join("x = " + " + ".join(["x"] * N) for _ in range(5)) + "\nreturn x"
    checks(program(body))


# ---------------------------------------------------------------- program size, literals

def test_program_over_the_size_limit_is_refused_before_parsing():
    text = program("return x") + "#" * limits.MAX_PROGRAM_BYTES
    e = fails(text, E.CircuitSyntaxError, "MAX_PROGRAM_BYTES")
    assert (e.span.line, e.span.column) == (1, 1)


def test_literal_at_the_limit_checks_and_one_more_is_a_span_error():
    digits = limits.MAX_LITERAL_DIGITS
    checks(program("return x * 0." + "0" * (digits - 3) + "1"))
    e = fails(program("return x * 0." + "0" * (digits - 2) + "1"), E.CircuitSyntaxError, "MAX_LITERAL_DIGITS")
    assert (e.span.line, e.span.column) == (3, 16)


def test_size_literal_of_4301_digits_is_a_span_error():
    e = fails("axis d = " + "9" * 4301 + "\n" + program("return x", header=""), E.CircuitSyntaxError,
              "MAX_LITERAL_DIGITS")
    assert (e.span.line, e.span.column) == (1, 10)


def test_number_literal_too_large_for_a_float():
    e = fails(program("return take(x, d, 1e999)", "(x: [d]) -> []"), E.CircuitSyntaxError, "too large for a float")
    assert (e.span.line, e.span.column) == (3, 23)
    assert "inf" in e.hint


# ---------------------------------------------------------------- chains of `use`

def _chain(folder: Path, n: int) -> Path:
    for i in range(n):
        use = f'use "f{i + 1}.circuit"\n' if i + 1 < n else ""
        (folder / f"f{i}.circuit").write_text(use + f"axis a{i} = 2\n")
    return folder / "f0.circuit"


def test_use_chain_at_the_limit_loads(tmp_path):
    program_ = diagrammar.load(_chain(tmp_path, limits.MAX_USE_DEPTH))
    assert f"a{limits.MAX_USE_DEPTH - 1}" in program_.axes


@pytest.mark.parametrize("n", [limits.MAX_USE_DEPTH + 1, 350])
def test_use_chain_over_the_limit_is_a_span_error(tmp_path, n):
    with pytest.raises(E.InvalidArgument) as info:
        diagrammar.load(_chain(tmp_path, n))
    e = info.value
    assert "MAX_USE_DEPTH" in e.message and f"the limit is {limits.MAX_USE_DEPTH}" in e.message
    assert e.span.file.endswith(f"f{limits.MAX_USE_DEPTH - 1}.circuit") and (e.span.line, e.span.column) == (1, 1)


# ---------------------------------------------------------------- constant folding

@pytest.mark.parametrize("body, words, column", [
    ("return x + 0 * inf", "NaN", 16),
    ("return x + (inf - inf)", "NaN", 17),
    ("return x * exp(1000)", "overflows", 16),
    ("return x * (1e300 * 1e300)", "overflows", 17),
    ("return x * sqrt(-1)", "outside the domain of sqrt", 16),
    ("return x * log(0 - 1)", "outside the domain of log", 16),
    ("return x * (1 / 0)", "divides by zero", 17),
    ("return dropout(x, log(-1))", "outside the domain of log", 23),
    ("return dropout(x, inf)", "must be a finite number", 23),
    ("return x * full([d], sqrt(-4))", "outside the domain of sqrt", 26),
])
def test_constants_without_a_value_are_span_errors(body, words, column):
    e = fails(program(body), E.InvalidArgument, words)
    assert (e.span.line, e.span.column) == (3, column)


def test_take_at_an_infinite_index_is_a_span_error():
    e = fails(program("return take(x, d, inf)", "(x: [d]) -> []"), E.InvalidArgument, "finite")
    assert (e.span.line, e.span.column) == (3, 23)


def test_param_initialiser_without_a_value_is_a_span_error():
    fails(program("param w: [d] = full([d], exp(1000))\nreturn x * w"), E.InvalidArgument, "overflows")


@pytest.mark.parametrize("body", [
    "return where(x > 0, x, -inf)",
    "return x + inf",
    "return x - inf * 2",
    "return x * exp(10) * sigmoid(-1000) * softplus(1000)",
    "return x * (1e300 * 1e-300)",
])
def test_infinities_as_written_and_finite_constants_stay_legal(body):
    checks(program(body))


# ---------------------------------------------------------------- int constants are int32

def test_int_constant_over_int32_is_a_span_error():
    e = fails(program("return arange(d) + 3000000000", "(x: [d]) -> int[d]"), E.InvalidArgument, "int32")
    assert (e.span.line, e.span.column) == (3, 24)
    fails(program("return arange(d) * (65536 * 65536)", "(x: [d]) -> int[d]"), E.InvalidArgument, "int32")


def test_int_constant_at_int32_bounds_checks():
    checks(program("return arange(d) + 2147483647 - (0 - 2147483648) * 0", "(x: [d]) -> int[d]"))


# ---------------------------------------------------------------- the docs state the same limits

def test_docs_table_states_the_limits():
    text = (Path(__file__).resolve().parent.parent / "docs" / "language.md").read_text()
    section = text.split("### Limits", 1)[1].split("\n#", 1)[0]
    for name in limits.__all__:
        value = getattr(limits, name)
        row = next((line for line in section.splitlines() if f"`{name}`" in line), None)
        assert row is not None, name
        numbers = [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", row.split("|")[2])]
        assert value in numbers, (name, row)


# ---------------------------------------------------------------- the whole model's budget (train)

def _tiny_with(tiny: str, path: Path, axes: str, body: str) -> str:
    text = Path(tiny).read_text().replace("axis hidden = 8", "axis hidden = 8\n" + axes)
    path.write_text(text.replace("    return linear(h, hidden -> p)", body))
    return str(path)


def test_train_refuses_13_weights_each_just_under_the_weight_budget_before_allocating(tiny, tmp_path, capsys):
    """Issue 13: 13 weights of 2,147,395,600 elements each (111 GB in all) checked and compiled, then JAX
    ran out of memory. Each is under the per-weight budget; train refuses the whole before allocating
    (this test would otherwise try to allocate 111 GB)."""
    from diagrammar.cli import main

    body = "    g = linear(h, hidden -> w)\n" + "".join("    g = linear(g, w -> w)\n" for _ in range(13)) \
        + "    return linear(g, w -> p)"
    big = _tiny_with(tiny, tmp_path / "big.circuit", "axis w = 46340", body)
    d = diagrammar.load(big)["Tiny"]
    assert sum(1 for _, wt, _ in d.weights() if wt.type.numel().value == 46340 ** 2) == 13
    assert all(wt.type.numel().value < 2 ** 31 for _, wt, _ in d.weights())
    assert main(["train", big, "--circuit", "Tiny", "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"over the training budget of {limits.DEFAULT_MAX_PARAMETERS:,} (--max-parameters)" in err
    assert "nothing was allocated" in err and "raise --max-parameters" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_model_whose_activations_are_over_the_byte_budget(tiny, tmp_path, capsys):
    """Few weights, but an activation of 8 x 46,340 x 46,340 floats (69 GB) at batch 1."""
    from diagrammar.backends.cost import analyse
    from diagrammar.cli import main

    body = "    g = sum(h * full([w, v], 1.0), over = (w, v))\n    return linear(g, hidden -> p)"
    big = _tiny_with(tiny, tmp_path / "wide.circuit", "axis w = 46340, v = 46340", body)
    peak = analyse(diagrammar.load(big)["Tiny"]).peak_bytes.number
    assert peak > limits.DEFAULT_MAX_MODEL_BYTES
    assert main(["train", big, "--circuit", "Tiny", "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{peak:,} bytes" in err and f"over the model budget of {limits.DEFAULT_MAX_MODEL_BYTES:,} bytes" in err
    assert "(--max-model-bytes); nothing was allocated" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    small = _tiny_with(tiny, tmp_path / "narrow.circuit", "axis w = 4, v = 4", body)
    assert main(["train", small, "--circuit", "Tiny", "--max-model-bytes", "100", "--out", str(tmp_path / "run")]) == 1
    assert "over the model budget of 100 bytes" in capsys.readouterr().err


# ---------------------------------------------------------------- float constants are float32

@pytest.mark.parametrize("body,column", [
    ("return x * 1e39", 16),
    ("return x * (1e20 * 1e20)", 17),
    ("return x - 3.5e38", 16),
    ("return x + full([d], -1e39)", 26),
])
def test_float_constant_beyond_float32_is_a_span_error(body, column):
    e = fails(program(body), E.InvalidArgument, "does not fit in float32")
    assert (e.span.line, e.span.column) == (3, column)


def test_float32_initialiser_argument_is_checked():
    fails(program("param w: [d] = normal(1e39)\nreturn x * w"), E.InvalidArgument, "float32")


def test_float_constants_within_float32_check():
    checks(program("return x * 3.4e38 + x * 1e-50 + where(x > 0, x, -inf)"))


# ---------------------------------------------------------------- sizes and indices are int32

def test_axis_over_int32_is_a_span_error():
    e = fails("axis d = 4, t = 2147483648\n" + program("return x", header=""), E.SizeTooLarge, "MAX_INDEX")
    assert (e.span.line, e.span.column) == (1, 13)
    checks("axis d = 4, t = 2147483647\n" + program("return x", header=""))
    e = fails(HEADER + "circuit G[n = 4](x: [d]) -> [n]:\n    return linear(x, d -> n)\n"
              "circuit F(x: [d]) -> [d]:\n    return linear(G[n = 3000000000](x), n -> d)\n",
              E.SizeTooLarge, "axis n has size 3,000,000,000")
    assert e.span.line == 2


def test_size_override_over_int32_is_refused():
    with pytest.raises(E.SizeTooLarge, match="MAX_INDEX"):
        checks(program("return x"), sizes={"d": 2 ** 31})


def test_free_axis_over_int32_is_refused_when_compiling():
    d = checks("axis n\ncircuit F(x: [n]) -> int[n]:\n    return arange(n)\n")["F"]
    with pytest.raises(E.SizeTooLarge, match="MAX_INDEX"):
        d.compile(rngs=0, n=2 ** 31)


def test_index_at_the_int32_limit_is_checked_like_any_other():
    fails(program("return take(x, d, 2147483648)", "(x: [d]) -> []"), E.InvalidArgument, "")


# ---------------------------------------------------------------- steps of repeat and scan

STEP = "circuit S(s: [d], x: [d]) -> ([d], [d]):\n    return s, x\n"


def test_repeat_over_the_step_limit_is_a_span_error():
    """Issue 13: `repeat 2**62` passed check and compile, and calling the model aborted Python."""
    for n in (2 ** 31, 2 ** 62):
        e = fails(program(f"repeat {n}:\n    x = relu(x)\nreturn x"), E.InvalidArgument, "MAX_STEPS")
        assert (e.span.line, e.span.column) == (3, 12)
    checks(program(f"repeat {limits.MAX_STEPS}:\n    x = relu(x)\nreturn x"))


def test_scan_over_the_step_limit_is_a_span_error():
    text = ("axis d = 4, t = 4611686018427387904\n" + STEP + "circuit F(x: [t, d]) -> [d]:\n"
            "    s, ys = scan(S, x, along = t, init = take(x, t, 0))\n    return s\n")
    e = fails(text, E.CircuitError, "")
    assert "MAX_STEPS" in e.message or "MAX_INDEX" in e.message


def test_free_repeat_count_over_the_step_limit_is_refused_when_compiling():
    d = checks("axis d = 4, n\ncircuit F(x: [d]) -> [d]:\n    repeat n:\n        x = relu(x)\n    return x\n")["F"]
    with pytest.raises(E.CircuitError, match="MAX_STEPS|MAX_INDEX"):
        d.compile(rngs=0, n=2 ** 62)


# ---------------------------------------------------------------- use paths

@pytest.mark.parametrize("path,cls,words", [
    ("a\0b.circuit", E.InvalidArgument, "control character"),  # was ValueError: embedded null byte
    ("x" * 300 + ".circuit", E.UseNotFound, "File name too long"),  # was OSError ENAMETOOLONG
    ("a/" * 100_000 + "x.circuit", E.InvalidArgument, "MAX_USE_PATH"),  # took 20 s, then OSError
])
def test_bad_use_paths_are_span_errors(path, cls, words, tmp_path):
    e = fails(f'use "{path}"\n', cls, words, root=tmp_path)
    assert (e.span.line, e.span.column) == (1, 1)


def test_use_path_at_the_limit_is_looked_up(tmp_path):
    deep = "a/" * ((limits.MAX_USE_PATH - len("x.circuit")) // 2)
    path = deep + "x" * (limits.MAX_USE_PATH - len(deep) - len(".circuit")) + ".circuit"
    assert len(path) == limits.MAX_USE_PATH
    fails(f'use "{path}"\n', E.UseNotFound, "no file", root=tmp_path)
    fails(f'use "{path[:-8]}y.circuit"\n', E.InvalidArgument, "MAX_USE_PATH", root=tmp_path)


def test_int64_input_indices_over_int32_are_refused_not_wrapped():
    """Issue 13: int64 indices of 2**31 and above wrapped silently when a model was called."""
    import numpy as np

    d = checks("axis v = 8, d = 4\ncircuit F(i: int[]) -> [d]:\n    return embed(i, v -> d)\n")["F"]
    model = d.compile(rngs=0)
    (table_name, _, _), = d.weights()
    table = np.asarray(model.weight(table_name))
    np.testing.assert_allclose(np.asarray(model(np.array([3], dtype=np.int64))), table[[3]], rtol=1e-6)
    for bad in (2 ** 31, 2 ** 32 + 3, -2 ** 31 - 1):
        with pytest.raises(ValueError, match="int32"):
            model(np.array([bad], dtype=np.int64))
