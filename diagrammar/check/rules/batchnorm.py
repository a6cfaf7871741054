"""Front end, typing rules: batch normalisation with running statistics (batchnorm).

Its box owns two parameters over the feature axes, `scale` and `bias`, and two
arrays of state, `running_mean` and `running_var` (`Weight.state`): updated by
the forward pass in training, never trained, not counted as parameters.
"""
from __future__ import annotations

import math

from ...errors import InvalidArgument
from ...ir import Init, TensorType, Weight
from ..values import _passing
from . import typing_rule
from .along import _over


@typing_rule("batchnorm")
def batchnorm(ck, op, node, args):
    x = ck.float_tensor(ck.expr(args["x"]), args["x"].span, "batchnorm's input")
    over = [] if args["over"] is None else _over(ck, x, args["over"], "batchnorm")
    momentum, eps = 0.9, 1e-5
    if args["momentum"] is not None:
        momentum = ck.const_number(args["momentum"], "batchnorm's momentum")
        if not 0 <= momentum <= 1:
            ck.err(InvalidArgument, f"batchnorm's momentum must be between 0 and 1; got {momentum:g}",
                   args["momentum"].span,
                   hint="momentum is the weight kept on the old running value (Keras and Flax): PyTorch's "
                        "momentum=0.1 is momentum = 0.9 here")
    if args["eps"] is not None:
        eps = ck.const_number(args["eps"], "batchnorm's eps")
        if not eps > 0 or math.isinf(eps):
            ck.err(InvalidArgument, f"batchnorm's eps must be a positive number; got {eps:g}", args["eps"].span,
                   hint="eps keeps the division finite: eps = 1e-5 is PyTorch's default")
    features = TensorType(tuple(a for a in x.type.axes if a.name not in over))
    weights = [Weight("scale", features, Init("ones")), Weight("bias", features, Init("zeros")),
               Weight("running_mean", features, Init("zeros"), state=True),
               Weight("running_var", features, Init("ones"), state=True)]
    roles = _passing(x.type)
    roles.update({n: "consumed" for n in over})
    return ck.add_box("batchnorm", [x.wire], [x.type], node.span, roles=roles, weights=weights,
                      attrs={"over": tuple(over), "momentum": float(momentum), "eps": float(eps)})[0]
