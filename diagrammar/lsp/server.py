"""Tools, language server: `diagrammar lsp`, the Language Server Protocol over stdio (pygls).

Every feature reads one `Analysis` per document version (analysis.py), made
by the checker itself. Diagnostics are published as the text changes (after a
short pause, so fast typing is checked once), with the hint and the type table
in the message. Any failure inside a handler is logged and answered with
nothing: an error in one file never stops the server.
"""
from __future__ import annotations

import asyncio
import logging
import traceback
from urllib.parse import unquote, urlparse

from lsprotocol import types as T
from pygls.lsp.server import LanguageServer

from .. import __version__
from ..errors import CircuitError
from ..fmt import FormatterBug, format_text
from .analysis import Analysis

__all__ = ["server", "make_server", "TOKEN_TYPES"]

log = logging.getLogger("diagrammar.lsp")

TOKEN_TYPES = ["keyword", "class", "function", "parameter", "type", "variable", "number", "string",
               "comment", "operator"]
DEBOUNCE = 0.15  # seconds of quiet before a changed document is checked

_KINDS = {
    "circuit": T.SymbolKind.Class, "axis": T.SymbolKind.TypeParameter, "use": T.SymbolKind.File,
    "input": T.SymbolKind.Variable, "wire": T.SymbolKind.Variable, "weight": T.SymbolKind.Field,
}
_COMPLETION_KINDS = {
    "operation": T.CompletionItemKind.Function, "keyword-argument": T.CompletionItemKind.Property,
    "circuit": T.CompletionItemKind.Class, "axis": T.CompletionItemKind.TypeParameter,
    "wire": T.CompletionItemKind.Variable, "keyword": T.CompletionItemKind.Keyword,
    "file": T.CompletionItemKind.File,
}


def uri_to_path(uri: str) -> str | None:
    p = urlparse(uri)
    if p.scheme != "file":
        return None
    return unquote(p.path)


def _utf16(line: str, col: int) -> int:
    """Code points to UTF-16 code units (LSP's default position encoding)."""
    return len(line[:col].encode("utf-16-le")) // 2


def _from_utf16(line: str, units: int) -> int:
    n = 0
    for i, ch in enumerate(line):
        if n >= units:
            return i
        n += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


class CircuitServer(LanguageServer):
    def __init__(self):
        super().__init__("diagrammar", __version__)
        self.analyses: dict[str, Analysis] = {}  # uri -> the latest analysis
        self.parsed: dict[str, Analysis] = {}  # uri -> the latest analysis whose text parsed
        self.pending: dict[str, asyncio.TimerHandle] = {}

    # --------------------------------------------------------------- documents

    def analysis(self, uri: str) -> Analysis | None:
        doc = self.workspace.get_text_document(uri)
        a = self.analyses.get(uri)
        if a is None or a.text != doc.source:
            a = self.refresh(uri)
        return a

    def refresh(self, uri: str) -> Analysis | None:
        try:
            doc = self.workspace.get_text_document(uri)
            a = Analysis(doc.source, uri_to_path(uri))
        except Exception:  # noqa: BLE001 - never let one file stop the server
            log.error("checking %s failed:\n%s", uri, traceback.format_exc())
            self.publish(uri, [T.Diagnostic(
                range=T.Range(T.Position(0, 0), T.Position(0, 1)),
                message="diagrammar could not check this file (an internal error; see the server log)",
                severity=T.DiagnosticSeverity.Error, source="diagrammar")])
            return None
        self.analyses[uri] = a
        if a.module is not None:
            self.parsed[uri] = a
        return a

    def names(self, uri: str) -> Analysis | None:
        """The analysis to answer name questions with: the latest whose text parsed."""
        a = self.analysis(uri)
        if a is not None and a.module is None and uri in self.parsed:
            return self.parsed[uri]
        return a

    def publish(self, uri: str, diagnostics: list[T.Diagnostic], version: int | None = None) -> None:
        self.text_document_publish_diagnostics(
            T.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version))

    def check_and_publish(self, uri: str) -> None:
        self.pending.pop(uri, None)
        a = self.refresh(uri)
        if a is None:
            return
        doc = self.workspace.get_text_document(uri)
        self.publish(uri, [self.lsp_diagnostic(a, d) for d in a.diagnostics], doc.version)

    def schedule(self, uri: str) -> None:
        old = self.pending.pop(uri, None)
        if old is not None:
            old.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.check_and_publish(uri)
            return
        self.pending[uri] = loop.call_later(DEBOUNCE, self.check_and_publish, uri)

    # --------------------------------------------------------------- conversions

    def position(self, a: Analysis, line: int, col: int) -> T.Position:
        """A 1-based line and 0-based code-point column as an LSP position."""
        line0 = max(line - 1, 0)
        text = a.lines[line0] if line0 < len(a.lines) else ""
        return T.Position(line0, _utf16(text, col))

    def span_range(self, a: Analysis, line, column, end_line, end_column) -> T.Range:
        start = self.position(a, line, column - 1)
        end = self.position(a, end_line, end_column - 1)
        if (end.line, end.character) <= (start.line, start.character):
            end = T.Position(start.line, start.character + 1)
        return T.Range(start, end)

    def at(self, a: Analysis, pos: T.Position) -> tuple[int, int]:
        text = a.lines[pos.line] if pos.line < len(a.lines) else ""
        return pos.line + 1, _from_utf16(text, pos.character)

    def lsp_diagnostic(self, a: Analysis, d) -> T.Diagnostic:
        message = d.message
        if d.detail:
            message += "\n" + "\n".join(d.detail)
        if d.hint:
            message += f"\nhint: {d.hint}"
        return T.Diagnostic(
            range=self.span_range(a, d.line, d.column, d.end_line, d.end_column), message=message,
            severity=T.DiagnosticSeverity.Error if d.severity == "error" else T.DiagnosticSeverity.Warning,
            code=d.code, source="diagrammar", data={"hint": d.hint})


