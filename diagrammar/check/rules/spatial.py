"""Front end, typing rules: sliding windows over named axes (conv, pool)."""
from __future__ import annotations

from ... import syntax as S
from ...errors import InvalidArgument, ShapeMismatch, SizeConflict, WrongArity
from ...ir import Axis, Init, Size, TensorType, Weight
from ..values import T, _passing
from . import typing_rule


def _spatial(ck, x: T, over_node, what, kernel, stride, padding):
    if isinstance(over_node, S.Mapping):
        src, dst = ck.mapping(over_node, what)
    else:
        src = ck.axis_names(over_node, what)
        dst = None
    if dst is not None and len(dst) != len(src):
        ck.err(WrongArity, f"{what} maps {len(src)} axes to {len(dst)}", over_node.span)
    if len(kernel) == 1 and len(src) > 1:
        kernel = kernel * len(src)
    if len(kernel) != len(src):
        ck.err(WrongArity, f"{what} has {len(src)} spatial axes but a window of {len(kernel)}", over_node.span)
    if len(stride) == 1 and len(src) > 1:
        stride = stride * len(src)
    if len(stride) != len(src):
        ck.err(WrongArity, f"{what}'s stride has {len(stride)} entries for {len(src)} axes", over_node.span)
    outs = []
    for i, (name, span) in enumerate(src):
        a = x.type.axis(name)
        if a is None:
            ck.err(ShapeMismatch, f"{what} slides over {name}, but the input {x.type} has no {name}", span)
        k, s = kernel[i], stride[i]
        if padding == "same":
            want = (a.size + Size.of(s - 1)) // Size.of(s) if s > 1 else a.size
        else:
            want = (a.size - Size.of(k)) // Size.of(s) + Size.of(1)
        if want.is_const and want.value < 1:
            ck.err(SizeConflict, f"{what}'s window {k} is larger than {name} ({a.size})", span)
        if dst is None:
            if want != a.size:
                ck.err(SizeConflict, f"{what} changes the size of {name} from {a.size} to {want}; "
                       "name the new axes", over_node.span,
                       hint=f"over = ({', '.join(n for n, _ in src)}) -> "
                              f"({', '.join(n + '2' for n, _ in src)}), with those axes declared")
            outs.append(a)
        else:
            oname, ospan = dst[i]
            osize = ck.axis_size(oname, ospan) if oname != name else a.size
            if osize != want:
                ck.err(SizeConflict, f"{what} gives {oname} the size {want}, but {oname} is {osize}", ospan,
                       hint=f"declare axis {oname} = {want}")
            outs.append(Axis(oname, osize))
    return [n for n, _ in src], outs, kernel, stride


@typing_rule("conv")
def conv(ck, op, node, args):
    x = ck.float_tensor(ck.expr(args["x"]), args["x"].span, "conv's input")
    kernel = ck.int_tuple(args["kernel"], "conv's kernel")
    stride = (1,) if args["stride"] is None else ck.int_tuple(args["stride"], "conv's stride")
    padding = "same" if args["padding"] is None else ck.word(args["padding"], "padding", ("same", "valid"))
    bias = True if args["bias"] is None else ck.flag(args["bias"], "bias")
    src, dst = ck.mapping(args["map"], "conv's channels")
    if len(src) != 1 or len(dst) != 1:
        ck.err(InvalidArgument, "conv maps one channel axis: cin -> cout", args["map"].span)
    (cin, cins), (cout, couts) = src[0], dst[0]
    cin_ax = x.type.axis(cin)
    if cin_ax is None:
        ck.err(ShapeMismatch, f"conv reads channels {cin}, but the input {x.type} has no {cin}", cins)
    cout_ax = ck.axis(cout, couts, x.type) if cout == cin else ck.axis(cout, couts)
    over, outs, kernel, stride = _spatial(ck, x, args["over"], "conv", kernel, stride, padding)
    if cin in over:
        ck.err(InvalidArgument, "the channel axis cannot also be a spatial axis", cins)
    if cout != cin and x.type.axis(cout) is not None:
        ck.err(ShapeMismatch, f"conv's output channel axis {cout} is already on its input", couts)
    table = dict(zip(over, outs))
    table[cin] = cout_ax
    out = TensorType(tuple(table.get(a.name, a) for a in x.type.axes))
    k_axes = tuple(Axis(f"k_{n}", Size.of(k)) for n, k in zip(over, kernel))
    weights = [Weight("W", TensorType(k_axes + (cin_ax, cout_ax)),
                      Init("lecun", (), tuple(a.name for a in k_axes) + (cin,), ()))]
    if bias:
        weights.append(Weight("b", TensorType((cout_ax,)), Init("zeros")))
    roles = _passing(out)
    roles.update({n: "replaced" for n in over})
    roles[cin] = "consumed"
    roles[cout] = "replaced" if cout == cin else "produced"
    return ck.add_box("conv", [x.wire], [out], node.span, roles=roles, weights=weights,
                      attrs={"over": tuple(over), "out_over": tuple(a.name for a in outs), "kernel": kernel,
                             "stride": stride, "padding": padding, "cin": cin, "cout": cout,
                             "bias": bias})[0]


@typing_rule("pool")
def pool(ck, op, node, args):
    x = ck.float_tensor(ck.expr(args["x"]), args["x"].span, "pool's input")
    window = ck.int_tuple(args["window"], "pool's window")
    stride = window if args["stride"] is None else ck.int_tuple(args["stride"], "pool's stride")
    op = "max" if args["op"] is None else ck.word(args["op"], "pool's op", ("max", "mean"))
    over, outs, window, stride = _spatial(ck, x, args["over"], "pool", window, stride, "valid")
    table = dict(zip(over, outs))
    out = TensorType(tuple(table.get(a.name, a) for a in x.type.axes))
    roles = _passing(out)
    roles.update({n: "replaced" for n in over})
    return ck.add_box("pool", [x.wire], [out], node.span, roles=roles,
                      attrs={"over": tuple(over), "out_over": tuple(a.name for a in outs), "window": window,
                             "stride": stride, "op": op})[0]
