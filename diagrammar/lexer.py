"""Docs: a Pygments lexer for `.circuit` sources, so code blocks and editors highlight them.

Registered as the Pygments plugin `circuit` (pyproject's `pygments.lexers`
entry point) and by the Sphinx extension `diagrammar.sphinx`.

The word lists come from the checker's operation tables, so a new operation
highlights as soon as it checks. Importing this module does no more than
`import diagrammar` already does (the checker's tables are plain sets; the
grammar is read and the parser built only when a program is parsed).

Invariant: every character of a valid program is matched by a rule other
than the last (`Error`), and the tokens concatenate back to the input.
"""
from __future__ import annotations

import re

from pygments.lexer import RegexLexer, bygroups, include, words
from pygments.token import (Comment, Error, Keyword, Name, Number, Operator, Punctuation, String, Text,
                            Whitespace)

from .check import INITIALISERS, OPERATIONS

__all__ = ["CircuitLexer", "KEYWORDS", "DTYPES", "CONSTANTS"]

KEYWORDS = ("use", "axis", "circuit", "param", "return", "repeat", "require")
DTYPES = ("int", "bool", "float")
# words the checker reads as values of keyword arguments (bias = false); the
# padding words `same` and `valid` are constants only after `padding =`, since
# `valid` is also a common value name
CONSTANTS = ("true", "false")

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_FLOAT = r"([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+"


class CircuitLexer(RegexLexer):
    """Highlights the circuit language (see grammar/circuit.lark).

    Keywords, dtypes, operations and initialisers, circuit names (Capitalised),
    keyword arguments inside calls (`over =`), numbers, strings and comments.

    Example:
        >>> from pygments.token import Keyword, Name
        >>> tokens = list(CircuitLexer().get_tokens("circuit Id(x: [d]) -> [d]:\\n"))
        >>> tokens[0], tokens[2]
        ((Token.Keyword.Declaration, 'circuit'), (Token.Name.Class, 'Id'))
    """

    name = "Circuit"
    aliases = ["circuit"]
    filenames = ["*.circuit"]
    mimetypes = ["text/x-circuit"]

    tokens = {
        "root": [
            include("common"),
            (r"[(\[]", Punctuation, "group"),
            (r"[)\]]", Punctuation),
            (r".", Error),
        ],
        # inside ( ) or [ ]: `name =` is a keyword argument or an axis parameter
        "group": [
            (r"(padding)(\s*)(=)(\s*)(same|valid)\b",
             bygroups(Name.Attribute, Whitespace, Operator, Whitespace, Keyword.Constant)),
            (rf"({_NAME})(\s*)(=)(?!=)", bygroups(Name.Attribute, Whitespace, Operator)),
            include("common"),
            (r"[(\[]", Punctuation, "#push"),
            (r"[)\]]", Punctuation, "#pop"),
            (r".", Error),
        ],
        "common": [
            (r"[ \t\f]+", Whitespace),
            (r"\r?\n", Whitespace),
            (r"\\[ \t\f]*\r?\n", Text),  # line continuation
            (r"#[^\n]*", Comment.Single),
            (r'"[^"\n]*"', String.Double),
            (r"(circuit)(\s+)(" + _NAME + ")", bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (words(("axis", "circuit", "param"), suffix=r"\b"), Keyword.Declaration),
            (words(("use",), suffix=r"\b"), Keyword.Namespace),
            (words(("return", "repeat", "require"), suffix=r"\b"), Keyword),
            (words(DTYPES, suffix=r"\b"), Keyword.Type),
            (words(CONSTANTS, suffix=r"\b"), Keyword.Constant),
            (words(("inf",), suffix=r"\b"), Number.Float),
            (words(tuple(sorted(OPERATIONS)), suffix=r"\b"), Name.Builtin),
            (words(tuple(sorted(INITIALISERS)), suffix=r"\b"), Name.Builtin.Pseudo),
            (r"[A-Z][A-Za-z0-9_]*", Name.Class),
            (_NAME, Name),
            (_FLOAT, Number.Float),
            (r"[0-9]+", Number.Integer),
            (r"->", Operator),
            (r"//|<=|>=|==|[-+*/%<>=]", Operator),
            (r"[,:]", Punctuation),
        ],
    }

    def analyse_text(text: str) -> float:  # Pygments makes this a static analyser
        """A guess for `pygments.lexers.guess_lexer`: a circuit header with typed inputs."""
        if re.search(r"^circuit\s+[A-Z]\w*\s*[\[(]", text, re.M):
            return 0.6
        if re.search(r"^axis\s+\w+", text, re.M):
            return 0.2
        return 0.0
