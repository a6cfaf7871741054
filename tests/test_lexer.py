"""The Pygments lexer: token types of a sample, exact round trips, the zoo without errors, the plugin."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, Punctuation, String, Whitespace

from diagrammar.check import INITIALISERS, OPERATIONS
from diagrammar.lexer import CircuitLexer

SAMPLE = '''\
# Modular addition (Gromov 2023).
use "attention.circuit"
axis p = 97, eps = 1e-3
circuit MLP[hidden = 4 * p](a: int[], b: bool[p]) -> [p]:
    param scale: [p] = normal(0.02)
    x = stack(onehot(a, p), onehot(a, p), along = arg) // 2
    h = relu(linear(x, (arg, p) -> hidden, bias = false))
    repeat 2:
        h = h + Block(h)
    y = conv(h, over = (h, w), padding = same) <= -inf
    return linear(h, hidden -> p) * scale
'''


def _tokens(text):
    return [(t, v) for t, v in CircuitLexer().get_tokens(text) if t not in Whitespace]


def test_sample_tokens_have_the_expected_types():
    tokens = _tokens(SAMPLE)
    expect = [
        (Comment.Single, "# Modular addition (Gromov 2023)."),
        (Keyword.Namespace, "use"), (String.Double, '"attention.circuit"'),
        (Keyword.Declaration, "axis"), (Name, "p"), (Operator, "="), (Number.Integer, "97"),
        (Number.Float, "1e-3"),
        (Keyword.Declaration, "circuit"), (Name.Class, "MLP"), (Name.Attribute, "hidden"),
        (Keyword.Type, "int"), (Keyword.Type, "bool"), (Operator, "->"),
        (Keyword.Declaration, "param"), (Name.Builtin.Pseudo, "normal"), (Number.Float, "0.02"),
        (Name.Builtin, "stack"), (Name.Builtin, "onehot"), (Name.Attribute, "along"), (Operator, "//"),
        (Name.Builtin, "relu"), (Name.Builtin, "linear"), (Name.Attribute, "bias"), (Keyword.Constant, "false"),
        (Keyword, "repeat"), (Name.Class, "Block"),
        (Name.Attribute, "padding"), (Keyword.Constant, "same"), (Operator, "<="), (Number.Float, "inf"),
        (Keyword, "return"), (Punctuation, ":"),
    ]
    for token in expect:
        assert token in tokens, token
    # names are names, wherever they appear
    assert (Name, "x") in tokens and (Name, "scale") in tokens
    assert not any(t in Error for t, _ in tokens)


def test_keyword_arguments_only_inside_calls():
    tokens = _tokens("axis d = 4\nx = f(a == b, over = d)\n")
    assert tokens[:4] == [(Keyword.Declaration, "axis"), (Name, "d"), (Operator, "="), (Number.Integer, "4")]
    assert (Name, "a") in tokens and (Operator, "==") in tokens
    assert (Name.Attribute, "over") in tokens
    assert (Name.Attribute, "x") not in tokens


def test_valid_is_a_constant_only_as_padding():
    tokens = _tokens("y = where(valid, x, 0)\nz = conv(x, padding = valid)\n")
    assert tokens[4] == (Name, "valid")
    assert (Keyword.Constant, "valid") in tokens


def test_round_trip_is_exact():
    for text in (SAMPLE, "a\r\nb \\\n  c\t# x\n", "", "x = 1", "@ $ ? ~", "f((a, [b]), c"):
        assert "".join(v for _, _, v in CircuitLexer().get_tokens_unprocessed(text)) == text


def test_unknown_characters_are_errors():
    tokens = _tokens("x = a @ b\n")
    assert (Error, "@") in tokens


@pytest.mark.parametrize("path", sorted(Path("circuits").glob("*.circuit")), ids=lambda p: p.name)
def test_zoo_lexes_without_errors(path):
    text = path.read_text(encoding="utf-8")
    tokens = list(CircuitLexer().get_tokens_unprocessed(text))
    errors = [(i, v) for i, t, v in tokens if t in Error]
    assert errors == []
    assert "".join(v for _, _, v in tokens) == text


def test_word_lists_come_from_the_checker():
    for op in OPERATIONS:
        assert _tokens(f"y = {op}(x)")[2] == (Name.Builtin, op)
    for init in INITIALISERS:
        assert _tokens(f"param w: [d] = {init}")[-1] == (Name.Builtin.Pseudo, init)


def test_registered_as_a_pygments_plugin():
    # needs the package installed (pip install -e .): pyproject's pygments.lexers entry point
    assert isinstance(get_lexer_by_name("circuit"), CircuitLexer)
    assert isinstance(get_lexer_for_filename("model.circuit"), CircuitLexer)


def test_importing_the_lexer_is_light():
    # the word lists are the checker's tables; no grammar is read and no parser built to get them
    code = ("import sys, time; t = time.perf_counter(); import diagrammar.lexer; "
            "dt = time.perf_counter() - t; import diagrammar.syntax as s; "
            "bad = [m for m in ('jax', 'flax', 'sphinx') if m in sys.modules]; assert not bad, bad; "
            "assert s._ast_parser.cache_info().currsize == 0 and s.grammar_text.cache_info().currsize == 0; "
            "print(dt)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert float(out.stdout) < 2.0


def _reference_blocks() -> list[str]:
    reference = Path("docs/language.md")
    if not reference.exists():
        return []
    return re.findall(r"```circuit(?:-error)?\n(.*?)```", reference.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("source", _reference_blocks(), ids=lambda s: s.splitlines()[0][:40])
def test_language_reference_examples_lex_without_errors(source):
    assert [v for t, v in _tokens(source) if t in Error] == []
