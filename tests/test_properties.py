"""Property: for ANY text, checking gives a Program or a CircuitError, never another exception."""
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diagrammar
from diagrammar.errors import CircuitError

ZOO = sorted(Path("circuits").glob("*.circuit")) if Path("circuits").is_dir() else []
SOURCES = [p.read_text() for p in ZOO] + [Path("docs/language.md").read_text().split("```circuit\n")[-1].split("```")[0]]

TOKENS = ["axis", "circuit", "use", "param", "return", "repeat", "int", "bool", "float", "x", "y", "d", "seq",
          "F", "G", "linear", "dot", "softmax", "scan", "stack", "concat", "merge", "split", "rename", "onehot",
          "embed", "gather", "take", "conv", "pool", "sum", "over", "along", "init", "const", "->", "=", ",",
          ":", "(", ")", "[", "]", "+", "-", "*", "/", "//", "<", "==", "0", "1", "2", "-1", "0.5", "1e9",
          "inf", "true", "false", "\n", "\n    ", "\n        ", " ", '"attention.circuit"', "#c", "\t", "@", "'"]


def check_any(text: str) -> None:
    try:
        diagrammar.parse(text, name="fuzz.circuit")
    except CircuitError as e:
        assert e.span is None or e.span.line >= 1
        e.format()  # formatting never fails either


@st.composite
def mutated_program(draw):
    source = draw(st.sampled_from(SOURCES))
    lines = source.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["delete_line", "dup_line", "swap_tokens", "insert_token", "delete_chars",
                                     "replace_word"]))
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "delete_line":
            del lines[i]
        elif kind == "dup_line":
            lines.insert(i, lines[i])
        elif kind == "swap_tokens":
            words = lines[i].split(" ")
            if len(words) > 1:
                a, b = draw(st.integers(0, len(words) - 1)), draw(st.integers(0, len(words) - 1))
                words[a], words[b] = words[b], words[a]
                lines[i] = " ".join(words)
        elif kind == "insert_token":
            pos = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:pos] + draw(st.sampled_from(TOKENS)) + lines[i][pos:]
        elif kind == "delete_chars":
            if lines[i]:
                a = draw(st.integers(0, len(lines[i]) - 1))
                lines[i] = lines[i][:a] + lines[i][a + draw(st.integers(1, 5)):]
        elif kind == "replace_word":
            words = lines[i].split(" ")
            words[draw(st.integers(0, len(words) - 1))] = draw(st.sampled_from(TOKENS))
            lines[i] = " ".join(words)
    return "\n".join(lines)


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_program())
def test_mutated_programs_check_or_raise_circuit_error(text):
    check_any(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join))
def test_token_soup_checks_or_raises_circuit_error(text):
    check_any(text)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text(text):
    check_any(text)
