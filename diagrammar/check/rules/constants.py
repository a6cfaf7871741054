"""Front end, typing rules: constant tensors (`full([axes], value)`).

A value made from no input is computed once per call, not per batch
element: nothing here carries a batch axis.
"""
from __future__ import annotations

from ...errors import InvalidArgument
from ...ir import TensorType, const_label
from ..consts import check_float32, folded
from ..values import C, _has_free
from . import typing_rule


@typing_rule("full")
def full(ck, op, node, args):
    names = ck.axis_names(args["axes"], "full's axes")
    ck.no_dupes(names, "full's axes")
    axes = tuple(ck.axis(name, span) for name, span in names)
    v = ck.expr(args["value"])
    if not isinstance(v, C):
        ck.tensor(v, args["value"].span)  # a failed operand stops here, already reported
        ck.err(InvalidArgument, "full's value must be a constant known when checking, not a wire",
               args["value"].span, hint="a number (0, -inf, 1e-9), a size or arithmetic of them; "
               "for a wire x, x * full([axes], 1) broadcasts it")
    if not _has_free(v.tree):
        try:
            check_float32(folded(v.tree, args["value"].span), v.tree, args["value"].span)
        except InvalidArgument as e:
            ck.err(InvalidArgument, f"full's value {e.message}", args["value"].span, hint=e.hint)
    out = TensorType(axes)
    return ck.add_box("full", [], [out], node.span, roles={a.name: "produced" for a in axes},
                      attrs={"axes": tuple(a.name for a in axes), "value": v.tree, "label": const_label(v.tree)})[0]
