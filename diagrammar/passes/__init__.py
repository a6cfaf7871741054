"""Optimisation passes: rewrites of the typed diagram that a backend runs before lowering it.

Each pass reads the IR and returns an equal-valued IR that a backend can run
faster: the diagram knows things a hand-written model hides from XLA (which
linear maps read the same wire, which contractions are tiny). A pass keeps
every weight where the user sees it, on the same box with the same name,
shape and initialiser, and keeps every box at its position (dropout keys and
checkpoints depend on both), so a module compiled with any set of passes
loads the others' checkpoints. It records what it did in the boxes' attrs
under the key `"pass"`, which the lowering reads; nothing else changes.

Passes see only the IR and the sizes bound at compile time; they never import
jax. `compile(..., passes={"fuse_siblings": False})` turns one off;
`diagrammar stats` lists the rewrites that would fire.

>>> sorted(PASSES)
['fuse_siblings', 'multiply_sum', 'take_early', 'unroll_repeat', 'unroll_scan']
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import InvalidArgument
from ..ir import Diagram
from . import fuse_siblings, multiply_sum, take_early, unroll_repeat, unroll_scan
from ._rewrite import Rewrite, SizeOf, rewrite_all

__all__ = ["OFF_BY_DEFAULT", "PASSES", "Pass", "Rewrite", "optimise", "resolve", "switches"]


@dataclass(frozen=True)
class Pass:
    """A named rewrite: `run(diagram, size_of)` returns (the new diagram, its rewrites in that diagram)."""
    name: str
    doc: str
    run: Callable[[Diagram, SizeOf], tuple[Diagram, list[str]]]


# in the order they run: take_early first (it leaves alone boxes another pass has marked), then fusing,
# so a fused projection is never split again
PASSES: dict[str, Pass] = {p.name: p for p in (
    Pass("take_early", take_early.__doc__.splitlines()[0], take_early.run),
    Pass("fuse_siblings", fuse_siblings.__doc__.splitlines()[0], fuse_siblings.run),
    Pass("multiply_sum", multiply_sum.__doc__.splitlines()[0], multiply_sum.run),
    Pass("unroll_repeat", unroll_repeat.__doc__.splitlines()[0], unroll_repeat.run),
    Pass("unroll_scan", unroll_scan.__doc__.splitlines()[0], unroll_scan.run),
)}


# Passes a plain `compile` leaves off. `fuse_siblings` made GrokTransformer's full-batch step 1.37x slower
# on XLA:CPU (48.7 against 66.8 ms, benchmarks/train_speed.py --only transformer --profile, load 0.9): the
# gradient of the fused product's column slices is padded and summed back instead of concatenated. It
# stays one switch away (`passes={"fuse_siblings": True}`, `diagrammar train --pass fuse_siblings`).
# `unroll_scan` made the pointer network's step 1.2-1.4x faster only while other jobs loaded the machine
# (3.5% on a quiet one: 25.2 against 26.1 ms), and its straight-line steps compile longer for every
# sequence length a run meets (the suite's pointer and workspace training runs took 16 s more CPU).
OFF_BY_DEFAULT = frozenset({"fuse_siblings", "unroll_scan"})


def resolve(passes: Mapping[str, bool] | bool | None) -> tuple[str, ...]:
    """The names of the passes to run: by default all but `OFF_BY_DEFAULT`, all for True, none for False;
    a dict switches passes on or off from the default.

    Raises:
        InvalidArgument: a name that is not a pass, or a switch that is not a bool.
    """
    if passes is None:
        return tuple(n for n in PASSES if n not in OFF_BY_DEFAULT)
    if passes is True:
        return tuple(PASSES)
    if passes is False:
        return ()
    if not isinstance(passes, Mapping):
        raise InvalidArgument(f"passes must be a dict of pass name to True/False, or a bool; got {passes!r}")
    for name, on in passes.items():
        if name not in PASSES:
            raise InvalidArgument(f"no optimisation pass {name!r}; the passes are: {', '.join(PASSES)}")
        if not isinstance(on, bool):
            raise InvalidArgument(f"passes[{name!r}] must be True or False, got {on!r}")
    return tuple(n for n in PASSES if passes.get(n, n not in OFF_BY_DEFAULT))


def switches(on: list[str], off: list[str]) -> dict[str, bool] | bool | None:
    """The `passes` argument for command-line `--pass NAME` (on) and `--no-pass NAME` (off; 'all' for none)."""
    if "all" in off:
        return False
    if not on and not off:
        return None
    return {**{name: True for name in on}, **{name: False for name in off}}


def optimise(diagram: Diagram, bindings: Mapping[str, int] | None = None,
             passes: Mapping[str, bool] | bool | None = None) -> tuple[Diagram, tuple[Rewrite, ...]]:
    """Run the passes over `diagram` and every diagram nested in it.

    Args:
        diagram: a checked diagram.
        bindings: the sizes of its free axes, where known (a pass that needs a
            size it cannot evaluate leaves the boxes alone).
        passes: see `resolve`.

    Returns:
        (the optimised diagram, every rewrite made: which pass, where, what).
    """
    size_of = SizeOf(dict(bindings or {}))
    done: list[Rewrite] = []
    for name in resolve(passes):
        diagram = rewrite_all(diagram, PASSES[name], size_of, done)
    return diagram, tuple(done)
