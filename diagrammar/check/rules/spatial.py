"""Front end, typing rules: sliding windows and padding over named axes (conv, conv_transpose, pool, pad).

Every spatial axis of size n gets a padding pair (lo, hi) and an output size
(docs/language.md, "Padding, dilation, groups and transposed convolution"):

    conv, pool      n_out = (n + lo + hi - d*(k - 1) - 1) // s + 1
    conv `same`     n_out = ceil(n / s)   (the pairs follow at compile time, XLA's SAME)
    conv_transpose  n_out = (n - 1)*s + k - lo - hi + output_padding
    pad             n_out = n + lo + hi

The box keeps v0's attributes for v0's forms (`padding` is "same" or
"valid"); any other padding is stored as one (lo, hi) pair per axis, and
`dilation`, `groups` and `causal` appear only when they are not their
defaults, so a v0 program gives the same IR as before.
"""
from __future__ import annotations

import math

from ... import syntax as S
from ...errors import InvalidArgument, ShapeMismatch, SizeConflict, WrongArity
from ...ir import Axis, Init, Size, TensorType, Weight
from ..values import T, _passing
from . import typing_rule

_WORDS = ("same", "valid", "causal")


# ---------------------------------------------------------------- arguments


def _over(ck, over_node, what):
    """The spatial axes (name, span) and, with `->`, the new axes; None without."""
    if isinstance(over_node, S.Mapping):
        src, dst = ck.mapping(over_node, what)
        if len(dst) != len(src):
            ck.err(WrongArity, f"{what} maps {len(src)} axes to {len(dst)}", over_node.span)
        return src, dst
    return ck.axis_names(over_node, what), None


def _whole(ck, node, what, least) -> int:
    x = ck.const_number(node, what)
    if not math.isfinite(x) or x != int(x) or x < least:
        got = f"{x:g}" if math.isfinite(x) else str(x)
        ck.err(InvalidArgument, f"{what} must be a whole number >= {least}; got {got}", node.span)
    return int(x)


def _per_axis(ck, node, n_axes, what, least, default) -> tuple[int, ...]:
    """A whole number for every axis, or one per axis of `over` (a tuple)."""
    if node is None:
        return (default,) * n_axes
    items = node.items if isinstance(node, S.TupleExpr) else (node,)
    vals = tuple(_whole(ck, it, what, least) for it in items)
    if len(vals) == 1:
        return vals * n_axes
    if len(vals) != n_axes:
        ck.err(WrongArity, f"{what} has {len(vals)} entries for {n_axes} axes", node.span,
               hint=f"one number for every axis, or one per axis of over ({n_axes})")
    return vals


def _widen(ck, values: tuple[int, ...], n_axes: int, message: str, span) -> tuple[int, ...]:
    """`values` for every spatial axis: one number stands for all of them; otherwise one per axis, or
    WrongArity with `message` (the typed numbers' counterpart of `_per_axis`)."""
    if len(values) == 1 and n_axes > 1:
        return values * n_axes
    if len(values) != n_axes:
        ck.err(WrongArity, message, span)
    return values


def _pair(ck, node, what) -> tuple[int, int]:
    if not isinstance(node, S.TupleExpr) or len(node.items) != 2:
        ck.err(InvalidArgument, f"a padding pair is (lo, hi); {what} got {len(node.items)} numbers", node.span)
    lo, hi = (_whole(ck, it, f"{what}'s padding", 0) for it in node.items)
    return lo, hi


