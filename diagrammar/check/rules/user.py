"""Front end, typing rules: operations registered from Python (`ops.register_operation`).

The registered `typing` function sees only types: the operands' checked
`ir.TensorType`s and the keyword values. This rule reads the call, calls it,
and checks what it returns before the box joins the diagram.
"""
from __future__ import annotations

from ... import syntax as S
from ...errors import InvalidArgument, ShapeMismatch, SizeConflict, UnknownName
from ...ir import TensorType
from ...ops import REQUIRED, Operation
from ..hints import _did_you_mean


def rule_for(op: Operation):
    """The typing rule of one registered operation (ops.bind_table puts it in TYPING)."""
    def registered(ck, name, node, args):
        return _check_call(ck, op, node, args)
    return registered


def _check_call(ck, op: Operation, node, args):
    given = [args[p] for p in op.params]
    ts = ck.operands([ck.expr(a) for a in given], [a.span for a in given], f"{op.name}'s operand")
    kw = {}
    for k, default in op.keywords:
        v = args[k]
        if v is None:
            kw[k] = None if default is REQUIRED else default
        elif isinstance(v, S.Name):  # a bare name is a word (an axis name, a mode)
            kw[k] = v.id
        else:
            kw[k] = ck.const_number(v, f"{op.name}'s {k}")
    try:
        out = op.typing(*[t.type for t in ts], **kw)
    except (ValueError, TypeError) as e:
        ck.err(ShapeMismatch, f"{op.name}: {e}", node.span)
    if not isinstance(out, TensorType):
        ck.err(InvalidArgument, f"{op.name}'s typing rule gave {out!r}, not an ir.TensorType", node.span)
    in_names: dict[str, None] = {}
    for t in ts:
        in_names.update(dict.fromkeys(t.type.names))
    for a in out.axes:
        known = next((t.type.axis(a.name) for t in ts if t.type.axis(a.name) is not None), None)
        size = known.size if known is not None else ck.b.axes.get(a.name)
        if size is None:
            ck.err(UnknownName, f"{op.name} gives an axis {a.name} that no input has and no one declared", node.span,
                   hint=_did_you_mean(a.name, list(ck.b.axes)) or f"declare it: axis {a.name} = ...")
        if size != a.size:
            ck.err(SizeConflict, f"{op.name} gives axis {a.name} the size {a.size}, but {a.name} is {size}",
                   node.span)
    roles = {n: "passing" if n in in_names else "produced" for n in out.names}
    roles.update({n: "consumed" for n in in_names if out.axis(n) is None})
    return ck.add_box(op.name, [t.wire for t in ts], [out], node.span, roles=roles, attrs=kw)[0]
