"""Front end, stage 1: text to an AST whose every node keeps its span.

This is the only module that imports lark. Lark's errors are translated here
into CircuitSyntaxError, so no parser traceback ever reaches a user.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.indenter import DedentError, Indenter

from . import _resources
from .errors import CircuitError, CircuitSyntaxError, NotUTF8, Span
from .limits import MAX_LITERAL_DIGITS, MAX_NESTING, MAX_PROGRAM_BYTES

# ---------------------------------------------------------------- AST nodes
# Names follow the grammar's rules (axis_decl -> AxisDecl). Nodes are frozen;
# `span` always comes last so positional construction reads like the grammar.


@dataclass(frozen=True)
class Node:
    pass


@dataclass(frozen=True)
class SizeInt(Node):
    value: int
    span: Span


@dataclass(frozen=True)
class SizeName(Node):
    name: str
    span: Span


@dataclass(frozen=True)
class SizeBin(Node):
    op: str  # + - * // %
    left: Node
    right: Node
    span: Span


@dataclass(frozen=True)
class AxisItem(Node):
    name: str
    size: Node | None
    span: Span


@dataclass(frozen=True)
class NameParam(Node):
    """`axis h` in a circuit's brackets: a name parameter, bound to an axis at each call."""
    name: str
    span: Span


@dataclass(frozen=True)
class Require(Node):
    """`require left OP right`: a constraint on sizes, at the top level or in a body."""
    left: Node
    op: str  # < <= > >= ==
    right: Node
    span: Span


@dataclass(frozen=True)
class Use(Node):
    path: str
    span: Span


@dataclass(frozen=True)
class AxisDecl(Node):
    items: tuple[AxisItem, ...]
    span: Span


@dataclass(frozen=True)
class TensorTypeNode(Node):
    dtype: str  # float, int, bool
    axes: tuple[tuple[str, Span], ...]
    span: Span


@dataclass(frozen=True)
class TupleTypeNode(Node):
    items: tuple[Node, ...]
    span: Span


@dataclass(frozen=True)
class Param(Node):
    name: str
    type: Node
    span: Span


@dataclass(frozen=True)
class Name(Node):
    id: str
    span: Span


@dataclass(frozen=True)
class Number(Node):
    value: float
    text: str
    span: Span


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # add sub mul div lt le gt ge eq
    left: Node
    right: Node
    span: Span


@dataclass(frozen=True)
class Neg(Node):
    operand: Node
    span: Span


@dataclass(frozen=True)
class Cast(Node):
    """`int(x)`, `float(x)`, `bool(x)`: a value converted to the dtype named."""
    dtype: str  # int, float, bool
    operand: Node
    span: Span


@dataclass(frozen=True)
class TupleExpr(Node):
    items: tuple[Node, ...]
    span: Span


@dataclass(frozen=True)
class AxisList(Node):
    items: tuple[Node, ...]
    span: Span


@dataclass(frozen=True)
class Mapping(Node):
    """`src -> dst` as a call argument (axes in, axes out)."""
    src: Node
    dst: Node
    span: Span


@dataclass(frozen=True)
class ResultSpec(Node):
    """`-> [axes]` as a call argument (einsum's result)."""
    value: Node
    span: Span


@dataclass(frozen=True)
class Keyword(Node):
    name: str
    value: Node  # an expression or a Mapping
    span: Span


@dataclass(frozen=True)
class Call(Node):
    func: str
    sizes: tuple[AxisItem, ...]
    args: tuple[Node, ...]
    span: Span
    func_span: Span


