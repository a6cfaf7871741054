"""Tools, formatter: one canonical layout for a `.circuit` file, comments kept, meaning unchanged.

The formatter works on the token stream, not on the AST, so a construct it
does not know still comes out safely. Its tokens are read with the grammar's
own terminals and literals (taken from ``grammar/circuit.lark`` when the module
is first used), so a keyword or operator added to the grammar is a token here
too. What it does:

* one logical line per statement, indented four spaces per block level;
* spaces: one around binary operators, ``=`` and ``->``, one after ``,`` and
  ``:``, none inside brackets, none between a name and its ``(`` or ``[``, none
  after a unary minus. Between two tokens it has no rule for (a new kind of
  punctuation) the spacing is kept as written: a space if there was one;
* a line longer than ``line_length`` is broken at a bracket pair (the largest
  one whose opening and closing lines then fit, else the largest):
  the contents on one indented line, or one item per line when that is still
  too long (never a trailing comma: calls do not allow one), recursively;
* comments stay where they were: a comment on its own line stays on its own
  line, at the indentation of the block it sits in; a comment after code stays
  after that code, two spaces after it, and the comments of consecutive lines
  share one column (as gofmt aligns them);
* blank lines: at most one in a row, none at the start of a block or the file,
  one before every top-level ``circuit`` and after every block that ends at the
  top level.

Invariants, checked on every call: the result parses to the same AST as the
input (spans aside), and formatting it again changes nothing. A text that does
not parse is refused with its CircuitSyntaxError; the formatter never guesses.

>>> print(format_text("axis d=4\\ncircuit F(x:[d])->[d]:\\n  return relu( x )*2 # scaled\\n"), end="")
axis d = 4
<BLANKLINE>
circuit F(x: [d]) -> [d]:
    return relu(x) * 2  # scaled
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, is_dataclass
from functools import lru_cache

from . import syntax
from .errors import Span

__all__ = ["format_text", "is_formatted", "FormatterBug", "LINE_LENGTH", "tokenize"]

LINE_LENGTH = 100
INDENT = "    "

# Spacing roles of token texts. A literal of the grammar that is none of these
# (and no word) is "unknown": the spacing around it is kept as written.
BINARY = frozenset({"+", "-", "*", "/", "//", "%", "<", "<=", ">", ">=", "==", "!=", "=", "->"})
OPEN = frozenset({"(", "["})
CLOSE = frozenset({")", "]"})
# keywords after which a space always follows, even before a bracket (`return (a, b)`)
STATEMENT_WORDS = frozenset({"use", "axis", "circuit", "param", "return", "repeat", "require"})


class FormatterBug(Exception):
    """The formatted text would not mean what the input meant (a bug; the input is left as it was)."""


# ---------------------------------------------------------------- tokens


@dataclass
class Tok:
    """One token of a logical line, with the comments that travel with it."""

    kind: str  # word | number | string | punct
    text: str
    line: int  # 1-based physical line
    col: int  # 0-based column on that line
    space_before: bool = False  # whitespace or a line break before it in the source
    leading: list[str] = field(default_factory=list)  # own-line comments just before it
    trailing: list[tuple[str, int]] = field(default_factory=list)  # (comment, source column) after it
    unary: bool = False  # a prefix minus


def _strip_grammar_comment(line: str) -> str:
    """A grammar line without its `// ...` comment (quotes respected)."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif not quoted and line.startswith("//", i) and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


