"""Finds the data folders grammar/ and circuits/ in an installed wheel or a checkout.

A wheel carries them inside the package (hatch force-include); an editable
install or a plain checkout does not, so we fall back to the repository root.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def data_dir(name: str) -> Path:
    """The folder `grammar` or `circuits`, wherever this install keeps it."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"diagrammar's {name}/ folder is missing from this install")


def read_text(folder: str, filename: str) -> str:
    return (data_dir(folder) / filename).read_text(encoding="utf-8")


def circuits_dir() -> Path:
    """The bundled zoo, which is also the standard library for `use`."""
    return data_dir("circuits")