@dataclass(frozen=True)
class CircuitRef(Node):
    """`Step[c = d]` where a circuit is named but not called (scan's and dispatch's first argument)."""
    name: str
    sizes: tuple[AxisItem, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class ParamStmt(Node):
    name: str
    type: Node
    init: Node | None
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Assign(Node):
    targets: tuple[tuple[str, Span], ...]
    value: Node
    span: Span


@dataclass(frozen=True)
class Return(Node):
    values: tuple[Node, ...]
    span: Span


@dataclass(frozen=True)
class Repeat(Node):
    count: Node
    body: tuple[Node, ...]
    span: Span


@dataclass(frozen=True)
class CircuitDef(Node):
    name: str
    axis_params: tuple[AxisItem | NameParam, ...]
    params: tuple[Param, ...]
    returns: Node
    body: tuple[Node, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Module(Node):
    """One parsed file."""
    file: str
    uses: tuple[Use, ...]
    axes: tuple[AxisDecl, ...]
    circuits: tuple[CircuitDef, ...]
    items: tuple[Node, ...]  # in source order


# ---------------------------------------------------------------- parser


class _CircuitIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8


@lru_cache(maxsize=None)
def grammar_text() -> str:
    return _resources.read_text("grammar", "circuit.lark")


@lru_cache(maxsize=None)
def _bare_parser(strict: bool = False) -> Lark:
    """The grammar with no AST building (for benchmarks and the strict test)."""
    return Lark(grammar_text(), parser="lalr", postlex=_CircuitIndenter(), strict=strict,
                propagate_positions=False, maybe_placeholders=True)



_KEPT = frozenset({"NAME", "NUMBER", "STRING"})
_LAYOUT = frozenset({"_NL", "_INDENT", "_DEDENT"})


def _first_pos(children):
    for c in children:
        if isinstance(c, Token):
            if c.type not in _LAYOUT:
                return (c.line, c.column)
        elif isinstance(c, Node):
            return (c.span.line, c.span.column)
        elif isinstance(c, tuple) and c:
            p = _first_pos(c)
            if p:
                return p
    return None


def _last_pos(children):
    for c in reversed(children):
        if isinstance(c, Token):
            if c.type not in _LAYOUT:
                return (c.end_line, c.end_column)
        elif isinstance(c, Node):
            return (c.span.end_line, c.span.end_column)
        elif isinstance(c, tuple) and c:
            p = _last_pos(c)
            if p:
                return p
    return None


def _rule(method):
    """Give a callback the raw children (for the span) and the meaningful ones.

    The parser keeps every token so spans can run from the first to the last
    token of a rule; punctuation and keywords are dropped before the method
    sees the children.
    """
    def wrapper(self, children):
        kept = [c for c in children if not isinstance(c, Token) or c.type in _KEPT]
        return self._nested(method(self, children, kept), kept)
    wrapper.__name__ = method.__name__
    return wrapper


class _DtypeWord(str):
    """A dtype keyword (`int`) and the position of its token."""

    def __new__(cls, word: str, children):
        self = super().__new__(cls, word)
        self.pos = _first_pos(children) or (1, 1)
        return self


# Nodes that do not nest: statements, declarations and the blocks that hold them pass their
# parts' depth on unchanged; a leaf (a name, a number, `[a, b]`) is 0 deep; every other node is one
# level deeper than its deepest part (`relu(x)` is 1, `x + y + z` is 2).
_FLAT = ("Use", "AxisDecl", "AxisItem", "NameParam", "Param", "ParamStmt", "Assign", "Return", "Require",
         "CircuitDef", "Keyword")


class _ToAst(Transformer):
    """Builds AST nodes while the LALR parser reduces (no intermediate tree).

    Each node's nesting depth is counted as it is built (bottom up, so without recursion), and a
    node deeper than limits.MAX_NESTING stops the parse with a span error: everything after the
    parser (checker, formatter, evaluator) walks the tree recursively, one or a few frames a level.
    """

    def __init__(self, file: str):
        super().__init__(visit_tokens=False)
        self.file = file
        self.depths: dict[int, int] = {}

    def _nested(self, result, kept):
        if not isinstance(result, (Node, tuple)) or any(result is c for c in kept):  # `(x)` is as deep as x
            return result
        depths = self.depths
        parts = [depths.get(id(c), 0) for c in kept if isinstance(c, (Node, tuple))]
        flat = not parts or isinstance(result, tuple) or type(result).__name__ in _FLAT  # a leaf is 0 deep
        depth = max(parts, default=0) if flat else max(parts) + 1
        if depth > MAX_NESTING:
            raise CircuitSyntaxError(
                f"this is nested {depth} levels deep; the limit is {MAX_NESTING} (limits.MAX_NESTING)",
                result.span if isinstance(result, Node) else self._span(kept),
                hint="name the parts: t = ...; each assignment starts the nesting afresh")
        depths[id(result)] = depth
        return result

    def _span(self, children) -> Span:
        """From the first to the last token of a rule (all tokens are kept)."""
        first = _first_pos(children)
        last = _last_pos(children)
        return Span(self.file, first[0], first[1], last[0], last[1])

    def _tok(self, tok: Token) -> Span:
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    # -- sizes
    @_rule
    def size_int(self, meta, children):
        tok = children[0]
        text = str(tok)
        self._literal(tok)
        if not text.isdigit():
            raise CircuitSyntaxError(f"a size must be a whole number, got {text}", self._tok(tok),
                                     hint="sizes are integers, axis names, + - * // and parentheses")
        return SizeInt(int(text), self._tok(tok))

    @_rule
    def size_name(self, meta, children):
        return SizeName(str(children[0]), self._tok(children[0]))

    def _size_bin(op):
        @_rule
        def f(self, meta, children):
            return SizeBin(op, children[0], children[1], self._span(meta))
        return f

    size_add = _size_bin("+")
    size_sub = _size_bin("-")
    size_mul = _size_bin("*")
    size_floordiv = _size_bin("//")
    size_mod = _size_bin("%")

    @_rule
    def axis_item(self, meta, children):
        name, size = children if len(children) == 2 else (children[0], None)
        return AxisItem(str(name), size, self._span(meta))

    @_rule
    def name_param(self, meta, children):
        return NameParam(str(children[0]), self._span(meta))

    # -- top level
    @_rule
    def use(self, meta, children):
        return Use(str(children[0])[1:-1], self._span(meta))

    @_rule
    def axis_decl(self, meta, children):
        return AxisDecl(tuple(children), self._span(meta))

    @_rule
    def axis_params(self, meta, children):
        return tuple(children)

    @_rule
    def call_sizes(self, meta, children):
        return tuple(children)

    @_rule
    def param(self, meta, children):
        return Param(str(children[0]), children[1], self._span(meta))

    @_rule
    def body(self, meta, children):
        return tuple(children)

    @_rule
    def circuit_def(self, meta, children):
        name = children[0]
        rest = children[1:]
        axis_params = ()
        if rest and isinstance(rest[0], tuple):
            axis_params = rest[0]
            rest = rest[1:]
        elif rest and rest[0] is None:  # absent axis_params
            rest = rest[1:]
        body = rest[-1]
        returns = rest[-2]
        params = tuple(p for p in rest[:-2] if p is not None)
        return CircuitDef(str(name), axis_params, params, returns, body, self._span(meta), self._tok(name))

    # -- types (a dtype word remembers where it is written, for the span of a cast)
    def int_dtype(self, children):
        return _DtypeWord("int", children)

    def bool_dtype(self, children):
        return _DtypeWord("bool", children)

    def float_dtype(self, children):
        return _DtypeWord("float", children)

    @_rule
    def tensor_type(self, meta, children):
        dtype = "float"
        if children and isinstance(children[0], str) and not isinstance(children[0], Token):
            dtype = str(children[0])
            children = children[1:]
        elif children and children[0] is None:
            children = children[1:]
        axes = tuple((str(t), self._tok(t)) for t in children if t is not None)
        return TensorTypeNode(dtype, axes, self._span(meta))

    @_rule
    def tuple_type(self, meta, children):
        return TupleTypeNode(tuple(children), self._span(meta))

    # -- statements
    @_rule
    def param_stmt(self, meta, children):
        name, typ, init = children if len(children) == 3 else (children[0], children[1], None)
        return ParamStmt(str(name), typ, init, self._span(meta), self._tok(name))

    @_rule
    def assign(self, meta, children):
        *targets, value = children
        return Assign(tuple((str(t), self._tok(t)) for t in targets), value, self._span(meta))

    @_rule
    def return_stmt(self, meta, children):
        return Return(tuple(children), self._span(meta))

    @_rule
    def repeat_stmt(self, meta, children):
        return Repeat(children[0], children[1], self._span(meta))

    def req_op(self, children):
        return str(children[0])

    @_rule
    def require_stmt(self, meta, children):
        left, op, right = children
        return Require(left, op, right, self._span(meta))

    # -- expressions
    @_rule
    def name(self, meta, children):
        return Name(str(children[0]), self._tok(children[0]))

    @_rule
    def number(self, meta, children):
        tok = children[0]
        self._literal(tok)
        value = float(tok)
        if value == float("inf"):
            raise CircuitSyntaxError(f"the number {tok} is too large for a float (the largest is about 1.8e308)",
                                     self._tok(tok), hint="for an infinity, write inf")
        return Number(value, str(tok), self._tok(tok))

    def _literal(self, tok: Token) -> None:
        if len(tok) > MAX_LITERAL_DIGITS:
            raise CircuitSyntaxError(f"this number literal has {len(tok)} characters; the limit is "
                                     f"{MAX_LITERAL_DIGITS} (limits.MAX_LITERAL_DIGITS)", self._tok(tok))

    def _binop(op):
        @_rule
        def f(self, meta, children):
            return BinOp(op, children[0], children[1], self._span(meta))
        return f

    add = _binop("add")
    sub = _binop("sub")
    mul = _binop("mul")
    div = _binop("div")
    floordiv = _binop("floordiv")
    mod = _binop("mod")
    lt = _binop("lt")
    le = _binop("le")
    gt = _binop("gt")
    ge = _binop("ge")
    eq = _binop("eq")

    @_rule
    def paren(self, meta, children):
        return children[0]

    @_rule
    def neg(self, meta, children):
        return Neg(children[0], self._span(meta))

    @_rule
    def cast(self, meta, children):
        word, operand = children
        end = _last_pos(meta)
        return Cast(str(word), operand, Span(self.file, word.pos[0], word.pos[1], end[0], end[1]))

    @_rule
    def tuple(self, meta, children):
        return TupleExpr(tuple(children), self._span(meta))

    @_rule
    def axis_list(self, meta, children):
        return AxisList(tuple(c for c in children if c is not None), self._span(meta))

    @_rule
    def call(self, meta, children):
        func = children[0]
        rest = children[1:]
        sizes = ()
        if rest and isinstance(rest[0], tuple):
            sizes = rest[0]
            rest = rest[1:]
        elif rest and rest[0] is None:
            rest = rest[1:]
        args = tuple(a for a in rest if a is not None)
        return Call(str(func), sizes, args, self._span(meta), self._tok(func))

    @_rule
    def circuit_ref(self, meta, children):
        name, sizes = children
        return CircuitRef(str(name), tuple(sizes), self._span(meta), self._tok(name))

    @_rule
    def mapping(self, meta, children):
        return Mapping(children[0], children[1], self._span(meta))

    @_rule
    def result_spec(self, meta, children):
        return ResultSpec(children[0], self._span(meta))

    @_rule
    def keyword(self, meta, children):
        return Keyword(str(children[0]), children[1], self._span(meta))

    @_rule
    def keyword_mapping(self, meta, children):
        name, src, dst = children
        m = Mapping(src, dst, Span(self.file, src.span.line, src.span.column, dst.span.end_line, dst.span.end_column))
        return Keyword(str(name), m, self._span(meta))

    @_rule
    def start(self, meta, children):
        return list(children)


@lru_cache(maxsize=None)
def _ast_parser() -> Lark:
    # One shared parser; the transformer is swapped per call via parse(on_error)
    # is not possible, so we build with a placeholder and set .file per call.
    return Lark(grammar_text(), parser="lalr", postlex=_CircuitIndenter(),
                keep_all_tokens=True, maybe_placeholders=True,
                transformer=_ToAst("<text>"))


_TOKEN_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": 'a "string"', "_NL": "end of line",
    "_INDENT": "an indented block", "_DEDENT": "the end of the block", "$END": "end of file",
    "DTYPE": "int, bool or float",
}


def _describe(terminal: str, parser: Lark) -> str:
    if terminal in _TOKEN_WORDS:
        return _TOKEN_WORDS[terminal]
    try:
        pattern = parser.get_terminal(terminal).pattern
    except KeyError:
        return terminal
    if pattern.type == "str":
        return f"'{pattern.value}'"
    return terminal.lower()


def normalise_text(text: str) -> str:
    """A program's text as the parser reads it: a leading UTF-8 byte-order mark dropped and every line
    ending (CRLF, or a lone CR) made LF, so lines and columns are the same whatever the editor wrote.

    >>> normalise_text("\ufeffa\r\nb\rc\n")
    'a\nb\nc\n'
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def decode_source(data: bytes, file: str) -> str:
    """A file's bytes as program text (see `normalise_text`).

    Raises:
        NotUTF8: bytes that are not UTF-8 (a CircuitSyntaxError), at the line and column of the first bad byte
            (columns count characters, as everywhere else).
    """
    try:
        return normalise_text(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        before = normalise_text(data[:e.start].decode("utf-8"))
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        source = normalise_text(data.decode("utf-8", "replace"))
        raise NotUTF8(f"{file} is not UTF-8 text: byte 0x{data[e.start]:02x} here cannot be decoded",
                                 Span(file, line, column, line, column + 1), source=source,
                                 hint="save the file as UTF-8") from None


def parse_module(text: str, file: str = "<text>") -> Module:
    """Parse one file's text into a Module.

    Raises:
        CircuitSyntaxError: with the span and what was expected.
    """
    text = normalise_text(text)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_PROGRAM_BYTES:
        raise CircuitSyntaxError(f"{file} is {size:,} bytes; the limit is {MAX_PROGRAM_BYTES:,} "
                                 f"(limits.MAX_PROGRAM_BYTES), so it was not parsed", Span(file, 1, 1, 1, 2))
    parser = _ast_parser()
    transformer = parser.options.transformer
    transformer.file = file
    transformer.depths = {}
    if not text.endswith("\n"):
        text = text + "\n"
    try:
        items = parser.parse(text)
    except UnexpectedInput as e:
        raise _translate(e, text, file, parser) from None
    except VisitError as e:
        orig = e.orig_exc
        if isinstance(orig, CircuitError):
            orig.source = text
            raise orig from None
        raise CircuitSyntaxError(f"cannot read this program: {orig}", Span(file, 1, 1, 1, 2), source=text) from None
    except CircuitError as e:
        e.source = text
        raise
    except DedentError:
        line = _dedent_line(text)
        raise CircuitSyntaxError("unindent does not match any outer indentation level",
                                 Span(file, line, 1, line, 2), source=text) from None
    finally:
        transformer.depths = {}
    uses, axes, circuits = [], [], []
    for it in items:
        if isinstance(it, Use):
            uses.append(it)
        elif isinstance(it, AxisDecl):
            axes.append(it)
        elif isinstance(it, CircuitDef):
            circuits.append(it)
    return Module(file, tuple(uses), tuple(axes), tuple(circuits), tuple(items))


def _dedent_line(text: str) -> int:
    levels = [0]
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if indent > levels[-1]:
            levels.append(indent)
        else:
            while indent < levels[-1]:
                levels.pop()
            if indent != levels[-1]:
                return i
    return 1


def _translate(e: UnexpectedInput, text: str, file: str, parser: Lark) -> CircuitSyntaxError:
    line = getattr(e, "line", None) or 1
    col = getattr(e, "column", None) or 1
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else "?"
        span = Span(file, line, col, line, col + 1)
        return CircuitSyntaxError(f"unexpected character {ch!r}", span, source=text,
                                  hint=_char_hint(ch))
    if isinstance(e, UnexpectedEOF):
        lines = text.splitlines() or [""]
        n = len(lines)
        span = Span(file, n, len(lines[-1]) + 1, n, len(lines[-1]) + 2)
        expected = sorted({_describe(t, parser) for t in e.expected})
        return CircuitSyntaxError("unexpected end of file; expected " + _one_of(expected), span, source=text)
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    # `accepts` is what the parser state really takes; `expected` may include
    # terminals the indenter always lets through
    expected = sorted({_describe(t, parser) for t in (getattr(e, "accepts", None) or e.expected)})
    if tok.type == "$END":
        lines = text.splitlines() or [""]
        n = len(lines)
        span = Span(file, n, max(len(lines[-1]), 1), n, max(len(lines[-1]), 1) + 1)
        found = "end of file"
    elif tok.type in ("_INDENT", "_DEDENT", "_NL"):
        tl = tok.end_line if tok.type == "_NL" else (tok.line or line)
        if tok.type == "_NL":
            tl = tok.line or line
            lt = text.splitlines()[tl - 1] if tl - 1 < len(text.splitlines()) else ""
            c = len(lt.rstrip()) + 1
            span = Span(file, tl, c, tl, c + 1)
        else:
            span = Span(file, tl or 1, 1, tl or 1, 2)
        found = _TOKEN_WORDS[tok.type]
        if tok.type == "_INDENT":
            found = "an unexpected indent"
    else:
        span = Span(file, tok.line, tok.column, tok.end_line, tok.end_column)
        found = repr(str(tok))
    hint = None
    before = text.splitlines()[tok.line - 1][:tok.column - 1] if tok.type == "EQUAL" and tok.line else ""
    if re.search(r"[\[,]\s*axis\s+[A-Za-z_]\w*\s*$", before):
        hint = "a name parameter has no default; each call binds it to an axis: Name[h = seq](...)"
    elif ("')'" in expected or "']'" in expected) and tok.type not in ("RPAR", "RSQB"):
        hint = "is a bracket left open before this point?"
    elif "':'" in expected and len(expected) <= 3:
        hint = "a circuit header or `repeat N` ends with ':' and an indented block"
    elif "'->'" in expected and tok.type == "COLON":
        hint = "a circuit header names its result type: circuit Name(x: [d]) -> [d]:"
    return CircuitSyntaxError(f"unexpected {found}; expected " + _one_of(expected), span,
                              source=text, hint=hint)


def _one_of(items: list[str]) -> str:
    if not items:
        return "something else"
    if len(items) == 1:
        return items[0]
    if len(items) > 8:
        return "one of " + ", ".join(items[:8]) + ", ..."
    return "one of " + ", ".join(items)


def _char_hint(ch: str) -> str | None:
    if ch == "\t":
        return None
    if ch in "'`":
        return 'strings (only in `use`) take double quotes: use "file.circuit"'
    if ch == "@":
        return "there is no matrix-multiply operator; use dot(a, b, over = axis) or linear(x, in -> out)"
    if ch in "{}":
        return "blocks are indented, as in Python; braces mean nothing here"
    return None


def size_text(node, parent_prec: int = 0) -> str:
    """A size expression written back as source (`d // heads`), with minimal parentheses."""
    if isinstance(node, SizeInt):
        return str(node.value)
    if isinstance(node, SizeName):
        return node.name
    prec = 1 if node.op in ("+", "-") else 2  # * // % bind tighter
    text = f"{size_text(node.left, prec)} {node.op} {size_text(node.right, prec + 1)}"
    return f"({text})" if prec < parent_prec else text


def bare_parse(text: str):
    """Lark's plain LALR parse of the same grammar (the benchmark's yardstick)."""
    return _bare_parser().parse(text if text.endswith("\n") else text + "\n")
