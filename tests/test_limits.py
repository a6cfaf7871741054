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
    "repeats": lambda n: _repeats(n - 1),
}


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
    body = "\n".join(f"x = " + " + ".join(["x"] * N) for _ in range(5)) + "\nreturn x"
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
