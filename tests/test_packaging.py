"""Packaging: the sdist holds everything its own tests read, and the wheel holds the grammar and the zoo.

Builds both with `python -m build` (offline with ``--no-isolation`` when hatchling is installed), so these
tests are marked slow; they skip, saying why, without the `build` package.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What the tests read, besides tests/ itself: the sdist must carry each of these folders whole.
READ_BY_TESTS = ("diagrammar", "grammar", "circuits", "docs", "gallery", "editors", "benchmarks", "tests")
# Not shipped: byte code, test scratch, and the playground's built site (18 MB of downloads, rebuilt on demand).
NOT_SHIPPED = ("__pycache__", ".pyc", ".hypothesis", ".pytest_cache", ".ruff_cache", "docs/playground/site/",
               "tests/golden/_")

pytestmark = pytest.mark.slow


def _shipped(rel: str) -> bool:
    return not any(part in rel for part in NOT_SHIPPED)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """A folder holding the sdist and the wheel built from this checkout."""
    if importlib.util.find_spec("build") is None:
        pytest.skip("building the sdist needs the build package: python3 -m pip install build")
    if not (ROOT / "pyproject.toml").exists():
        pytest.skip("not a checkout (no pyproject.toml)")
    out = tmp_path_factory.mktemp("dist")
    isolation = ["--no-isolation"] if importlib.util.find_spec("hatchling") else []
    proc = subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", *isolation, "-o", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def _sdist_names(dist: Path) -> tuple[str, set[str]]:
    (sdist,) = dist.glob("diagrammar-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    top = names[0].split("/")[0]
    return top, {n.split("/", 1)[1] for n in names}


def _repository_files() -> set[str]:
    """The files of READ_BY_TESTS: as git tracks them in a clone, else as they lie on disk."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", *READ_BY_TESTS], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.split("\0")
        return {rel for rel in listed if rel and (ROOT / rel).is_file()}
    except (OSError, subprocess.CalledProcessError):  # no git, or not a clone (an unpacked sdist)
        return {p.relative_to(ROOT).as_posix() for folder in READ_BY_TESTS
                for p in (ROOT / folder).rglob("*") if p.is_file()}


def test_sdist_holds_every_file_the_tests_read(dist):
    _, names = _sdist_names(dist)
    wanted = {rel for rel in _repository_files() if _shipped(rel)}
    missing = sorted(wanted - names)
    assert not missing, f"{len(missing)} files missing from the sdist, e.g. {missing[:10]}"
    for rel in ("README.md", "pyproject.toml", "grammar/circuit.lark", "docs/language.md", "gallery/README.md",
                "circuits/modadd_mlp.circuit", "tests/test_docs.py", "tests/conftest.py"):
        assert rel in names, rel
    assert not [n for n in names if not _shipped(n)], "byte code, scratch or the built playground was packed"


def test_unpacked_sdist_passes_its_docs_tests(dist, tmp_path):
    """The docs tests read docs/ and circuits/: from the unpacked sdist, with its own copy of the package."""
    top, _ = _sdist_names(dist)
    (sdist,) = dist.glob("diagrammar-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    tree = tmp_path / top
    env = {**os.environ, "PYTHONPATH": str(tree)}
    where = subprocess.run([sys.executable, "-c", "import diagrammar; print(diagrammar.__file__)"], cwd=tree,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(tree), where  # the tests below test the unpacked copy, not this checkout
    proc = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-x", "-p", "no:cacheprovider",
                           "tests/test_docs.py"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(r"\b[1-9]\d* passed", proc.stdout) and "skipped" not in proc.stdout, proc.stdout[-500:]


def test_wheel_holds_the_grammar_and_the_zoo_inside_the_package(dist):
    (wheel,) = dist.glob("diagrammar-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "diagrammar/grammar/circuit.lark" in names
    zoo = {p.name for p in (ROOT / "circuits").glob("*.circuit")}
    assert zoo and {f"diagrammar/circuits/{n}" for n in zoo} <= names
    # only diagrammar is importable: none of the data or test folders lands top level in site-packages
    tops = {n.split("/")[0] for n in names}
    assert tops == {"diagrammar", next(t for t in tops if t.endswith(".dist-info"))}, tops