@lru_cache(maxsize=None)
def _lexicon() -> tuple[re.Pattern, frozenset[str], tuple[str, ...]]:
    """(one regex for names, numbers and strings; the grammar's keywords; its punctuation, longest first).

    Read from the grammar so that a literal added to the language is one token here too.
    """
    text = syntax.grammar_text()
    terminals = {}
    literals: set[str] = set()
    for raw in text.splitlines():
        line = _strip_grammar_comment(raw).strip()
        if not line or line.startswith("%"):
            continue
        m = re.match(r"^([A-Z][A-Z_0-9]*)\s*:\s*/(.*)/[imslux]*\s*$", line)
        if m:
            terminals[m.group(1)] = m.group(2)
            continue
        if re.match(r"^_?[A-Z][A-Z_0-9]*\s*:", line):
            continue  # a terminal built from others (_NL)
        for lit in re.findall(r'"((?:[^"\\]|\\.)*)"', line):
            literals.add(lit.encode().decode("unicode_escape"))
    name = terminals.get("NAME", r"[A-Za-z_][A-Za-z0-9_]*")
    number = terminals.get("NUMBER", r"[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?")
    string = terminals.get("STRING", r'"[^"\n]*"')
    word_re = re.compile(f"(?P<number>{number})|(?P<string>{string})|(?P<word>{name})")
    keywords = frozenset(lit for lit in literals if re.fullmatch(name, lit))
    punct = tuple(sorted((lit for lit in literals if lit not in keywords and lit),
                         key=lambda s: (-len(s), s)))
    return word_re, keywords, punct


_SPACE = re.compile(r"[ \t\f]+")
_CONTINUATION = re.compile(r"\\[ \t\f]*\r?\n")
_NEWLINE = re.compile(r"\r?\n")
_COMMENT = re.compile(r"#[^\r\n]*")


def tokenize(text: str) -> list[tuple]:
    """The raw token stream: ("tok", kind, text, line, col), ("nl", line), ("comment", text, line, col).

    ``line`` is 1-based and ``col`` 0-based. Text that no terminal matches
    becomes one "punct" token per character (the parser has refused such a
    text before the formatter sees it).
    """
    word_re, _keywords, punct = _lexicon()
    out = []
    i, line, line_start = 0, 1, 0
    n = len(text)
    while i < n:
        m = _SPACE.match(text, i)
        if m:
            i = m.end()
            continue
        m = _CONTINUATION.match(text, i)
        if m:
            i, line, line_start = m.end(), line + 1, m.end()
            continue
        m = _NEWLINE.match(text, i)
        if m:
            out.append(("nl", line))
            i, line, line_start = m.end(), line + 1, m.end()
            continue
        col = i - line_start
        m = _COMMENT.match(text, i)
        if m:
            out.append(("comment", m.group().rstrip(), line, col))
            i = m.end()
            continue
        m = word_re.match(text, i)
        best_kind, best = None, ""
        if m and m.group():
            best_kind, best = m.lastgroup, m.group()
        for p in punct:
            if text.startswith(p, i):
                if len(p) >= len(best):  # a literal wins a tie (`1` is never one)
                    best_kind, best = "punct", p
                break
        if not best:
            best_kind, best = "punct", text[i]
        out.append(("tok", best_kind, best, line, col))
        i += len(best)
    return out


# ---------------------------------------------------------------- logical lines


@dataclass
class _Line:
    kind: str  # "code" | "comment"
    blank_before: int
    width: int = 0  # indentation of the source line (tabs to 8)
    toks: list[Tok] = field(default_factory=list)
    text: str = ""  # the comment of a comment line
    level: int = 0


def _indent_width(text_line: str) -> int:
    w = 0
    for ch in text_line:
        if ch == " ":
            w += 1
        elif ch == "\t":
            w += 8 - w % 8  # as the parser's indenter counts (tab_len 8)
        else:
            break
    return w


