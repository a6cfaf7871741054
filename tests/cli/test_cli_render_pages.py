"""`diagrammar render` of a figure taller than a printed page: one file per page, or one page on request."""
from __future__ import annotations

from diagrammar.cli import main
from diagrammar.cli.render import page_path

ARGS = ["render", "circuits/workspace.circuit", "--circuit", "WorkspaceDigits", "--depth", "1"]


def test_page_path_numbers_the_pages_before_the_suffix():
    assert page_path("out/fig.svg", 2) == "out/fig-2.svg"
    assert page_path("a.b.png", 3) == "a.b-3.png"


def test_a_tall_figure_is_written_one_file_per_page(tmp_path, capsys):
    out = tmp_path / "wd.svg"
    assert main(ARGS + ["-o", str(out)]) == 0
    second = tmp_path / "wd-2.svg"
    assert out.exists() and second.exists() and not (tmp_path / "wd-3.svg").exists()
    assert "WorkspaceDigits (continued)" in second.read_text()
    assert "continues on" in capsys.readouterr().err


def test_one_page_keeps_one_file(tmp_path):
    out = tmp_path / "wd.svg"
    assert main(ARGS + ["--one-page", "-o", str(out)]) == 0
    assert out.exists() and not (tmp_path / "wd-2.svg").exists()
    assert "(continued)" not in out.read_text()


def test_tikz_puts_every_page_in_one_document(tmp_path):
    out = tmp_path / "wd.tex"
    assert main(ARGS + ["-o", str(out)]) == 0
    text = out.read_text()
    assert text.count(r"\begin{tikzpicture}") == 2 and text.count(r"\begin{document}") == 1
    assert not (tmp_path / "wd-2.tex").exists()


def test_stdout_gets_one_document(capsys):
    assert main(ARGS + ["-o", "-"]) == 0
    assert capsys.readouterr().out.count("<svg ") == 1
