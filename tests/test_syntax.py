"""The grammar and the AST: conflict-free LALR, spans on every node, readable syntax errors."""
import pytest
from lark import Lark

import diagrammar
from diagrammar import syntax as S
from diagrammar.errors import CircuitSyntaxError


def test_grammar_is_conflict_free_lalr():
    """strict=True turns any shift/reduce conflict or terminal collision into an error."""
    Lark(S.grammar_text(), parser="lalr", postlex=S._CircuitIndenter(), strict=True)


def test_every_node_has_a_span():
    text = open("circuits/grok_transformer.circuit").read()
    module = S.parse_module(text, "g.circuit")
    seen = 0

    def visit(node):
        nonlocal seen
        if isinstance(node, S.Node):
            if hasattr(node, "span"):
                assert node.span.file == "g.circuit"
                assert (node.span.line, node.span.column) <= (node.span.end_line, node.span.end_column)
                seen += 1
            for value in vars(node).values():
                visit(value)
        elif isinstance(node, tuple):
            for x in node:
                visit(x)

    visit(module)
    assert seen > 100


def test_span_points_at_the_source_text():
    text = "axis d = 4\ncircuit F(x: [d]) -> [d]:\n    y = relu(x) + x\n    return y\n"
    module = S.parse_module(text, "t.circuit")
    assign = module.circuits[0].body[0]
    call = assign.value.left
    assert isinstance(call, S.Call) and call.func == "relu"
    line = text.splitlines()[call.span.line - 1]
    assert line[call.span.column - 1:call.span.end_column - 1] == "relu(x)"


@pytest.mark.parametrize("text,expected", [
    ("axis d = 4\ncircuit F(x: [d]) -> [d]\n    return x\n", "expected ':'"),
    ("axis d = 4\ncircuit F(x: [d]) [d]:\n    return x\n", "expected '->'"),
    ("axis d = 4\ncircuit F(x: [d]) -> [d]:\n    return relu(x\n", "unexpected"),
    ("axis d = 4\ncircuit F(x: [d]) -> [d]:\nreturn x\n", "expected an indented block"),
    ("axis = 4\n", "expected a name"),
    ("circuit F(x: [d]) -> [d]:\n    return x $ x\n", "unexpected character '$'"),
    ("axis d = 4\ncircuit F(x: [d]) -> [d]:\n    y = = x\n    return y\n", "unexpected '='"),
])
def test_syntax_errors_say_what_was_expected(text, expected):
    with pytest.raises(CircuitSyntaxError) as info:
        diagrammar.parse(text, name="s.circuit")
    message = info.value.format()
    assert expected in message
    assert message.startswith("s.circuit:")
    assert "^" in message


def test_comments_blank_lines_and_continuations():
    text = ("# header\n\naxis d = 4  # size\n\ncircuit F(x: [d]) -> [d]:  # signature\n"
            "    # a comment line\n\n    y = relu(\n        x)\n    return y \\\n        + x\n# end")
    assert diagrammar.parse(text)["F"].output.type.names == ("d",)


def test_tabs_and_crlf():
    text = "axis d = 4\r\ncircuit F(x: [d]) -> [d]:\r\n\ty = relu(x)\r\n\treturn y\r\n"
    assert diagrammar.parse(text)["F"]


def test_numbers():
    text = "axis d = 4\ncircuit F(x: [d]) -> [d]:\n    return x * 1e-3 + x * 0.5 + x * 3 + x * .5 - inf * 2\n"
    assert diagrammar.parse(text)["F"]


def test_bare_parse_matches_ast_parse():
    text = open("circuits/transformer.circuit").read()
    tree = S.bare_parse(text)
    assert tree.data == "start"
