"""Front end, typing rules: axes moved, renamed, joined and split without arithmetic."""
from __future__ import annotations

from ... import syntax as S
from ...errors import InvalidArgument, ShapeMismatch, SizeConflict, WrongArity
from ...ir import Axis, Size, TensorType
from ..hints import _did_you_mean, mismatch_hint, type_table
from ..values import _passing
from . import typing_rule


@typing_rule("rename")
def rename(ck, op, node, args):
    x = ck.tensor(ck.expr(args["x"]), args["x"].span, "rename's input")
    src, dst = ck.mapping(args["map"], "rename")
    if len(src) != len(dst):
        ck.err(WrongArity, f"rename maps {len(src)} axes to {len(dst)}", args["map"].span)
    table = {}
    for (s, ss), (d, ds) in zip(src, dst):
        a = x.type.axis(s)
        if a is None:
            ck.err(ShapeMismatch, f"rename's input {x.type} has no axis {s}", ss,
                   hint=_did_you_mean(s, x.type.names))
        size = ck.axis_size(d, ds)
        if size != a.size:
            ck.err(SizeConflict, f"rename {s} -> {d} changes the size from {a.size} to {size}", node.span,
                   hint=f"a different size needs a map: linear(x, {s} -> {d})")
        table[s] = Axis(d, size)
    renamed = {v.name for v in table.values()}
    for a in x.type.axes:
        if a.name in renamed and a.name not in table:
            ck.err(ShapeMismatch, f"rename's result would have the axis {a.name} twice", node.span)
    out = TensorType(tuple(table.get(a.name, a) for a in x.type.axes), x.type.dtype)
    roles = _passing(out)
    for s, a in table.items():
        roles[s] = "consumed"
        roles[a.name] = "produced"
    return ck.add_box("rename", [x.wire], [out], node.span, roles=roles,
                      attrs={"src": tuple(table), "dst": tuple(a.name for a in table.values())})[0]


@typing_rule("merge")
def merge(ck, op, node, args):
    x = ck.tensor(ck.expr(args["x"]), args["x"].span, "merge's input")
    src, dst = ck.mapping(args["map"], "merge")
    if len(dst) != 1:
        ck.err(InvalidArgument, "merge makes one axis: merge(x, (a, b) -> c)", args["map"].span)
    (c, cs), = dst
    total = Size.of(1)
    for s, ss in src:
        a = x.type.axis(s)
        if a is None:
            ck.err(ShapeMismatch, f"merge's input {x.type} has no axis {s}", ss)
        total = total * a.size
    ck.no_dupes(src, "merge")
    size = ck.axis_size(c, cs)
    if size != total and (size - total).is_const:  # with a free size: decided when it is bound (bounds.py)
        ck.err(SizeConflict, f"merge makes {c} of size {size} from {total} elements", node.span,
               hint=f"declare axis {c} = " + " * ".join(s for s, _ in src))
    src_names = [s for s, _ in src]
    if c not in src_names and x.type.axis(c) is not None:
        ck.err(ShapeMismatch, f"merge's input already has an axis {c}", cs)
    axes = []
    for a in x.type.axes:
        if a.name == src_names[0]:
            axes.append(Axis(c, size))
        elif a.name not in src_names:
            axes.append(a)
    out = TensorType(tuple(axes), x.type.dtype)
    roles = _passing(out)
    roles.update({s: "consumed" for s in src_names})
    roles[c] = "produced"
    return ck.add_box("merge", [x.wire], [out], node.span, roles=roles,
                      attrs={"src": tuple(src_names), "dst": c})[0]


@typing_rule("split")
def split(ck, op, node, args):
    x = ck.tensor(ck.expr(args["x"]), args["x"].span, "split's input")
    src, dst = ck.mapping(args["map"], "split")
    if len(src) != 1:
        ck.err(InvalidArgument, "split takes one axis apart: split(x, c -> (a, b))", args["map"].span)
    (c, cs), = src
    a = x.type.axis(c)
    if a is None:
        ck.err(ShapeMismatch, f"split's input {x.type} has no axis {c}", cs)
    ck.no_dupes(dst, "split")
    new = [ck.axis(n, s) for n, s in dst]
    total = Size.of(1)
    for ax in new:
        total = total * ax.size
        if ax.name != c and x.type.axis(ax.name) is not None:
            ck.err(ShapeMismatch, f"split's input already has an axis {ax.name}", node.span)
    if total != a.size and (total - a.size).is_const:  # with a free size: decided when it is bound
        ck.err(SizeConflict, f"split takes {c} of size {a.size} apart into {total} elements", node.span)
    axes = []
    for ax in x.type.axes:
        axes.extend(new if ax.name == c else [ax])
    out = TensorType(tuple(axes), x.type.dtype)
    roles = _passing(out)
    roles[c] = "consumed"
    roles.update({ax.name: "produced" for ax in new})
    return ck.add_box("split", [x.wire], [out], node.span, roles=roles,
                      attrs={"src": c, "dst": tuple(ax.name for ax in new)})[0]


