"""Backend flax: the interpreter that runs a diagram box by box, each by its lowering in LOWERING."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax

from ...ir import Box, Diagram, TensorType
from .lowering import LOWERING
from .values import _V, _Ctx, _full

if TYPE_CHECKING:
    from .module import _Plan, _Request


def scope_name(box: str) -> str:
    """The `jax.named_scope` a box's operations run in: its name, with `@` (which XLA cuts an op_name at,
    keeping what comes before) spelled `#`, a character no box name holds.

    >>> scope_name("x@2")
    'x#2'
    """
    return box.replace("@", "#")


class _Runner:
    """Runs diagrams on named values. Pure: weights come in as a dict of arrays by dotted name."""

    def __init__(self, plan: _Plan, weights: dict[str, Any]):
        self.plan = plan
        self.sizes = plan.sizes
        self.weights = weights
        self.updates: dict[str, Any] = {}  # state written by the forward pass (batchnorm), by dotted name

    def run(self, d: Diagram, prefix: str, inputs: list[_V], ctx: _Ctx, req: _Request | None):
        env: dict[str, _V] = {}
        caps: dict[str, tuple] = {}  # full name -> (array, names)
        port_wires = [w for p in d.inputs for w in p.wires]
        if len(port_wires) != len(inputs):
            raise AssertionError(f"{d.name}: {len(inputs)} values for {len(port_wires)} input wires")
        for w, v in zip(port_wires, inputs):
            env[w] = v
            if req is not None and w in req.wires:
                caps[prefix + w] = self._capture(d, w, v, ctx)
        for index, b in enumerate(d.boxes):
            ins = [env[w] for w in b.inputs]
            rule = LOWERING.get(b.op)
            if rule is None:
                raise NotImplementedError(f"the flax backend has no operation {b.op!r} (box {b.name})")
            # the box's name on the traced ops: nested, the scopes spell its path (`attention/q`) in each
            # HLO op's metadata op_name, which the profiler overlay attributes time by (analysis/overlays.py)
            with jax.named_scope(scope_name(b.name)):
                if b.body is not None:  # a nested diagram's rule also takes (and returns) what to capture in it
                    sub = req.children.get(b.name) if req is not None else None
                    outs, inner = (rule(self, d, b, index, prefix, ins, ctx, sub) if self.plan.layout is None
                                   else self.plan.layout.run_box(self, rule, d, b, index, prefix, ins, ctx, sub))
                    caps.update(inner)
                else:
                    outs = (rule(self, d, b, index, prefix, ins, ctx) if self.plan.layout is None
                            else self.plan.layout.run_box(self, rule, d, b, index, prefix, ins, ctx, None))
            for w, v in zip(b.outputs, outs):
                env[w] = v
                if req is not None and w in req.wires:
                    caps[prefix + w] = self._capture(d, w, v, ctx)
        return [env[w] for w in d.output.wires], caps

    def _capture(self, d: Diagram, wire: str, v: _V, ctx: _Ctx):
        t = d.wire(wire).type
        names = ctx.order(ctx.batch + t.names)
        sizes = dict(ctx.sizes)
        sizes.update(zip(t.names, self.sizes.shape(t)))
        return _full(v, names, sizes), names

    # -- for the lowerings
    def out_type(self, d: Diagram, b: Box, i: int = 0) -> TensorType:
        """The type of the box's `i`-th output."""
        return d.wire(b.outputs[i]).type

    def weight(self, prefix: str, b: Box, name: str):
        """The array of one of the box's weights (`name` as in ir.Weight.name)."""
        return self.weights[f"{prefix}{b.name}" + (f".{name}" if name else "")]
