"""Backend flax: the lowering of every operation, found by its name in LOWERING.

A lowering is `rule(r, d, b, index, prefix, ins, ctx) -> [outputs]`: `r` is
the runner (`r.out_type`, `r.weight`, `r.sizes`, `r.plan`), `d` the diagram,
`b` the box, `index` its position (dropout folds it into its key), `prefix`
the dotted path of the enclosing boxes, `ins` the inputs as named values
(`values._V`) and `ctx` the batch axes and dropout key. A nested diagram's
rule (call, repeat, scan) takes the capture request of its body as an eighth
argument and returns (outputs, captured wires).

The lowerings are grouped by family, one module each; importing this
package fills the table.
"""
from __future__ import annotations

from collections.abc import Callable

from .... import ops

LOWERING: dict[str, Callable] = {}

# Operations that never reach this backend (see tests/test_catalogue.py).
NOT_SUPPORTED: dict[str, str] = {}


lowering = ops.registrar(LOWERING)  # @lowering("name", ...) files the function in LOWERING


from . import (  # noqa: F401  (they fill LOWERING)
    along,
    batchnorm,
    elementwise,
    functions,
    index,
    integers,
    linear,
    nested,
    shape,
    slicing,
    sparse,
    spatial,
    user,
)

ops.bind_table(LOWERING, user.lowering_for)