def _operands_along(ck, node, what, usage):
    """The operands of stack or concat and its `along` keyword, the only keyword either takes."""
    operands, kws = [], {}
    for a in node.args:
        if isinstance(a, S.Keyword):
            kws[a.name] = a
        elif isinstance(a, (S.Mapping, S.ResultSpec)):
            ck.err(InvalidArgument, f"{what} takes operands and keyword arguments", a.span)
        else:
            operands.append((ck.tensor(ck.expr(a), a.span, f"{what}'s operand"), a.span))
    extra = set(kws) - {"along"}
    if extra:
        ck.err(InvalidArgument, f"{what} has no argument {min(extra)!r}", kws[min(extra)].span)
    if "along" not in kws:
        ck.err(WrongArity, f"{what} needs along = {usage}", node.span)
    return operands, kws["along"]


@typing_rule("stack")
def stack(ck, op, node, args):
    operands, along = _operands_along(ck, node, "stack", "new_axis")
    if not operands:
        ck.err(WrongArity, "stack needs at least one operand", node.span)
    (name, span), = ck.axis_names(along.value, "along")
    first = operands[0][0]
    for t, sp in operands[1:]:
        if not t.type.same(first.type):
            ck.err(ShapeMismatch, f"stack's operands must have one type; {first.type} and {t.type} differ", sp,
                   table=type_table(first.type, t.type, "first", "this"),
                   hint=mismatch_hint(first.type, t.type))
    if first.type.axis(name) is not None:
        ck.err(ShapeMismatch, f"stack makes a new axis {name}, but the operands already have it", span)
    size = ck.axis_size(name, span)
    if size != Size.of(len(operands)):
        ck.err(SizeConflict, f"stack along {name} needs {size} operands, got {len(operands)}", node.span,
               hint=f"declare axis {name} = {len(operands)}")
    out = TensorType((Axis(name, size),) + first.type.axes, first.type.dtype)
    roles = _passing(out)
    roles[name] = "produced"
    return ck.add_box("stack", [t.wire for t, _ in operands], [out], node.span, roles=roles,
                      attrs={"along": name})[0]


@typing_rule("concat")
def concat(ck, op, node, args):
    operands, along = _operands_along(ck, node, "concat", "a -> c")
    if len(operands) < 1:
        ck.err(WrongArity, "concat needs operands", node.span)
    src, dst = ck.mapping(along.value, "concat's along")
    if len(dst) != 1:
        ck.err(InvalidArgument, "concat makes one axis: along = a -> c", along.span)
    if len(src) == 1:
        src = src * len(operands)
    if len(src) != len(operands):
        ck.err(WrongArity, f"concat has {len(operands)} operands but {len(src)} axes to join", along.span)
    (c, cs), = dst
    total = Size.of(0)
    rest = None
    for (t, sp), (a, aspan) in zip(operands, src):
        ax = t.type.axis(a)
        if ax is None:
            ck.err(ShapeMismatch, f"concat joins along {a}, but the operand {t.type} has no {a}", sp)
        total = total + ax.size
        r = TensorType(tuple(b for b in t.type.axes if b.name != a), t.type.dtype)
        if rest is None:
            rest = r
        elif not r.same(rest):
            ck.err(ShapeMismatch, f"concat's operands differ apart from the joined axis: {rest} and {r}", sp,
                   table=type_table(rest, r, "first", "this"))
    size = ck.axis_size(c, cs)
    if size != total:
        ck.err(SizeConflict, f"concat makes {c} of size {size} from {total} positions", node.span,
               hint=f"declare axis {c} = " + " + ".join(a for a, _ in src))
    first = operands[0][0].type
    axes = [Axis(c, size) if b.name == src[0][0] else b for b in first.axes]
    out = TensorType(tuple(axes), first.dtype)
    roles = _passing(out)
    roles.update({a: "consumed" for a, _ in src})
    roles[c] = "produced"
    return ck.add_box("concat", [t.wire for t, _ in operands], [out], node.span, roles=roles,
                      attrs={"along": tuple(a for a, _ in src), "dst": c})[0]
