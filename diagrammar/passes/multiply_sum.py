"""Contractions over tiny matrices lower to multiply-and-sum instead of a matrix product.

Attention over three positions computes, for every example and head, a
3x32 by 32x3 product for its scores and a 3x3 by 3x32 one for its output. A
matrix-product kernel called on thousands of such tiny matrices spends its
time on each call's setup and on transposing its operands into place; the
same numbers as a broadcast product summed over the contracted axes are one
loop that XLA fuses with its neighbours. The lowering lays the product out in
the order its operands already have, so neither is transposed.

A `dot`, or an `einsum` of two operands, is rewritten when, per entry of its
batched axes, its matrices are tiny: the rows of one operand, the columns of
the other or the contracted length is at most `SMALLEST`, or all three
multiplied are at most `VOLUME`. It records `("multiply_sum", True)`.
"""
from __future__ import annotations

from ..ir import Box, Diagram
from ._rewrite import SizeOf, mark_each

NAME = "multiply_sum"
SMALLEST = 4  # a matrix side this short makes a product kernel mostly overhead
VOLUME = 1024  # rows x columns x contracted length under which a product kernel is mostly overhead


def matrix_shape(d: Diagram, b: Box, size_of: SizeOf) -> tuple[int, int, int] | None:
    """(rows, columns, contracted length) of one batched product of a two-operand contraction."""
    if len(b.inputs) != 2:
        return None
    x, y = (d.wire(w).type for w in b.inputs)
    if b.op == "dot":
        over = set(b.attr("over"))
    else:
        result = set(d.wire(b.outputs[0]).type.names)
        over = (set(x.names) | set(y.names)) - result
    rows = size_of.numel(x, set(x.names) - set(y.names) - over)
    cols = size_of.numel(y, set(y.names) - set(x.names) - over)
    inner = size_of.numel(x, over & set(x.names) & set(y.names))
    # an axis summed in one operand only is a reduction first; leave such contractions to einsum
    if over - (set(x.names) & set(y.names)) or None in (rows, cols, inner):
        return None
    return rows, cols, inner


def run(d: Diagram, size_of: SizeOf) -> tuple[Diagram, list[str]]:
    def decide(b: Box) -> str | None:
        shape = matrix_shape(d, b, size_of) if b.op in ("dot", "einsum") else None
        if shape is None or not (min(shape) <= SMALLEST or shape[0] * shape[1] * shape[2] <= VOLUME):
            return None
        return f"{b.name} ({'x'.join(map(str, shape[:2]))} over {shape[2]}): multiply and sum"

    return mark_each(d, NAME, decide)