server = CircuitServer()


def _guard(default=None):
    """Answer ``default`` (and log) when a handler fails, instead of an error the editor shows."""
    def wrap(fn):
        def handler(ls, params):
            try:
                return fn(ls, params)
            except Exception:  # noqa: BLE001
                log.error("%s failed:\n%s", fn.__name__, traceback.format_exc())
                return default
        handler.__name__ = fn.__name__
        return handler
    return wrap


@server.feature(T.TEXT_DOCUMENT_DID_OPEN)
@_guard()
def did_open(ls: CircuitServer, params: T.DidOpenTextDocumentParams):
    ls.check_and_publish(params.text_document.uri)


@server.feature(T.TEXT_DOCUMENT_DID_CHANGE)
@_guard()
def did_change(ls: CircuitServer, params: T.DidChangeTextDocumentParams):
    ls.schedule(params.text_document.uri)


@server.feature(T.TEXT_DOCUMENT_DID_SAVE)
@_guard()
def did_save(ls: CircuitServer, params: T.DidSaveTextDocumentParams):
    ls.check_and_publish(params.text_document.uri)


@server.feature(T.TEXT_DOCUMENT_DID_CLOSE)
@_guard()
def did_close(ls: CircuitServer, params: T.DidCloseTextDocumentParams):
    uri = params.text_document.uri
    ls.analyses.pop(uri, None)
    ls.parsed.pop(uri, None)
    pending = ls.pending.pop(uri, None)
    if pending is not None:
        pending.cancel()
    ls.publish(uri, [])


@server.feature(T.TEXT_DOCUMENT_HOVER)
@_guard()
def hover(ls: CircuitServer, params: T.HoverParams):
    a = ls.names(params.text_document.uri)
    if a is None:
        return None
    line, col = ls.at(a, params.position)
    text = a.hover(line, col)
    if not text:
        return None
    w = a.word_at(line, col)
    rng = None
    if w is not None:
        rng = T.Range(ls.position(a, line, w[1]), ls.position(a, line, w[2]))
    return T.Hover(contents=T.MarkupContent(kind=T.MarkupKind.Markdown, value=text), range=rng)


@server.feature(T.TEXT_DOCUMENT_DEFINITION)
@_guard(default=[])
def definition(ls: CircuitServer, params: T.DefinitionParams):
    a = ls.names(params.text_document.uri)
    if a is None:
        return []
    line, col = ls.at(a, params.position)
    out = []
    for d in a.definition(line, col):
        uri = params.text_document.uri if d.path == a.path else "file://" + d.path
        target_lines = a.lines if d.path == a.path else _read_lines(d.path)
        start = T.Position(d.span.line - 1, _utf16(_nth(target_lines, d.span.line - 1), d.span.column - 1))
        end = T.Position(d.span.end_line - 1, _utf16(_nth(target_lines, d.span.end_line - 1), d.span.end_column - 1))
        out.append(T.Location(uri=uri, range=T.Range(start, end)))
    return out


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except OSError:
        return []


