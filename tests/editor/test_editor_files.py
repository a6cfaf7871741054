"""The VS Code extension folder: a valid manifest, and a TextMate grammar that colours the zoo as expected."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR = json.loads((VSCODE / "syntaxes" / "circuit.tmLanguage.json").read_text())


def test_the_extension_manifest_names_its_files():
    pkg = json.loads((VSCODE / "package.json").read_text())
    assert (VSCODE / pkg["main"]).is_file()
    lang = pkg["contributes"]["languages"][0]
    assert lang["id"] == "circuit" and lang["extensions"] == [".circuit"]
    assert (VSCODE / lang["configuration"]).is_file()
    json.loads((VSCODE / lang["configuration"]).read_text())
    grammar = pkg["contributes"]["grammars"][0]
    assert grammar["scopeName"] == GRAMMAR["scopeName"] == "source.circuit"
    assert (VSCODE / grammar["path"]).is_file()
    assert pkg["contributes"]["configuration"]["properties"]["diagrammar.command"]["default"] == ["diagrammar", "lsp"]
    assert "diagrammar" in (VSCODE / "extension.js").read_text() and "lsp" in (VSCODE / "extension.js").read_text()


def _rules(node, seen=()):
    """The grammar's match rules in the order TextMate tries them, includes expanded."""
    for p in node.get("patterns", []):
        if "include" in p:
            name = p["include"].lstrip("#")
            if name not in seen:
                yield from _rules({"patterns": [GRAMMAR["repository"][name]]}
                                  if "patterns" not in GRAMMAR["repository"][name] else GRAMMAR["repository"][name],
                                  seen + (name,))
        elif "match" in p:
            yield p
        else:
            yield from _rules(p, seen)


RULES = list(_rules(GRAMMAR))


def scopes(line: str) -> dict[str, str]:
    """Token text -> scope, scanning as TextMate does: the leftmost match wins, then the first rule."""
    out, pos = {}, 0
    compiled = [(re.compile(r["match"]), r) for r in RULES]
    while pos < len(line):
        best = None
        for rx, r in compiled:
            m = rx.search(line, pos)
            if m and m.end() > m.start() and (best is None or m.start() < best[0].start()):
                best = (m, r)
        if best is None:
            break
        m, r = best
        if "captures" in r:
            for k, cap in r["captures"].items():
                if m.group(int(k)):
                    out.setdefault(m.group(int(k)), cap["name"])
        else:
            out.setdefault(m.group(), r["name"])
        pos = m.end()
    return out


def test_every_pattern_compiles():
    assert RULES
    for r in RULES:
        re.compile(r["match"])


@pytest.mark.parametrize("line,expected", [
    ('use "attention.circuit"', {"use": "keyword.control.import", '"attention.circuit"': "string.quoted"}),
    ("axis vocab = 256, mlp = 4 * d", {"axis": "storage.type.axis", "vocab": "variable.other.axis",
                                       "256": "constant.numeric", "*": "keyword.operator"}),
    ("circuit Block(x: [seq, d]) -> [seq, d]:", {"circuit": "storage.type.circuit", "Block": "entity.name.type",
                                                 "->": "keyword.operator.arrow"}),
    ("    x = layernorm(x, over = d)  # note", {"layernorm": "support.function", "over": "variable.parameter",
                                               "# note": "comment.line"}),
    ("    param pos_embed: [seq, d] = normal(0.02)", {"param": "storage.type.param", "pos_embed": "variable.other.weight",
                                                      "normal": "support.function", "0.02": "constant.numeric"}),
    ("    return linear(x, d -> vocab, bias = false)", {"return": "keyword.control", "false": "constant.language"}),
    ("    y = float(i // 2) % 3", {"float": "storage.type.dtype", "//": "keyword.operator", "%": "keyword.operator"}),
    ("    return Attention[q = seq](x)", {"Attention": "entity.name.type", "q": "variable.parameter"}),
])
def test_lines_get_the_expected_scopes(line, expected):
    got = scopes(line)
    for token, scope in expected.items():
        assert got.get(token, "").startswith(scope), (token, got)


def test_an_assignment_target_is_not_taken_for_a_keyword_argument():
    assert not scopes("    x = relu(y)").get("x", "").startswith("variable.parameter")
