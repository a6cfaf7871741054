"""The language reference's examples check as written (so the docs cannot drift)."""
import re
from pathlib import Path

import pytest

import diagrammar
from diagrammar import errors

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "language.md"


def blocks(kind: str) -> list[str]:
    text = REFERENCE.read_text(encoding="utf-8")
    return re.findall(rf"```{kind}\n(.*?)```", text, flags=re.S)


def test_reference_has_examples():
    assert len(blocks("circuit")) >= 10
    assert len(blocks("circuit-error")) >= 4


@pytest.mark.parametrize("source", blocks("circuit"), ids=lambda s: s.splitlines()[0][:40])
def test_reference_example_checks(source):
    program = diagrammar.parse(source, name="docs/language.md")
    assert len(list(program)) >= 1
    for name in program:
        assert program[name].output.type is not None


@pytest.mark.parametrize("source", blocks("circuit-error"), ids=lambda s: s.splitlines()[0][2:])
def test_reference_error_example_fails_as_documented(source):
    expected = source.splitlines()[0].lstrip("# ").strip()
    with pytest.raises(getattr(errors, expected)):
        diagrammar.parse(source, name="docs/language.md")


def test_contract_examples_are_in_the_reference_verbatim():
    """The two complete programs of the v0 contract appear unchanged in the reference and the zoo."""
    text = REFERENCE.read_text(encoding="utf-8")
    for zoo in ("modadd_mlp.circuit", "grok_transformer.circuit"):
        source = (ROOT / "circuits" / zoo).read_text(encoding="utf-8")
        assert source in text
