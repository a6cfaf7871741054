"""The language server, driven by a real LSP client over stdio (pytest-lsp starts `python -m diagrammar lsp`)."""
import asyncio
import sys
from pathlib import Path

import pytest

pytest.importorskip("pygls", reason="the language server needs pygls: pip install 'diagrammar[lsp]'")
pytest_lsp = pytest.importorskip("pytest_lsp", reason="the language-server tests need pytest-lsp")
from lsprotocol import types as T  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
use "attention.circuit"

axis vocab = 256, mlp = 4 * d

circuit FeedForward(x: [d]) -> [d]:
    h = gelu(linear(x, d -> mlp))
    return linear(h, mlp -> d)

circuit Block(x: [seq, d]) -> [seq, d]:
    attn = CausalSelfAttention(layernorm(x, over = d))
    x = x + attn
    return x + FeedForward(layernorm(x, over = d))
"""

# line 7 (0-based 6) returns [mlp] where [d] is declared
BAD = GOOD.replace("    return linear(h, mlp -> d)", "    return h")


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "diagrammar", "lsp"],
                                              server_env={"PYTHONPATH": str(ROOT)}))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(T.InitializeParams(
        capabilities=T.ClientCapabilities(), root_uri=ROOT.as_uri(), workspace_folders=None))
    yield
    await lsp_client.shutdown_session()


async def _diagnostics(client: LanguageClient, uri: str, timeout: float = 20.0):
    await asyncio.wait_for(client.wait_for_notification("textDocument/publishDiagnostics"), timeout)
    return list(client.diagnostics[uri])


def _open(client, path: Path, text: str, version: int = 1) -> str:
    uri = path.as_uri()
    client.text_document_did_open(T.DidOpenTextDocumentParams(
        text_document=T.TextDocumentItem(uri=uri, language_id="circuit", version=version, text=text)))
    return uri


def _change(client, uri: str, text: str, version: int) -> None:
    client.text_document_did_change(T.DidChangeTextDocumentParams(
        text_document=T.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[T.TextDocumentContentChangeWholeDocument(text=text)]))


@pytest.mark.asyncio
async def test_a_bad_file_gets_its_diagnostic_at_the_right_range_with_the_hint(client, tmp_path):
    uri = _open(client, tmp_path / "bad.circuit", BAD)
    diags = await _diagnostics(client, uri)
    assert len(diags) == 1
    d = diags[0]
    assert d.severity == T.DiagnosticSeverity.Error and d.source == "diagrammar"
    assert d.code == "ShapeMismatch"
    assert (d.range.start.line, d.range.start.character) == (6, 4)  # `return h`, line 7 column 5
    assert (d.range.end.line, d.range.end.character) == (6, 12)
    assert "returns [mlp]" in d.message and "hint:" in d.message


@pytest.mark.asyncio
async def test_hover_definition_completion_symbols_and_formatting(client, tmp_path):
    uri = _open(client, tmp_path / "good.circuit", GOOD)
    assert await _diagnostics(client, uri) == []
    doc = T.TextDocumentIdentifier(uri=uri)

    # hover on a wire: its type with sizes
    h = await client.text_document_hover_async(T.HoverParams(text_document=doc, position=T.Position(5, 4)))
    assert "wire `h`" in h.contents.value and "[mlp=256]" in h.contents.value
    # hover on a box: its parameters and FLOPs
    h = await client.text_document_hover_async(T.HoverParams(text_document=doc, position=T.Position(5, 14)))
    assert "linear" in h.contents.value and "16,640 parameters" in h.contents.value and "FLOPs" in h.contents.value
    # hover on an axis: its size
    h = await client.text_document_hover_async(T.HoverParams(text_document=doc, position=T.Position(2, 20)))
    assert "axis `mlp` = 4 * d = 256" in h.contents.value

    # definition: a circuit in a file this one uses, a circuit of this file, a wire, an axis, the use path
    locs = await client.text_document_definition_async(T.DefinitionParams(text_document=doc, position=T.Position(9, 14)))
    assert locs[0].uri.endswith("circuits/attention.circuit")
    locs = await client.text_document_definition_async(T.DefinitionParams(text_document=doc, position=T.Position(11, 17)))
    assert locs[0].uri == uri and locs[0].range.start.line == 4
    locs = await client.text_document_definition_async(T.DefinitionParams(text_document=doc, position=T.Position(6, 18)))
    assert locs[0].uri == uri and (locs[0].range.start.line, locs[0].range.start.character) == (5, 4)
    locs = await client.text_document_definition_async(T.DefinitionParams(text_document=doc, position=T.Position(5, 29)))
    assert locs[0].uri == uri and locs[0].range.start.line == 2
    locs = await client.text_document_definition_async(T.DefinitionParams(text_document=doc, position=T.Position(0, 8)))
    assert locs[0].uri.endswith("circuits/attention.circuit")

    # completion: keyword arguments of the enclosing operation first, then values, axes, circuits, operations
    done = await client.text_document_completion_async(T.CompletionParams(text_document=doc, position=T.Position(9, 48)))
    labels = [i.label for i in done.items]
    assert labels[0] == "over" and done.items[0].insert_text == "over = "
    assert {"x", "seq", "d", "FeedForward", "softmax", "linear"} <= set(labels)

    symbols = await client.text_document_document_symbol_async(T.DocumentSymbolParams(text_document=doc))
    assert [s.name for s in symbols] == ["attention.circuit", "vocab", "mlp", "FeedForward", "Block"]
    assert [c.name for c in symbols[3].children] == ["x", "h"]

    edits = await client.text_document_formatting_async(T.DocumentFormattingParams(
        text_document=doc, options=T.FormattingOptions(tab_size=4, insert_spaces=True)))
    assert not edits  # already formatted

    tokens = await client.text_document_semantic_tokens_full_async(T.SemanticTokensParams(text_document=doc))
    assert len(tokens.data) % 5 == 0 and len(tokens.data) > 50


@pytest.mark.asyncio
async def test_a_file_edited_into_a_syntax_error_and_back(client, tmp_path):
    uri = _open(client, tmp_path / "edit.circuit", GOOD)
    assert await _diagnostics(client, uri) == []
    broken = GOOD.replace("h = gelu(linear(x, d -> mlp))", "h = gelu(linear(x, d -> mlp)")
    _change(client, uri, broken, 2)
    diags = await _diagnostics(client, uri)
    assert len(diags) == 1 and diags[0].code == "CircuitSyntaxError"
    # names still answer from the last text that parsed
    doc = T.TextDocumentIdentifier(uri=uri)
    h = await client.text_document_hover_async(T.HoverParams(text_document=doc, position=T.Position(2, 20)))
    assert "mlp" in h.contents.value
    edits = await client.text_document_formatting_async(T.DocumentFormattingParams(
        text_document=doc, options=T.FormattingOptions(tab_size=4, insert_spaces=True)))
    assert not edits  # nothing is formatted while the text does not parse
    _change(client, uri, GOOD.replace("x = x + attn", "x=x+attn"), 3)
    assert await _diagnostics(client, uri) == []
    edits = await client.text_document_formatting_async(T.DocumentFormattingParams(
        text_document=doc, options=T.FormattingOptions(tab_size=4, insert_spaces=True)))
    assert len(edits) == 1 and edits[0].new_text == GOOD


@pytest.mark.asyncio
async def test_garbage_and_odd_requests_never_stop_the_server(client, tmp_path):
    uri = _open(client, tmp_path / "junk.circuit", "circuit ((( \x00 é🙂 ->\n\t  return\n")
    diags = await _diagnostics(client, uri)
    assert diags and diags[0].severity == T.DiagnosticSeverity.Error
    doc = T.TextDocumentIdentifier(uri=uri)
    for pos in (T.Position(0, 0), T.Position(0, 30), T.Position(50, 3)):
        await client.text_document_hover_async(T.HoverParams(text_document=doc, position=pos))
        await client.text_document_definition_async(T.DefinitionParams(text_document=doc, position=pos))
        await client.text_document_completion_async(T.CompletionParams(text_document=doc, position=pos))
    # still alive: a good file is checked
    uri2 = _open(client, tmp_path / "ok.circuit", "axis d = 4\n\ncircuit F(x: [d]) -> [d]:\n    return x\n")
    assert await _diagnostics(client, uri2) == []
