"""What the language server answers, without the protocol: diagrams, names and positions of a text."""
import re
from pathlib import Path

import pytest

from diagrammar.lsp.analysis import analyse

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "circuits").glob("*.circuit")) + sorted((ROOT / "tests" / "language_v1").glob("*.circuit"))


def test_hover_shows_tuples_free_sizes_weights_and_boxes():
    path = ROOT / "circuits" / "pointer.circuit"
    a = analyse(path.read_text(), str(path))
    lines = a.lines
    row = next(i for i, t in enumerate(lines, 1) if "enc_state, enc = scan" in t)
    assert a.hover(row, 5) == "wire `enc_state`: ([hd=128], [hd=128])"
    assert a.hover(row, 16) == "wire `enc`: [n, hd=128]"  # n is free: no size
    row = next(i for i, t in enumerate(lines, 1) if "param go:" in t)
    assert a.hover(row, 11).startswith("weight `go`: [feat=2], 2 parameters, init normal(0.1)")
    row = next(i for i, t in enumerate(lines, 1) if "keys = linear(enc" in t)
    text = a.hover(row, lines[row - 1].index("linear") + 1)
    assert "box `keys`: 16,384 parameters" in text and "*n FLOPs" in text


def test_generic_circuits_and_their_axis_parameters():
    path = ROOT / "tests" / "language_v1" / "s01_generic.circuit"
    a = analyse(path.read_text(), str(path))
    assert a.ok
    assert a.hover(4, 23) == "axis parameter `q` of Attention"
    row = next(i for i, t in enumerate(a.lines, 1) if t.strip().startswith("cross_attn ="))
    assert a.hover(row, 6) == "wire `cross_attn`: [seq=12, d=32]"
    (d,) = a.definition(row, a.lines[row - 1].index("Attention") + 1)
    assert d.span.line == 4


def test_an_error_in_a_used_file_is_shown_on_the_use_line(tmp_path):
    (tmp_path / "lib.circuit").write_text("axis d = 4\ncircuit G(x: [d]) -> [d]:\n    return nope\n")
    main = tmp_path / "main.circuit"
    text = 'use "lib.circuit"\n\ncircuit F(x: [d]) -> [d]:\n    return G(x)\n'
    a = analyse(text, str(main))
    (d,) = a.diagnostics
    assert (d.line, d.column) == (1, 1) and "lib.circuit:3" in d.message and "nope" in d.message


def test_completion_of_use_paths_keywords_and_names():
    a = analyse('use "\n', "/nowhere/x.circuit")
    assert "attention.circuit" in {c.label for c in a.complete(1, 5)}
    text = "axis d = 4\n\ncircuit F(x: [d]) -> [d]:\n    y = softmax(x, \n    return y\n"
    a = analyse(text, None)
    items = a.complete(4, 19)
    assert items[0].label == "over" and items[0].kind == "keyword-argument"
    labels = [c.label for c in items]
    assert "x" in labels and "d" in labels and "F" in labels and "layernorm" in labels and "return" in labels


def test_semantic_tokens_name_each_kind():
    text = 'use "attention.circuit"\naxis e = 4\n\ncircuit F(x: [e]) -> [e]:\n    # note\n    return sum(x, over = e) * 2\n'
    a = analyse(text, None)
    kinds = {(line, col): kind for line, col, _n, kind in a.semantic_tokens()}
    assert kinds[(1, 0)] == "keyword" and kinds[(1, 4)] == "string" and kinds[(4, 8)] == "class"
    assert kinds[(2, 5)] == "type" and kinds[(5, 4)] == "comment" and kinds[(6, 11)] == "function"
    assert kinds[(6, 18)] == "parameter" and kinds[(6, 30)] == "number" and kinds[(6, 28)] == "operator"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_question_at_every_name_is_answered_without_failing(path):
    a = analyse(path.read_text(), str(path))
    for n, line in enumerate(a.lines, 1):
        for m in re.finditer(r"[A-Za-z_]\w*", line):
            for col in (m.start(), m.end() - 1):
                a.hover(n, col)
                a.definition(n, col)
        if n % 7 == 0:
            a.complete(n, len(line))
    a.symbols()
    a.semantic_tokens()
