"""Front end, typing rules: integer indices in or out (onehot, embed, arange, gather, take) and size."""
from __future__ import annotations

from ...errors import InvalidArgument, ShapeMismatch
from ...ir import Init, TensorType, Weight
from ..values import C, T, _passing
from . import typing_rule


def _int_tensor(ck, v, span, what):
    t = ck.tensor(v, span, what)
    if t.type.dtype != "int":
        ck.err(ShapeMismatch, f"{what} must be int indices, got {t.type}", span,
               hint="declare the input as int[...], or use argmax/arange to make indices")
    return t


@typing_rule("onehot")
def onehot(ck, op, node, args):
    i = _int_tensor(ck, ck.expr(args["i"]), args["i"].span, "onehot's indices")
    (name, span), = ck.axis_names(args["a"], "onehot's axis")
    if i.type.axis(name) is not None:
        ck.err(ShapeMismatch, f"onehot makes a new axis {name}, but {i.type} already has it", span)
    a = ck.axis(name, span)
    out = TensorType(i.type.axes + (a,))
    roles = _passing(out)
    roles[name] = "produced"
    return ck.add_box("onehot", [i.wire], [out], node.span, roles=roles, attrs={"axis": name})[0]


@typing_rule("embed")
def embed(ck, op, node, args):
    i = _int_tensor(ck, ck.expr(args["i"]), args["i"].span, "embed's indices")
    src, dst = ck.mapping(args["map"], "embed")
    if len(src) != 1:
        ck.err(InvalidArgument, "embed looks up along one vocabulary axis: embed(i, vocab -> d)",
               args["map"].span)
    vocab = ck.axis(*src[0])
    out_axes = []
    for name, span in dst:
        if i.type.axis(name) is not None or name == vocab.name:
            ck.err(ShapeMismatch, f"embed's output axis {name} is already on the indices {i.type}", span)
        out_axes.append(ck.axis(name, span))
    ck.no_dupes(dst, "embed's output axes")
    if i.type.axis(vocab.name) is not None:
        ck.err(ShapeMismatch, f"the indices {i.type} already carry the vocabulary axis {vocab.name}",
               src[0][1])
    out = TensorType(i.type.axes + tuple(out_axes))
    roles = _passing(out)
    roles.update({a.name: "produced" for a in out_axes})
    w = Weight("W", TensorType((vocab,) + tuple(out_axes)),
               Init("embed", (), (), tuple(a.name for a in out_axes)))
    return ck.add_box("embed", [i.wire], [out], node.span, roles=roles, weights=[w],
                      attrs={"vocab": vocab.name, "out_axes": tuple(a.name for a in out_axes)})[0]


@typing_rule("arange")
def arange(ck, op, node, args):
    (name, span), = ck.axis_names(args["a"], "arange's axis")
    out = TensorType((ck.axis(name, span),), "int")
    return ck.add_box("arange", [], [out], node.span, roles={name: "produced"}, attrs={"axis": name})[0]


@typing_rule("gather")
def gather(ck, op, node, args):
    x = ck.tensor(ck.expr(args["x"]), args["x"].span, "gather's input")
    i = _int_tensor(ck, ck.expr(args["i"]), args["i"].span, "gather's indices")
    (along, span), = ck.axis_names(args["along"], "along")
    if x.type.axis(along) is None:
        ck.err(ShapeMismatch, f"gather picks along {along}, but the input {x.type} has no {along}", span)
    if i.type.axis(along) is not None:
        ck.err(ShapeMismatch, f"the indices {i.type} must not carry the axis {along} they pick from", span)
    rest = TensorType(tuple(a for a in x.type.axes if a.name != along))
    ck.broadcast([T(x.wire, rest), i], node.span, "gather")
    axes = []
    for a in x.type.axes:
        if a.name == along:
            axes.extend(b for b in i.type.axes if x.type.axis(b.name) is None)
        else:
            axes.append(a)
    out = TensorType(tuple(axes), x.type.dtype)
    roles = _passing(out)
    roles[along] = "consumed"
    return ck.add_box("gather", [x.wire, i.wire], [out], node.span, roles=roles, attrs={"along": along})[0]


@typing_rule("take")
def take(ck, op, node, args):
    x = ck.tensor(ck.expr(args["x"]), args["x"].span, "take's input")
    (name, span), = ck.axis_names(args["a"], "take's axis")
    a = x.type.axis(name)
    if a is None:
        ck.err(ShapeMismatch, f"take picks along {name}, but the input {x.type} has no {name}", span)
    k = ck.const_number(args["k"], "take's index")
    if k != int(k):
        ck.err(InvalidArgument, "take's index must be a whole number", args["k"].span)
    k = int(k)
    if a.size.is_const and not -a.size.value <= k < a.size.value:
        ck.err(InvalidArgument, f"take's index {k} is outside {name} (size {a.size.value})", args["k"].span)
    out = TensorType(tuple(b for b in x.type.axes if b.name != name), x.type.dtype)
    roles = _passing(out)
    roles[name] = "consumed"
    return ck.add_box("take", [x.wire], [out], node.span, roles=roles, attrs={"axis": name, "index": k})[0]


@typing_rule("size")
def size(ck, op, node, args):
    (name, span), = ck.axis_names(args["a"], "size")
    return C(("axis", name, ck.axis_size(name, span)))