def _padding(ck, node, what, n_axes, words):
    """A word of `words`, or one (lo, hi) pair per spatial axis."""
    if isinstance(node, S.Name) and (node.id in _WORDS or node.id not in ck.b.axes and ck.b.lookup(node.id) is None):
        if node.id not in words:
            takes = ", ".join(words + ("p", "(lo, hi)", "((lo, hi), ...)") if words else
                              ("p", "(lo, hi)", "((lo, hi), ...)"))
            ck.err(InvalidArgument, f"{what} takes no padding {node.id}", node.span,
                   hint=f"{what}'s padding is one of: {takes}")
        return node.id
    if isinstance(node, S.TupleExpr):
        nested = [isinstance(it, S.TupleExpr) for it in node.items]
        if all(nested):
            if len(node.items) != n_axes:
                ck.err(WrongArity, f"{what}'s padding has {len(node.items)} pairs for {n_axes} "
                       f"spatial ax{'es' if n_axes != 1 else 'is'}", node.span,
                       hint="one (lo, hi) pair per axis of over, in its order")
            return tuple(_pair(ck, it, what) for it in node.items)
        if any(nested):
            ck.err(InvalidArgument, f"{what}'s padding mixes numbers and pairs", node.span,
                   hint="p, (lo, hi), or one (lo, hi) pair per axis: ((1, 1), (0, 2))")
        lo, hi = _pair(ck, node, what)
        if n_axes > 1 and lo != hi:
            ck.err(InvalidArgument, f"the pair ({lo}, {hi}) over {n_axes} axes is ambiguous", node.span,
                   hint="PyTorch reads padding=(0, 1) as 0 on the first axis and 1 on the second; write one "
                        f"pair per axis: (({lo}, {hi}), ({lo}, {hi})) or (({lo}, {lo}), ({hi}, {hi}))")
        return ((lo, hi),) * n_axes
    p = _whole(ck, node, f"{what}'s padding", 0)
    return ((p, p),) * n_axes


def _out_sizes(ck, x: T, src, dst, over_node, what, want_fn, formula_fn=None, window=None):
    """The output axes: `want_fn(i, n)` gives axis i's new size; checks it against the declared one.

    An output size below 1 is a SizeConflict whose hint shows `formula_fn(i, n)`;
    with `window` (a sliding window without padding) it says that the window
    is larger than the axis.
    """
    outs = []
    for i, (name, span) in enumerate(src):
        a = x.type.axis(name)
        if a is None:
            ck.err(ShapeMismatch, f"{what} slides over {name}, but the input {x.type} has no {name}", span)
        want = want_fn(i, a.size)
        accept = {want}
        if isinstance(want, tuple):  # the size as written in messages, then other forms of the same number
            accept = set(want)
            want = want[0]
        if want.is_const and want.value < 1:
            msg = (f"{what}'s window {window[i]} is larger than {name} ({a.size})" if window is not None
                   else f"{what} leaves {name} with {want.value} positions")
            ck.err(SizeConflict, msg, span, hint=f"the size of {name} after {what} is {formula_fn(i, a.size)} = "
                                                 f"{want.value}; it must be at least 1")
        if dst is None:
            if a.size not in accept:
                ck.err(SizeConflict, f"{what} changes the size of {name} from {a.size} to {want}; "
                       "name the new axes", over_node.span,
                       hint=f"over = {_names([n for n, _ in src])} -> {_names([n + '2' for n, _ in src])}, "
                       "with those axes declared")
            outs.append(a)
        else:
            oname, ospan = dst[i]
            osize = ck.axis_size(oname, ospan) if oname != name else a.size
            if osize not in accept:
                ck.err(SizeConflict, f"{what} gives {oname} the size {want}, but {oname} is {osize}", ospan,
                       hint=f"declare axis {oname} = {want}")
            outs.append(Axis(oname, osize))
    return outs


def _names(names) -> str:
    return names[0] if len(names) == 1 else "(" + ", ".join(names) + ")"