def _logical_lines(text: str) -> list[_Line]:
    physical = text.splitlines()
    lines: list[_Line] = []
    depth = 0
    current: _Line | None = None
    blank = 0
    seen_on_line = False  # anything on the current physical line
    pending: list[str] = []  # own-line comments inside brackets, for the next token
    for ev in tokenize(text):
        if ev[0] == "nl":
            if depth == 0:
                if current is not None:
                    lines.append(current)
                    current = None
                elif not seen_on_line:
                    blank += 1
            seen_on_line = False
            continue
        if ev[0] == "comment":
            _, ctext, line, col = ev
            if depth > 0 and current is not None and current.toks:
                last = current.toks[-1]
                if last.line == line:
                    last.trailing.append((ctext, col))
                else:
                    pending.append(ctext)
            elif current is not None and current.toks:
                current.toks[-1].trailing.append((ctext, col))
            else:
                lines.append(_Line("comment", blank, width=col, text=ctext))
                blank = 0
            seen_on_line = True
            continue
        _, kind, ttext, line, col = ev
        if current is None:
            current = _Line("code", blank, width=_indent_width(physical[line - 1]))
            blank = 0
        prev = current.toks[-1] if current.toks else None
        space = prev is None or prev.line != line or col > prev.col + len(prev.text)
        tok = Tok(kind, ttext, line, col, space_before=space)
        if pending:
            tok.leading, pending = pending, []
        current.toks.append(tok)
        seen_on_line = True
        if ttext in OPEN:
            depth += 1
        elif ttext in CLOSE and depth > 0:
            depth -= 1
    if current is not None:
        lines.append(current)
    return lines


def _assign_levels(lines: list[_Line]) -> None:
    """Block levels from the source's indentation, as the parser's indenter computes them."""
    stack = [0]
    code = [i for i, ln in enumerate(lines) if ln.kind == "code"]
    levels_at: dict[int, list[int]] = {}
    for i in code:
        ln = lines[i]
        if ln.width > stack[-1]:
            stack.append(ln.width)
        else:
            while len(stack) > 1 and ln.width < stack[-1]:
                stack.pop()
        ln.level = len(stack) - 1
        levels_at[i] = list(stack)
    # a comment line goes to the deepest block still open at its column, between the
    # code line before it and the one after it
    prev_stack = [0]
    for i, ln in enumerate(lines):
        if ln.kind == "code":
            prev_stack = levels_at[i]
            continue
        nxt = next((lines[j] for j in range(i + 1, len(lines)) if lines[j].kind == "code"), None)
        lo = nxt.level if nxt is not None else 0
        hi = len(prev_stack) - 1
        if nxt is not None and nxt.level > hi:  # first line of a block
            ln.level = nxt.level
            continue
        level = lo
        for k in range(hi, lo - 1, -1):
            if prev_stack[k] <= ln.width:
                level = k
                break
        ln.level = max(level, lo)


# ---------------------------------------------------------------- spacing


def _mark_unary(toks: list[Tok], keywords: frozenset[str]) -> None:
    prev = None
    for t in toks:
        if t.text == "-" and t.kind == "punct":
            t.unary = (prev is None or prev.text in OPEN or prev.text in (",", ":")
                       or (prev.kind == "punct" and prev.text in BINARY)
                       or (prev.kind == "word" and prev.text in keywords and prev.text in STATEMENT_WORDS))
        prev = t


def _space(prev: Tok, tok: Tok, keywords: frozenset[str], first: Tok) -> bool:
    """Whether one space goes between ``prev`` and ``tok``."""
    wordlike = ("word", "number", "string")
    if tok.kind == "punct" and tok.text in (",", ":"):
        return False
    if prev.kind == "punct" and prev.text in OPEN:
        return False
    if tok.kind == "punct" and tok.text in CLOSE:
        return False
    if prev.kind == "punct" and prev.text in (",", ":"):
        return True
    if prev.unary:
        return False
    statement_word = prev.kind == "word" and prev.text in keywords and (
        prev.text in STATEMENT_WORDS or prev is first)
    if tok.kind == "punct" and tok.text in OPEN:
        if statement_word:
            return True
        if prev.kind in ("word", "string") or (prev.kind == "punct" and prev.text in CLOSE):
            return False  # a call, a type's dtype, call sizes, Name[p = a](x)
        if prev.kind == "punct" and prev.text in BINARY:
            return True
        return tok.space_before
    if tok.unary:
        return not (prev.kind == "punct" and prev.text in OPEN)
    if (tok.kind == "punct" and tok.text in BINARY) or (prev.kind == "punct" and prev.text in BINARY):
        return True
    if prev.kind in wordlike and tok.kind in wordlike:
        return True
    if prev.kind == "punct" and prev.text in CLOSE and tok.kind in wordlike:
        return True
    return tok.space_before


