"""Deep call chains and nested loops (issue 13): at limits.MAX_CALL_DEPTH and MAX_LOOP_DEPTH a program
checks, compiles, costs and renders at Python's default recursion limit; one more is a span error at the
call or loop that breaches the limit, never a RecursionError."""
import sys

import pytest

import diagrammar
from diagrammar import errors as E
from diagrammar import limits

CALLS = limits.MAX_CALL_DEPTH
LOOPS = limits.MAX_LOOP_DEPTH


def chain(n: int, wrap: int = 0, reverse: bool = False) -> str:
    """C0 calls C1 ... calls C{n-1}; each call inside `wrap` relus; `reverse` defines the callees first."""
    defs = []
    for i in range(n):
        inner = f"C{i + 1}(x)" if i + 1 < n else "relu(linear(x, d -> d))"
        defs.append(f"circuit C{i}(x: [d]) -> [d]:\n    return {'relu(' * wrap}{inner}{')' * wrap}\n")
    return "axis d = 4\n" + "".join(reversed(defs) if reverse else defs)


def loops(n: int, through_calls: bool = False) -> str:
    """n `repeat 1` loops nested in one another: in one circuit, or each in a circuit calling the next."""
    if not through_calls:
        lines = ["axis d = 4", "circuit C0(x: [d]) -> [d]:"]
        lines += ["    " * (i + 1) + "repeat 1:" for i in range(n)]
        lines += ["    " * (n + 1) + "x = relu(linear(x, d -> d))", "    return x"]
        return "\n".join(lines) + "\n"
    out = ["axis d = 4"]
    for i in range(n):
        inner = f"C{i + 1}(x)" if i + 1 < n else "relu(linear(x, d -> d))"
        out.append(f"circuit C{i}(x: [d]) -> [d]:\n    repeat 1:\n        x = {inner}\n    return x")
    return "\n".join(out) + "\n"


@pytest.fixture
def default_recursion_limit():
    """Python's default recursion limit (1000) for the test (importing flax raises it to 3000)."""
    from diagrammar.backends import cost, flax, svg  # noqa: F401  (imported first, so they cannot raise it later)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    yield
    assert sys.getrecursionlimit() == 1000  # checking raised it for its duration only
    sys.setrecursionlimit(old)


def refused(text: str, words: str) -> E.CircuitError:
    with pytest.raises(E.CircuitError) as info:
        diagrammar.parse(text, name="t.circuit")
    e = info.value
    assert words in e.message, e.message
    assert e.span is not None and e.span.file == "t.circuit" and e.span.line >= 2, e
    return e


def test_a_chain_at_the_limit_checks_compiles_costs_and_renders(default_recursion_limit):
    import jax.numpy as jnp
    import numpy as np

    from diagrammar.backends import cost, svg
    from diagrammar.backends import flax as fx

    program = diagrammar.parse(chain(CALLS), name="t.circuit")
    d = program["C0"]
    assert cost.analyse(d).parameters.number == 4 * 4 + 4
    flat, nested = svg.render_svg(d), svg.render_svg(d, depth=3)  # every level: 7 s at 100 levels
    assert flat.rstrip().endswith("</svg>") and nested.rstrip().endswith("</svg>") and len(nested) > len(flat)
    model = fx.compile_diagram(d, rngs=0)
    x = jnp.arange(4.0) - 1.5
    (w_name, _, _), (b_name, _, _) = d.weights()  # the last circuit's linear, deep inside the chain
    assert w_name.count(".") == CALLS
    W, b = np.asarray(model.weight(w_name)), np.asarray(model.weight(b_name))
    expected = np.maximum(np.asarray(x) @ W + b, 0)  # every other circuit passes its input on
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-6)


def test_one_more_call_is_a_span_error_at_the_call():
    e = refused(chain(CALLS + 1), f"the limit is {CALLS} (limits.MAX_CALL_DEPTH)")
    assert f"chain of {CALLS + 1} circuits" in e.message
    line = 2 + 2 * (CALLS - 1) + 1  # `return C{CALLS}(x)`, the last call
    assert (e.span.line, e.span.column) == (line, 12)


def test_issue_13_chain_of_200_is_a_span_error():
    refused(chain(200), "MAX_CALL_DEPTH")


def test_a_chain_built_from_cached_callees_is_measured_too():
    """Defined callees first, each call finds its callee checked already: the chain is counted bottom-up."""
    diagrammar.parse(chain(CALLS, reverse=True))
    e = refused(chain(CALLS + 1, reverse=True), "MAX_CALL_DEPTH")
    assert (e.span.line, e.span.column) == (2 * CALLS + 3, 12)  # in C0, defined last: `return C1(x)`


def test_nesting_inside_every_circuit_of_the_longest_chain_checks(default_recursion_limit):
    """The checker recurses through calls and nesting: the worst program within the limits still checks."""
    diagrammar.parse(chain(CALLS, wrap=limits.MAX_NESTING - 5))


@pytest.mark.parametrize("through_calls", [False, True], ids=["in-one-circuit", "through-calls"])
def test_loops_at_the_limit_compile_and_train_and_one_more_is_a_span_error(through_calls, default_recursion_limit):
    import jax.numpy as jnp
    from flax import nnx

    from diagrammar.backends import flax as fx

    d = diagrammar.parse(loops(LOOPS, through_calls))["C0"]
    model = fx.compile_diagram(d, rngs=0)
    grads = nnx.jit(lambda m, x: nnx.grad(lambda m: m(x).sum())(m))(model, jnp.ones((4,)))
    assert grads is not None
    e = refused(loops(LOOPS + 1, through_calls), f"the limit is {LOOPS} (limits.MAX_LOOP_DEPTH)")
    assert f"nests {LOOPS + 1} loops" in e.message
