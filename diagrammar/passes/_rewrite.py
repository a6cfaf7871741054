"""Optimisation passes: what every pass shares (sizes, walking nested diagrams, marking boxes)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..ir import Box, Diagram, Size, TensorType


@dataclass(frozen=True)
class Rewrite:
    """One rewrite a pass made: `pass_name` at `where` (a dotted path of boxes), described by `what`."""
    pass_name: str
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.pass_name}: {self.where + ': ' if self.where else ''}{self.what}"


class SizeOf:
    """Evaluates a `Size` with the bound sizes; None where a free size is unbound."""

    def __init__(self, bindings: dict[str, int]):
        self.bindings = bindings

    def __call__(self, size: Size) -> int | None:
        try:
            return size.value if size.is_const else int(size.evaluate(self.bindings))
        except (KeyError, ZeroDivisionError):
            return None

    def numel(self, t: TensorType, names) -> int | None:
        """The product of the sizes of the axes of `t` named in `names`."""
        n = 1
        for a in t.axes:
            if a.name in names:
                s = self(a.size)
                if s is None:
                    return None
                n *= s
        return n


def rewrite_all(d: Diagram, p, size_of: SizeOf, done: list, prefix: str = "") -> Diagram:
    """Apply pass `p` to every diagram nested in `d` (innermost first), then to `d`."""
    boxes = []
    for b in d.boxes:
        if b.body is not None:
            body = rewrite_all(b.body, p, size_of, done, f"{prefix}{b.name}.")
            if body is not b.body:
                b = dataclasses.replace(b, body=body)
        boxes.append(b)
    if any(x is not y for x, y in zip(boxes, d.boxes)):
        d = dataclasses.replace(d, boxes=tuple(boxes))
    new, what = p.run(d, size_of)
    where = prefix[:-1]
    done.extend(Rewrite(p.name, where, w) for w in what)
    return new


def marks(b: Box) -> dict[str, Any]:
    """What passes recorded on a box (its `"pass"` attr): {pass name: what it decided}."""
    return dict(b.attr("pass", ()))


def mark(b: Box, pass_name: str, value: Any, **changes) -> Box:
    """`b` with `value` recorded under `pass_name` in its `"pass"` attr (other fields as `changes`)."""
    recorded = tuple((k, v) for k, v in b.attr("pass", ()) if k != pass_name) + ((pass_name, value),)
    attrs = tuple((k, v) for k, v in b.attrs if k != "pass") + (("pass", recorded),)
    return dataclasses.replace(b, attrs=attrs, **changes)


def mark_each(d: Diagram, pass_name: str, decide: Callable[[Box], str | None]) -> tuple[Diagram, list[str]]:
    """`d` with `(pass_name, True)` recorded on each box not yet marked by that pass for which `decide(box)`
    says what the pass does to it (None: left alone), in box order; and those sayings. The passes that
    only choose how a box lowers (multiply_sum, unroll_repeat, unroll_scan) are this and a `decide`."""
    boxes, what = [], []
    for b in d.boxes:
        said = None if pass_name in marks(b) else decide(b)
        if said is not None:
            b = mark(b, pass_name, True)
            what.append(said)
        boxes.append(b)
    if not what:
        return d, []
    return dataclasses.replace(d, boxes=tuple(boxes)), what
