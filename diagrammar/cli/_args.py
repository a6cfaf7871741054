"""Command line: argument types and checks shared by every command.

Each function here is an argparse ``type=`` (it raises
``argparse.ArgumentTypeError``, which argparse prints under the usage line and
turns into exit code 2) or a check run when a command starts (it raises
:class:`~diagrammar.errors.BadArgument` or
:class:`~diagrammar.errors.MissingDependency`, also exit code 2). A command
never checks a number or a name by hand: it names one of these.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable

from ..errors import BadArgument

__all__ = ["whole", "positive", "seed", "real", "fraction", "axis_size", "size_override", "add_size_overrides",
           "circuit_in", "require"]

INT32_MAX = 2 ** 31 - 1  # steps and sizes end up as int32 inside jax
SEED_MAX = 2 ** 32 - 1   # jax.random.key takes a uint32 seed


def whole(least: int = 0, most: int = INT32_MAX) -> Callable[[str], int]:
    """An argparse type: a whole number in ``[least, most]``.

    >>> whole(1)("7")
    7
    >>> whole(1)("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be a whole number of at least 1, got 0
    """
    def parse(text: str) -> int:
        try:
            value = int(text.strip().replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be a whole number of at least {least}, got {value}")
        if value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most:,}, got {value:,}")
        return value
    parse.__name__ = "whole number"  # argparse names the type in "invalid ... value"
    return parse


def positive(most: int = INT32_MAX) -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to ``most``."""
    return whole(1, most)


seed = whole(0, SEED_MAX)


def real(least: float | None = None, most: float | None = None, *, open_low: bool = False,
         open_high: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in a range, each end closed unless ``open_low``/``open_high``.

    >>> real(0, open_low=True)("1e-3")
    0.001
    >>> real(0, open_low=True)("nan")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be a finite number, got 'nan'
    """
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        low_bad = least is not None and (value <= least if open_low else value < least)
        high_bad = most is not None and (value >= most if open_high else value > most)
        if low_bad or high_bad:
            lo = "" if least is None else ("(" if open_low else "[") + f"{least:g}"
            hi = "" if most is None else f"{most:g}" + (")" if open_high else "]")
            if least is not None and most is not None:
                where = f"in {lo}, {hi}"
            elif least is not None:
                where = f"{'greater than' if open_low else 'at least'} {least:g}"
            else:
                where = f"{'less than' if open_high else 'at most'} {most:g}"
            raise argparse.ArgumentTypeError(f"must be {where}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


fraction = real(0.0, 1.0)


def axis_size(text: str) -> tuple[str, int]:
    """An argparse type: ``NAME=SIZE`` with an identifier and a size from 1 to 2**31 - 1.

    >>> axis_size("hidden=256")
    ('hidden', 256)
    """
    name, eq, size = text.partition("=")
    name = name.strip()
    if not eq or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=SIZE (e.g. hidden=256), got {text!r}")
    try:
        value = int(size.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: the size must be a whole number, got {size!r}") from None
    if not 1 <= value <= INT32_MAX:
        raise argparse.ArgumentTypeError(f"{name}: the size must be from 1 to {INT32_MAX:,}, got {value:,}")
    return name, value


axis_size.__name__ = "NAME=SIZE"


def size_override(text: str) -> tuple[str, int | str]:
    """An argparse type: ``--size NAME=N``. The number is left for the checker to judge (a size below 1 is a
    SizeTooLarge, one that is not whole an InvalidArgument), so the command line and Python say the same.

    >>> size_override("d=64"), size_override("d=1.5")
    (('d', 64), ('d', '1.5'))
    """
    name, eq, size = text.partition("=")
    name = name.strip()
    if not eq or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=N (e.g. d=64), got {text!r}")
    try:
        return name, int(size.strip().replace("_", ""))
    except ValueError:
        return name, size.strip()


size_override.__name__ = "NAME=N"


def add_size_overrides(parser: argparse.ArgumentParser) -> None:
    """``--size NAME=N`` (repeatable): check the program as if the declaration of axis NAME said ``= N``."""
    parser.add_argument("--size", action="append", default=[], metavar="NAME=N", type=size_override,
                        dest="size_overrides",
                        help="override the size of a declared axis, as if its declaration said NAME = N; "
                             "derived sizes follow (repeatable)")


def circuit_in(program, name: str, file: str, names: Iterable[str] | None = None) -> str:
    """``name`` if ``program`` defines it; otherwise BadArgument listing the circuits it has.

    Args:
      program: a checked :class:`~diagrammar.Program`.
      name: the ``--circuit`` given.
      file: the file, as the user named it.
      names: the circuits to list (default: all of the program's).
    """
    if name in program:
        return name
    listed = list(names) if names is not None else list(program)
    raise BadArgument(f"no circuit named {name!r} in {file}; circuits: {', '.join(listed) or 'none'}")


def require(command: str, modules: Iterable[str]) -> None:
    """Refuse to start ``command`` when a package it imports is missing, naming the install command
    (:func:`diagrammar.cli._needs.require`, where every command's check lives)."""
    from . import _needs

    _needs.require(command, modules)