# ---------------------------------------------------------------- layout


class _Layout:
    def __init__(self, line_length: int, keywords: frozenset[str]):
        self.limit = line_length
        self.keywords = keywords

    def flat(self, toks: list[Tok], first: Tok) -> str:
        parts = []
        prev = None
        for t in toks:
            if prev is not None and _space(prev, t, self.keywords, first):
                parts.append(" ")
            parts.append(t.text)
            prev = t
        return "".join(parts)

    @staticmethod
    def _comments_inside(toks: list[Tok]) -> bool:
        """A comment that a one-line rendering of ``toks`` would have to move or lose."""
        return (any(t.trailing for t in toks[:-1]) or any(t.leading for t in toks[1:]))

    @staticmethod
    def _line(indent: str, code: str, toks: list[Tok]) -> list[tuple[str, str]]:
        """One output line: (code, its comments; "" for none). Comments are aligned later."""
        comments = [c for t in toks[1:] for c in t.leading] + [c for t in toks for c, _ in t.trailing]
        return [(indent + code, "  ".join(comments))]

    def render(self, toks: list[Tok], level: int, first: Tok) -> list[tuple[str, str]]:
        indent = INDENT * level
        out = [(indent + c, "") for c in toks[0].leading]
        code = self.flat(toks, first)
        if len(indent) + len(code) <= self.limit and not self._comments_inside(toks):
            return out + self._line(indent, code, toks)
        groups = self._groups(toks)
        if not groups:
            return out + self._line(indent, code, toks)
        commented = [g for g in groups if self._comments_inside(toks[g[0]:g[1] + 1])]
        i, j = commented[0] if commented else self._choose(toks, groups, indent, first)
        head, body, tail = toks[:i + 1], toks[i + 1:j], toks[j:]
        out += self._line(indent, self.flat(head, first), head)
        inner = indent + INDENT
        if body:
            one = self.flat(body, first)
            if (len(inner) + len(one) <= self.limit and not self._comments_inside(body)
                    and not body[0].leading and not any(t.trailing for t in body)):
                out.append((inner + one, ""))
            else:
                for item in self._items(body):
                    out += self.render(item, level + 1, first)
        for c in tail[0].leading:
            out.append((inner + c, ""))
        tail0 = Tok(tail[0].kind, tail[0].text, tail[0].line, tail[0].col, tail[0].space_before,
                    [], tail[0].trailing, tail[0].unary)
        out += self.render([tail0] + tail[1:], level, first)
        return out

    def _choose(self, toks: list[Tok], groups: list[tuple[int, int]], indent: str, first: Tok) -> tuple[int, int]:
        """The bracket pair to break: the largest whose opening and closing lines then fit, else the largest."""
        fitting = [(i, j) for i, j in groups
                   if len(indent) + len(self.flat(toks[:i + 1], first)) <= self.limit
                   and len(indent) + len(self.flat(toks[j:], first)) <= self.limit]
        return max(fitting or groups, key=lambda g: (g[1] - g[0], g[0]))

    @staticmethod
    def _groups(toks: list[Tok]) -> list[tuple[int, int]]:
        """Outermost bracket pairs (open index, close index) with something or a comment between."""
        groups, stack = [], []
        for k, t in enumerate(toks):
            if t.kind != "punct":
                continue
            if t.text in OPEN:
                stack.append(k)
            elif t.text in CLOSE and stack:
                o = stack.pop()
                if not stack and k > o + 1:
                    groups.append((o, k))
        return groups

    @staticmethod
    def _items(body: list[Tok]) -> list[list[Tok]]:
        """``body`` cut after each comma outside brackets (the comma stays with its item)."""
        items, cur, depth = [], [], 0
        for t in body:
            cur.append(t)
            if t.kind == "punct":
                if t.text in OPEN:
                    depth += 1
                elif t.text in CLOSE:
                    depth -= 1
                elif t.text == "," and depth == 0:
                    items.append(cur)
                    cur = []
        if cur:
            items.append(cur)
        return items


