"""A `scan` of a few steps runs as straight-line code instead of a loop.

The pointer network scans an LSTM over at most ten inputs and decodes ten
steps: each step is a handful of 128-wide products and element-wise work, so
XLA:CPU's loop bookkeeping (a `while` whose body it compiles once and cannot
fuse across, every step's intermediates stacked for the backward pass and
sliced back) costs as much as the arithmetic. Unrolled, the steps form one
program XLA schedules and fuses as a whole; the hand-written pointer network's
step measured 1.16x faster in CPU time with `lax.scan(..., unroll=True)`,
and the compiled one 1.4-1.5x faster with either of its two scans unrolled.
Each step still folds its index into its dropout key and reads the same
weights, so values and keys do not change.

The steps unrolled in one diagram are limited to `MAX_STEPS` in all, taken
scan by scan in program order: with both of the pointer network's scans
unrolled (20 steps), XLA fused the element-wise recurrences of the backward
pass (the LSTM cell states of decoder and encoder, one chain through every
step) into each of their consumers and recomputed them there, and the step
took 1.6x as long as with no scan unrolled. Records `("unroll_scan", True)`
on each scan unrolled.
"""
from __future__ import annotations

from ..ir import Box, Diagram
from ._rewrite import SizeOf, mark_each

NAME = "unroll_scan"
MAX_STEPS = 16  # beyond this, compile time grows faster than the step time shrinks


def run(d: Diagram, size_of: SizeOf) -> tuple[Diagram, list[str]]:
    budget = MAX_STEPS  # steps still to unroll in this diagram, scan by scan in box order

    def decide(b: Box) -> str | None:
        nonlocal budget
        length = size_of(b.attr("length")) if b.op == "scan" else None
        if length is None or length > budget:
            return None
        budget -= length
        return f"{b.name}: {length} steps, unrolled"

    return mark_each(d, NAME, decide)