def _nth(lines: list[str], i: int) -> str:
    return lines[i] if 0 <= i < len(lines) else ""


@server.feature(T.TEXT_DOCUMENT_COMPLETION, T.CompletionOptions(trigger_characters=["(", ",", "=", " ", '"', "["]))
@_guard()
def completion(ls: CircuitServer, params: T.CompletionParams):
    doc = ls.workspace.get_text_document(params.text_document.uri)
    a = ls.names(params.text_document.uri)
    if a is None:
        return None
    # complete against the text as it is now (the names come from the last text that parsed)
    line_text = doc.lines[params.position.line] if params.position.line < len(doc.lines) else ""
    col = _from_utf16(line_text.rstrip("\r\n"), params.position.character)
    current = Analysis.__new__(Analysis)
    current.__dict__.update(a.__dict__)
    current.lines = doc.source.splitlines()
    items = []
    for i, c in enumerate(current.complete(params.position.line + 1, col)):
        items.append(T.CompletionItem(
            label=c.label, kind=_COMPLETION_KINDS.get(c.kind), detail=c.detail or None,
            documentation=c.documentation or None, insert_text=c.insert_text, sort_text=f"{i:04d}"))
    return T.CompletionList(is_incomplete=False, items=items)


@server.feature(T.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
@_guard(default=[])
def document_symbol(ls: CircuitServer, params: T.DocumentSymbolParams):
    a = ls.names(params.text_document.uri)
    if a is None:
        return []

    def conv(s):
        rng = ls.span_range(a, s.span.line, s.span.column, s.span.end_line, s.span.end_column)
        sel = ls.span_range(a, s.selection.line, s.selection.column, s.selection.end_line, s.selection.end_column)
        if not (rng.start.line <= sel.start.line <= rng.end.line):
            rng = sel
        return T.DocumentSymbol(name=s.name, kind=_KINDS.get(s.kind, T.SymbolKind.Variable), range=rng,
                                selection_range=sel, detail=s.detail or None,
                                children=[conv(c) for c in s.children] or None)
    return [conv(s) for s in a.symbols()]


@server.feature(T.TEXT_DOCUMENT_FORMATTING)
@_guard()
def formatting(ls: CircuitServer, params: T.DocumentFormattingParams):
    doc = ls.workspace.get_text_document(params.text_document.uri)
    try:
        new = format_text(doc.source)
    except (CircuitError, FormatterBug):
        return None  # a text that does not parse is left as it is (its diagnostic says why)
    if new == doc.source:
        return []
    lines = doc.source.splitlines()
    end = T.Position(len(lines), 0)
    return [T.TextEdit(range=T.Range(T.Position(0, 0), end), new_text=new)]


@server.feature(T.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL,
                T.SemanticTokensLegend(token_types=TOKEN_TYPES, token_modifiers=[]))
@_guard()
def semantic_tokens(ls: CircuitServer, params: T.SemanticTokensParams):
    doc = ls.workspace.get_text_document(params.text_document.uri)
    a = ls.names(params.text_document.uri)
    if a is None:
        return T.SemanticTokens(data=[])
    current = Analysis.__new__(Analysis)
    current.__dict__.update(a.__dict__)
    current.text = doc.source
    current.lines = doc.source.splitlines()
    data = []
    prev_line, prev_col = 0, 0
    for line, col, length, kind in current.semantic_tokens():
        text = current.lines[line - 1] if line - 1 < len(current.lines) else ""
        l0, c0 = line - 1, _utf16(text, col)
        n = _utf16(text, col + length) - c0
        data += [l0 - prev_line, c0 - prev_col if l0 == prev_line else c0, n, TOKEN_TYPES.index(kind), 0]
        prev_line, prev_col = l0, c0
    return T.SemanticTokens(data=data)


def make_server() -> CircuitServer:
    return server


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="diagrammar lsp: %(message)s")
    server.start_io()