def _sliding_size(kernel, stride, dilation, padding):
    """want_fn and formula_fn for conv and pool: the size rule of §2 for each padding form."""
    def want(i, n: Size) -> Size:
        k, s, d = kernel[i], stride[i], dilation[i]
        if padding == "same":
            return (n + Size.of(s - 1)) // Size.of(s) if s > 1 else n
        lo, hi = (0, 0) if padding == "valid" else padding[i]
        shift = lo + hi - d * (k - 1) - 1
        v0 = (n + Size.of(shift)) // Size.of(s) + Size.of(1)  # v0's `valid` wrote it so
        if s == 1:
            return v0
        # the same number, floor((n + shift) / s) + 1 = floor((n + shift + s) / s), in the form that a
        # free size often simplifies to: (t - 2) // 2 + 1 is t // 2
        folded = (n + Size.of(shift + s)) // Size.of(s)
        return (v0, folded) if padding == "valid" and d == 1 else (folded, v0)

    def formula(i, n: Size) -> str:
        k, s, d = kernel[i], stride[i], dilation[i]
        lo, hi = (0, 0) if padding in ("same", "valid") else padding[i]
        window = f"{d}*({k} - 1)" if d > 1 else f"({k} - 1)"
        return f"({n} + {lo} + {hi} - {window} - 1) // {s} + 1"
    return want, formula


def _channels(ck, x: T, map_node, what):
    src, dst = ck.mapping(map_node, f"{what}'s channels")
    if len(src) != 1 or len(dst) != 1:
        ck.err(InvalidArgument, f"{what} maps one channel axis: cin -> cout", map_node.span)
    (cin, cins), (cout, couts) = src[0], dst[0]
    cin_ax = x.type.axis(cin)
    if cin_ax is None:
        ck.err(ShapeMismatch, f"{what} reads channels {cin}, but the input {x.type} has no {cin}", cins)
    cout_ax = ck.axis(cout, couts, x.type) if cout == cin else ck.axis(cout, couts)
    return cin, cins, cin_ax, cout, couts, cout_ax


def _channel_box(ck, op, node, x, over, outs, channels, w_in, kernel, bias, attrs):
    """The box of conv and conv_transpose: the result type, weights `[k..., w_in, cout]` and `b: [cout]`."""
    cin, cins, _, cout, couts, cout_ax = channels
    if cin in over:
        ck.err(InvalidArgument, "the channel axis cannot also be a spatial axis", cins)
    if cout != cin and x.type.axis(cout) is not None:
        ck.err(ShapeMismatch, f"{op}'s output channel axis {cout} is already on its input", couts)
    table = dict(zip(over, outs))
    table[cin] = cout_ax
    out = TensorType(tuple(table.get(a.name, a) for a in x.type.axes))
    k_axes = tuple(Axis(f"k_{n}", Size.of(k)) for n, k in zip(over, kernel))
    weights = [Weight("W", TensorType(k_axes + (w_in, cout_ax)),
                      Init("lecun", (), tuple(a.name for a in k_axes) + (w_in.name,), ()))]
    if bias:
        weights.append(Weight("b", TensorType((cout_ax,)), Init("zeros")))
    roles = _passing(out)
    roles.update({n: "replaced" for n in over})
    roles[cin] = "consumed"
    roles[cout] = "replaced" if cout == cin else "produced"
    return ck.add_box(op, [x.wire], [out], node.span, roles=roles, weights=weights, attrs=attrs)[0]


# ---------------------------------------------------------------- the operations


