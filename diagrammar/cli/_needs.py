"""Command line: the packages a command needs beyond lark, and the one message that says what to install.

``pip install diagrammar`` brings every core dependency (jax, flax, optax, numpy, matplotlib, ...), which
the README's commands rely on. An install without them (``--no-deps`` with lark alone, or the browser
playground) still checks, draws and counts: ``check``, ``render``, ``stats``, ``fmt``, ``gallery`` and
``serve`` import nothing else. A command that needs more calls :func:`require` before it starts, so the
user reads one line naming the missing packages and the pip command (the extra that brings them, or
the requirement with its version from diagrammar's own metadata), never a ModuleNotFoundError.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterable

from ..errors import MissingDependency

__all__ = ["EXTRAS", "missing", "install_command", "require", "load", "describe"]

# import name -> the diagrammar extra (pyproject's optional-dependencies) that brings it
EXTRAS = {"pygls": "lsp", "lsprotocol": "lsp", "cairosvg": "png", "sphinx": "docs"}
# import name -> PyPI name, where they differ
_PIP_NAMES = {"sklearn": "scikit-learn", "yaml": "PyYAML", "PIL": "pillow"}


def missing(modules: Iterable[str]) -> list[str]:
    """The modules of ``modules`` that cannot be imported, in order (a module set to None in
    ``sys.modules``, as tests do to hide one, counts as missing)."""
    gone = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # ValueError: sys.modules[name] is None or has no spec
            found = False
        if not found:
            gone.append(name)
    return gone


def _core_requirements() -> dict[str, str]:
    """diagrammar's own requirements without an extra, by normalised name: {"jax": "jax>=0.4.30", ...};
    empty when there is no metadata (running from a bare checkout)."""
    try:
        from importlib.metadata import requires

        listed = requires("diagrammar") or []
    except Exception:
        return {}
    found = {}
    for req in listed:
        if ";" in req:
            continue  # an extra's requirement
        name = re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0]
        found[_normalise(name)] = req.replace(" ", "")
    return found


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def install_command(modules: Iterable[str]) -> tuple[str, bool]:
    """The pip command that installs ``modules`` (import names), and whether any is a core dependency.

    >>> install_command(["pygls", "lsprotocol"])
    ("python3 -m pip install 'diagrammar[lsp]'", False)
    """
    modules = list(modules)
    extras = sorted({EXTRAS[m] for m in modules if m in EXTRAS})
    core = _core_requirements()
    words = [f"'diagrammar[{','.join(extras)}]'"] if extras else []
    is_core = False
    for m in modules:
        if m in EXTRAS:
            continue
        pip_name = _PIP_NAMES.get(m, m)
        req = core.get(_normalise(pip_name))
        is_core = is_core or req is not None
        words.append(f"'{req or pip_name}'")
    return "python3 -m pip install " + " ".join(words), is_core


def describe(who: str, modules: list[str], *, broken: str | None = None) -> str:
    """One line: ``who`` needs ``modules`` (all missing, or failing to import with the error ``broken``),
    and how to install them."""
    command, is_core = install_command(modules)
    one = len(modules) == 1
    state = f"does not import here ({broken})" if broken else f"{'is' if one else 'are'} not installed"
    text = f"{who} needs {', '.join(modules)}, which {state}. Install {'it' if one else 'them'} with: {command}"
    if is_core:
        text += " (or reinstall diagrammar with its dependencies: python3 -m pip install diagrammar)"
    elif any(m in EXTRAS for m in modules):  # a checkout or a fork may not resolve diagrammar[...]: the plain names
        text += f" (or python3 -m pip install {' '.join(_PIP_NAMES.get(m, m) for m in modules)})"
    return text


def require(command: str, modules: Iterable[str], *, what: str | None = None) -> None:
    """Refuse to start when a package ``command`` imports is missing, naming the install command.

    Args:
      command: the verb, as in ``diagrammar train``.
      modules: the import names it needs.
      what: what needs them, when it is one option of the command (``"PNG output"``).

    Raises:
      MissingDependency: (exit code 2) when any is missing.
    """
    gone = missing(modules)
    if gone:
        raise MissingDependency(describe(what or f"diagrammar {command}", gone))


def load(command: str, module: str, *, what: str | None = None):
    """Import ``module`` for ``command``: missing, or failing to import (a broken install), it is the same
    one-line :class:`MissingDependency` as from :func:`require`."""
    require(command, (module,), what=what)
    try:
        __import__(module)  # as an import statement does (so an import hook sees it too)
        return sys.modules[module]
    except ImportError as e:
        raise MissingDependency(describe(what or f"diagrammar {command}", [module], broken=str(e))) from None
