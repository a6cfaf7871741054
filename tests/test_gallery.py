"""The gallery: every zoo circuit drawn into gallery/, checked fresh, and `diagrammar render`."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from diagrammar.cli import main
from diagrammar.cli.gallery import build

ROOT = Path(__file__).resolve().parent.parent


def test_committed_gallery_is_fresh_and_its_index_shows_every_figure():
    """One build of the whole zoo (it takes seconds): the committed gallery equals it, as
    `diagrammar gallery --check` says, and its index shows every figure and every file."""
    files = build(ROOT / "circuits", ROOT / "gallery" / "results")
    stale = sorted(n for n, text in files.items() if (ROOT / "gallery" / n).read_text(encoding="utf-8") != text)
    assert not stale, f"the gallery is out of date: run `diagrammar gallery` ({stale[:5]})"
    extra = sorted({f.name for f in (ROOT / "gallery").glob("*.svg")} - set(files))
    assert not extra, f"figures no longer generated: {extra[:5]}"
    index = files["README.md"]
    figures = [n for n in files if n.endswith(".svg")]
    assert figures and all(f"]({n})" in index for n in figures)
    for path in sorted((ROOT / "circuits").glob("*.circuit")):
        assert f"## {path.name}" in index


def _small_zoo(tmp_path):
    """A copy of three zoo files (mlp, attention and the transformer that uses it): the gallery's rules
    on a zoo that draws in a second, not the whole zoo's minute."""
    circuits = tmp_path / "circuits"
    circuits.mkdir()
    for name in ("mlp.circuit", "attention.circuit", "transformer.circuit"):
        shutil.copy(ROOT / "circuits" / name, circuits / name)
    return circuits


def test_check_fails_after_touching_a_circuit(tmp_path, capsys):
    circuits = _small_zoo(tmp_path)
    out = tmp_path / "gallery"
    assert main(["gallery", "--circuits", str(circuits), "--out", str(out)]) == 0
    assert main(["gallery", "--circuits", str(circuits), "--out", str(out), "--check"]) == 0
    mlp = circuits / "mlp.circuit"
    mlp.write_text(mlp.read_text().replace("axis d = 64", "axis d = 96"), encoding="utf-8")
    capsys.readouterr()
    assert main(["gallery", "--circuits", str(circuits), "--out", str(out), "--check"]) == 1
    assert "mlp.ResidualMLP.svg" in capsys.readouterr().err
    # a figure left over from a circuit that is gone also makes it stale
    assert main(["gallery", "--circuits", str(circuits), "--out", str(out)]) == 0
    (out / "old.Gone.svg").write_text("<svg/>")
    assert main(["gallery", "--circuits", str(circuits), "--out", str(out), "--check"]) == 1
    assert main(["gallery", "--circuits", str(circuits), "--out", str(out)]) == 0
    assert not (out / "old.Gone.svg").exists()


@pytest.mark.parametrize("suffix,magic", [(".svg", b"<?xml"), (".png", b"\x89PNG"), (".tex", b"\\documentclass")])
def test_render_writes_each_format(tmp_path, suffix, magic):
    out = tmp_path / f"fig{suffix}"
    assert main(["render", str(ROOT / "circuits/grok_transformer.circuit"), "--circuit", "GrokTransformer",
                 "-o", str(out), "--depth", "1"]) == 0
    assert out.read_bytes().startswith(magic)


def test_render_defaults_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["render", str(ROOT / "circuits/mlp.circuit")]) == 0
    assert (tmp_path / "ResidualMLP.svg").is_file()  # the last circuit of the file
    assert main(["render", str(ROOT / "circuits/mlp.circuit"), "--circuit", "Nope"]) == 2
    assert "no circuit named 'Nope'" in capsys.readouterr().err
    assert main(["render", str(ROOT / "circuits/mlp.circuit"), "-o", "fig.pdf"]) == 2
    assert main(["render", str(ROOT / "circuits/mlp.circuit"), "-o", "-"]) == 0
    assert capsys.readouterr().out.startswith("<?xml")


def test_render_png_without_cairosvg(tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_cairo(name, *args, **kwargs):
        if name == "cairosvg":
            raise ImportError("no cairosvg here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cairo)
    assert main(["render", str(ROOT / "circuits/mlp.circuit"), "-o", str(tmp_path / "x.png")]) == 2
    assert "pip install cairosvg" in capsys.readouterr().err


def test_render_cost_and_dot(tmp_path, capsys):
    pytest.importorskip("diagrammar.backends.cost")
    out = tmp_path / "cost.svg"
    assert main(["render", str(ROOT / "circuits/mlp.circuit"), "--cost", "--batch", "8", "-o", str(out)]) == 0
    assert 'class="annotation"' in out.read_text()
    pytest.importorskip("diagrammar.backends.dot")
    dot = tmp_path / "fig.dot"
    assert main(["render", str(ROOT / "circuits/mlp.circuit"), "-o", str(dot)]) == 0
    assert "digraph" in dot.read_text()


def test_committed_result_plots_are_shown_with_their_commands():
    from diagrammar.cli.gallery import RESULTS

    index = (ROOT / "gallery" / "README.md").read_text(encoding="utf-8")
    for r in RESULTS:
        assert (ROOT / "gallery" / "results" / r.file).read_bytes().startswith(b"\x89PNG"), r.file
        assert f"![{r.title}](results/{r.file})" in index and f"`{r.command}`" in index


def test_gallery_never_rewrites_or_deletes_result_plots(tmp_path, capsys):
    out = tmp_path / "gallery"
    plot, other = out / "results" / "routing.png", out / "results" / "scratch.png"
    plot.parent.mkdir(parents=True)
    plot.write_bytes(b"\x89PNG not really")
    other.write_bytes(b"\x89PNG mine")
    small = ["--circuits", str(_small_zoo(tmp_path))]  # the rule is the same for any zoo; a small one is quick
    assert main(["gallery", *small, "--out", str(out)]) == 0
    assert plot.read_bytes() == b"\x89PNG not really" and other.read_bytes() == b"\x89PNG mine"
    index = (out / "README.md").read_text(encoding="utf-8")
    assert "](results/routing.png)" in index and "pointer_hull.png" not in index  # only the plots present
    assert main(["gallery", *small, "--out", str(out), "--check"]) == 0
    plot.unlink()  # a deleted plot leaves the index stale, and the gallery does not bring it back
    capsys.readouterr()
    assert main(["gallery", *small, "--out", str(out), "--check"]) == 1
    assert "README.md" in capsys.readouterr().err
    assert main(["gallery", *small, "--out", str(out)]) == 0
    assert not plot.exists() and other.exists()
    assert "results/" not in (out / "README.md").read_text(encoding="utf-8")