@typing_rule("conv")
def conv(ck, op, node, args):
    x = ck.float_tensor(ck.expr(args["x"]), args["x"].span, "conv's input")
    kernel = ck.int_tuple(args["kernel"], "conv's kernel")
    stride = (1,) if args["stride"] is None else ck.int_tuple(args["stride"], "conv's stride")
    bias = True if args["bias"] is None else ck.flag(args["bias"], "bias")
    channels = _channels(ck, x, args["map"], "conv")
    cin, cins, cin_ax, cout, couts, cout_ax = channels
    src, dst = _over(ck, args["over"], "conv")
    n = len(src)
    kernel = _widen(ck, kernel, n, f"conv has {n} spatial axes but a window of {len(kernel)}", args["over"].span)
    stride = _widen(ck, stride, n, f"conv's stride has {len(stride)} entries for {n} axes", args["over"].span)
    dilation = _per_axis(ck, args["dilation"], n, "conv's dilation", 1, 1)
    groups = 1 if args["groups"] is None else _whole(ck, args["groups"], "conv's groups", 1)
    padding = "same" if args["padding"] is None else _padding(ck, args["padding"], "conv", n, _WORDS)
    causal = padding == "causal"
    if causal:
        if n != 1:
            ck.err(InvalidArgument, f"causal padding pads one axis, but conv slides over {n}", args["padding"].span,
                   hint="pad the time axis causally and the others with pairs: "
                        "padding = ((lo, 0), (1, 1)), lo = dilation * (kernel - 1)")
        padding = ((dilation[0] * (kernel[0] - 1), 0),)
    want, formula = _sliding_size(kernel, stride, dilation, padding)
    outs = _out_sizes(ck, x, src, dst, args["over"], "conv", want, formula,
                      kernel if padding == "valid" and set(dilation) == {1} else None)
    w_in = cin_ax
    if groups > 1:
        for name, ax, span in ((cin, cin_ax, cins), (cout, cout_ax, couts)):
            if ax.size.is_const and ax.size.value % groups:
                ck.err(SizeConflict, f"conv's groups = {groups} does not divide {name} ({ax.size})", span,
                       hint=f"with groups = {groups}, the sizes of {cin} and {cout} must be multiples of {groups}")
        w_in = Axis(f"{cin}_per_group", cin_ax.size // Size.of(groups))
    over = [nm for nm, _ in src]
    attrs = {"over": tuple(over), "out_over": tuple(a.name for a in outs), "kernel": kernel,
             "stride": stride, "padding": padding, "cin": cin, "cout": cout, "bias": bias}
    if set(dilation) != {1}:
        attrs["dilation"] = dilation
    if groups != 1:
        attrs["groups"] = groups
    if causal:
        attrs["causal"] = True
    return _channel_box(ck, "conv", node, x, over, outs, channels, w_in, kernel, bias, attrs)


@typing_rule("conv_transpose")
def conv_transpose(ck, op, node, args):
    what = "conv_transpose"
    x = ck.float_tensor(ck.expr(args["x"]), args["x"].span, f"{what}'s input")
    kernel = ck.int_tuple(args["kernel"], f"{what}'s kernel")
    bias = True if args["bias"] is None else ck.flag(args["bias"], "bias")
    channels = _channels(ck, x, args["map"], what)
    cin, cin_ax = channels[0], channels[2]
    src, dst = _over(ck, args["over"], what)
    n = len(src)
    kernel = _widen(ck, kernel, n, f"{what} has {n} spatial axes but a kernel of {len(kernel)}", args["over"].span)
    stride = _per_axis(ck, args["stride"], n, f"{what}'s stride", 1, 1)
    padding = ((0, 0),) * n if args["padding"] is None else _padding(ck, args["padding"], what, n, ())
    out_pad = _per_axis(ck, args["output_padding"], n, f"{what}'s output_padding", 0, 0)
    for i, (p, s) in enumerate(zip(out_pad, stride)):
        if p >= s:
            ck.err(InvalidArgument, f"{what}'s output_padding {p} on {src[i][0]} is not smaller than its stride {s}",
                   args["output_padding"].span, hint="output_padding picks one of the stride's possible sizes: "
                                                     "0 <= output_padding < stride")

    def want(i, size: Size) -> Size:
        (lo, hi), k, s = padding[i], kernel[i], stride[i]
        return (size - Size.of(1)) * Size.of(s) + Size.of(k - lo - hi + out_pad[i])

    def formula(i, size: Size) -> str:
        (lo, hi), k, s = padding[i], kernel[i], stride[i]
        return f"({size} - 1) * {s} + {k} - {lo} - {hi} + {out_pad[i]}"
    outs = _out_sizes(ck, x, src, dst, args["over"], what, want, formula)
    over = [nm for nm, _ in src]
    attrs = {"over": tuple(over), "out_over": tuple(a.name for a in outs), "kernel": kernel, "stride": stride,
             "padding": padding, "output_padding": out_pad, "cin": cin, "cout": channels[3], "bias": bias}
    return _channel_box(ck, what, node, x, over, outs, channels, cin_ax, kernel, bias, attrs)


@typing_rule("pool")
def pool(ck, op, node, args):
    x = ck.float_tensor(ck.expr(args["x"]), args["x"].span, "pool's input")
    window = ck.int_tuple(args["window"], "pool's window")
    stride = window if args["stride"] is None else ck.int_tuple(args["stride"], "pool's stride")
    op = "max" if args["op"] is None else ck.word(args["op"], "pool's op", ("max", "mean"))
    src, dst = _over(ck, args["over"], "pool")
    n = len(src)
    window = _widen(ck, window, n, f"pool has {n} spatial axes but a window of {len(window)}", args["over"].span)
    stride = _widen(ck, stride, n, f"pool's stride has {len(stride)} entries for {n} axes", args["over"].span)
    padding = "valid" if args["padding"] is None else _padding(ck, args["padding"], "pool", n, ("valid",))
    if padding != "valid":
        for (name, span), (lo, hi), w in zip(src, padding, window):
            if max(lo, hi) >= w:
                ck.err(InvalidArgument, f"pool pads {name} by {max(lo, hi)}, not less than its window {w}",
                       args["padding"].span, hint="a window that lies wholly in the padding would have nothing "
                                                  f"to pool: pad {name} by at most {w - 1}")
        if not any(lo or hi for lo, hi in padding):
            padding = "valid"
    want, formula = _sliding_size(window, stride, (1,) * n, padding)
    outs = _out_sizes(ck, x, src, dst, args["over"], "pool", want, formula, window if padding == "valid" else None)
    over = [nm for nm, _ in src]
    table = dict(zip(over, outs))
    out = TensorType(tuple(table.get(a.name, a) for a in x.type.axes))
    roles = _passing(out)
    roles.update({nm: "replaced" for nm in over})
    attrs = {"over": tuple(over), "out_over": tuple(a.name for a in outs), "window": window, "stride": stride,
             "op": op}
    if padding != "valid":
        attrs["padding"] = padding
    return ck.add_box("pool", [x.wire], [out], node.span, roles=roles, attrs=attrs)[0]


@typing_rule("pad")
def pad(ck, op, node, args):
    x = ck.tensor(ck.expr(args["x"]), args["x"].span, "pad's input")
    src, dst = _over(ck, args["over"], "pad")
    n = len(src)
    padding = _padding(ck, args["padding"], "pad", n, ())
    value = 0.0 if args["value"] is None else ck.const_number(args["value"], "pad's value", finite=False)
    dtype = x.type.dtype
    if dtype != "float" and (not math.isfinite(value) or value != int(value)
                             or dtype == "bool" and value not in (0, 1)):
        ck.err(InvalidArgument, f"pad of {x.type} fills with {value:g}, which is not {'an int' if dtype == 'int' else 'a bool'}",
               args["value"].span, hint="an int bundle pads with a whole number, a bool bundle with 0 or 1")
    outs = _out_sizes(ck, x, src, dst, args["over"], "pad",
                      lambda i, size: size + Size.of(sum(padding[i])),
                      lambda i, size: f"{size} + {padding[i][0]} + {padding[i][1]}")
    over = [nm for nm, _ in src]
    table = dict(zip(over, outs))
    out = TensorType(tuple(table.get(a.name, a) for a in x.type.axes), dtype)
    roles = _passing(out)
    roles.update({nm: "replaced" for nm in over})
    return ck.add_box("pad", [x.wire], [out], node.span, roles=roles,
                      attrs={"over": tuple(over), "out_over": tuple(a.name for a in outs), "padding": padding,
                             "value": float(value)})[0]