# ---------------------------------------------------------------- the whole file


def format_text(text: str, *, line_length: int = LINE_LENGTH, file: str = "<text>") -> str:
    """``text`` in the canonical layout.

    Args:
        text: a whole `.circuit` file.
        line_length: the width lines are broken to fit (comments are never broken).
        file: the name used in an error's span.

    Returns:
        The formatted text: ends with one newline, or is empty when ``text`` holds no code or comment.

    Raises:
        CircuitSyntaxError: ``text`` does not parse (nothing is formatted).
        FormatterBug: the result would parse to a different program (never expected).
    """
    original = syntax.parse_module(text, file)  # refuse what does not parse
    _, keywords, _ = _lexicon()
    lines = _logical_lines(text)
    _assign_levels(lines)
    layout = _Layout(line_length, keywords)
    out: list[tuple[str, str]] = []
    prev: _Line | None = None
    for k, ln in enumerate(lines):
        blank = min(ln.blank_before, 1)
        if prev is None:
            blank = 0
        elif prev.kind == "code" and prev.toks and prev.toks[-1].text == ":" and ln.level > prev.level:
            blank = 0  # no blank line opens a block
        elif ln.level == 0 and prev.level > 0:
            blank = 1  # a block that ends at the top level
        if ln.level == 0 and prev is not None and _starts_circuit(lines, k):
            blank = 1
        out.extend([("", "")] * blank)
        if ln.kind == "comment":
            out.append((INDENT * ln.level + ln.text, ""))
        else:
            _mark_unary(ln.toks, keywords)
            out.extend(layout.render(ln.toks, ln.level, ln.toks[0]))
        prev = ln
    result = "\n".join(line.rstrip() for line in _align_comments(out))
    result = result + "\n" if result else ""
    try:
        formatted = syntax.parse_module(result, file)
    except Exception as e:  # noqa: BLE001 - any failure here is the formatter's bug
        raise FormatterBug(f"the formatted text of {file} does not parse ({e}); it was left as written") from None
    if _shape(formatted) != _shape(original):
        raise FormatterBug(f"formatting {file} would change its program; it was left as written")
    return result


def _align_comments(lines: list[tuple[str, str]]) -> list[str]:
    """Trailing comments of consecutive lines share one column, two spaces after the longest code (as gofmt)."""
    out = []
    k = 0
    while k < len(lines):
        if not lines[k][1]:
            out.append(lines[k][0])
            k += 1
            continue
        j = k
        while j < len(lines) and lines[j][1]:
            j += 1
        col = max(len(code.rstrip()) for code, _ in lines[k:j]) + 2
        out.extend(code.rstrip().ljust(col) + comment for code, comment in lines[k:j])
        k = j
    return out


def _starts_circuit(lines: list[_Line], k: int) -> bool:
    """Line k is a top-level `circuit` header or the comment block directly above one."""
    j = k
    while j < len(lines) and lines[j].kind == "comment" and lines[j].level == 0:
        if j > k and lines[j].blank_before:
            return False
        j += 1
    if j >= len(lines) or lines[j].kind != "code" or (j > k and lines[j].blank_before):
        return False
    if k > 0 and lines[k - 1].kind == "comment" and lines[k - 1].level == 0 and not lines[k].blank_before:
        return False  # not the first line of the comment block
    return lines[j].toks[0].text == "circuit"


def is_formatted(text: str, *, line_length: int = LINE_LENGTH, file: str = "<text>") -> bool:
    """True when ``format_text`` would leave ``text`` as it is."""
    return format_text(text, line_length=line_length, file=file) == text


def _shape(node):
    """An AST with its spans (and file names) taken out, for comparing two parses of one program."""
    if isinstance(node, Span):
        return None
    if is_dataclass(node) and not isinstance(node, type):
        return (type(node).__name__,) + tuple(_shape(getattr(node, f.name)) for f in fields(node)
                                              if f.name != "file")
    if isinstance(node, (tuple, list)):
        return tuple(_shape(x) for x in node)
    return node
