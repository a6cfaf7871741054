"""Backend cost: what a mapping of named axes onto a mesh costs each device (bytes held, bytes communicated).

Pure Python over the IR and a validated `check.sharding.ShardMap` (never imports jax). The rule, per
device and per training step (the README quotes it):

- **Held**: a weight's bytes divided by the devices its split axes span; an activation's bytes likewise,
  with the leading batch split over the batch's mesh axes first (an axis mapped onto a mesh axis the batch
  uses stays whole on that wire). Activations are summed over every wire of one forward pass.
- **Gradient sync**: every trained weight's gradient is summed over the batch's mesh axes: an all-reduce of
  its per-device bytes.
- **Fully sharded (FSDP)**: a weight split over a mesh axis the batch is also split over is all-gathered
  over those axes once per step, to its size with them whole (the gathered copy serves the backward pass
  too). Its gradient is reduce-scattered back, at that gathered size, when the box that reads it is one of
  `GATHERED_IN_BOX` (`linear`, `embed`, the norms) on a batched input, the batch splits evenly and the
  weight's split axes that the batch uses hold nothing else: the flax backend runs such a box per shard of
  the batch (`shard_map`), so the gather's transpose is a `psum_scatter`. Any other reader (a `param` box
  whose output is added to batched values) leaves the gradient to XLA, which sums it whole (an all-reduce
  of the gathered size) and keeps each device's shard: its CPU pipeline never forms a reduce-scatter itself.
- **Partial sums** (tensor parallelism): a `linear`, `dot` or `einsum` that sums over an axis split over
  mesh axes M, and whose result has no axis on M, leaves partial sums: an all-reduce over M of its result
  in the forward pass. A `linear` whose weight adds an output axis on M that its input lacks leaves the
  input's gradient partial: an all-reduce over M of the input's bytes in the backward pass, when that input
  needs a gradient (it depends on a weight).
- **Loss**: the mean loss over a split batch is one all-reduce of a scalar.
- `repeat N` and `scan` over T multiply the activation collectives of their body by N or T; a circuit call
  is the sum of its body. Nothing is counted over a mesh axis of size 1.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ...check.sharding import ShardMap, weights_of
from ...ir import Box, Diagram, Size, TensorType

_BYTES = {"float": 4, "int": 4, "bool": 1}
_CONTRACTIONS = frozenset({"linear", "dot", "einsum"})
# boxes whose weights split over the batch's mesh axes are gathered per shard of the batch (the flax backend
# runs them as a shard_map over those axes, backends/flax/sharding.py), so their gradients are reduce-scattered
GATHERED_IN_BOX = frozenset({"linear", "embed", "layernorm", "rmsnorm"})  # none mixes examples


@dataclass(frozen=True)
class Collective:
    """One collective a training step implies, per device."""

    box: str  # dotted name of the box (or weight) that implies it
    kind: str  # all-reduce | all-gather | reduce-scatter
    phase: str  # forward | backward | gradient | loss
    mesh_axes: tuple[str, ...]
    bytes: int  # of the array communicated, per device (an all-gather's result, the others' operand)
    times: int = 1  # how often per step (a repeat's copies, a scan's steps)
    what: str = ""


@dataclass
class ShardedCost:
    """Per-device bytes and the collectives of one training step under a mapping."""

    parameter_bytes: int
    parameter_bytes_whole: int
    activation_bytes: int
    activation_bytes_whole: int
    collectives: list[Collective] = field(default_factory=list)

    def totals(self) -> dict[str, tuple[int, int]]:
        """kind -> (arrays communicated per step, bytes per device per step)."""
        out: dict[str, tuple[int, int]] = {}
        for c in self.collectives:
            n, b = out.get(c.kind, (0, 0))
            out[c.kind] = (n + c.times, b + c.times * c.bytes)
        return dict(sorted(out.items()))

    def to_json(self) -> dict:
        return {"parameter_bytes_per_device": self.parameter_bytes, "parameter_bytes": self.parameter_bytes_whole,
                "activation_bytes_per_device": self.activation_bytes,
                "activation_bytes": self.activation_bytes_whole,
                "collectives": [{"box": c.box, "kind": c.kind, "phase": c.phase, "mesh_axes": list(c.mesh_axes),
                                 "bytes": c.bytes, "times": c.times, "what": c.what} for c in self.collectives],
                "totals": {k: {"arrays": n, "bytes": b} for k, (n, b) in self.totals().items()}}

    def format(self) -> str:
        lines = [(f"per device: parameters {self.parameter_bytes:,} B of {self.parameter_bytes_whole:,}; "
                  f"activations {self.activation_bytes:,} B of {self.activation_bytes_whole:,} (one forward pass)")]
        if not self.collectives:
            lines.append("collectives per training step: none")
            return "\n".join(lines)
        lines.append("collectives per training step (bytes per device):")
        width = max(len(c.box) for c in self.collectives)
        for c in self.collectives:
            times = f" x{c.times}" if c.times > 1 else ""
            lines.append(f"  {c.box:<{width}}  {c.kind:<14} {c.phase:<8} over {'+'.join(c.mesh_axes):<10} "
                         f"{c.bytes:>12,} B{times}  {c.what}")
        for kind, (n, b) in self.totals().items():
            lines.append(f"  total {kind}: {n} arrays, {b:,} B")
        return "\n".join(lines)


class _Walk:
    def __init__(self, diagram: Diagram, sm: ShardMap, batch: int, bindings: Mapping[str, int]):
        self.sm = sm
        self.batch = batch
        self.bindings = dict(bindings)
        self.cost = ShardedCost(0, 0, 0, 0)
        self.batch_devices = sm.devices(sm.batch) if sm.batch else 1
        self.diagram = diagram
        self.batched: set[str] = set()  # dotted names of the boxes whose inputs carry the batch

    def size(self, s: Size) -> int:
        return s.value if s.is_const else int(s.evaluate(self.bindings))

    # -- bytes
    def wire_bytes(self, t: TensorType, extra: tuple[tuple[str, int], ...], batched: bool) -> tuple[int, int]:
        """(per device, whole) bytes of a wire with the broadcast axes `extra` and maybe the batch."""
        names = tuple(n for n, _ in extra) + t.names
        sizes = tuple(s for _, s in extra) + tuple(self.size(a.size) for a in t.axes)
        whole = math.prod(sizes) * _BYTES.get(t.dtype, 4)
        flags = (False,) * len(names)
        if batched:
            names, sizes, flags = ("#0",) + names, (self.batch,) + sizes, (True,) + flags
            whole *= self.batch
        per = math.prod(sizes) * _BYTES.get(t.dtype, 4)
        for n, mesh_axes in zip(sizes, self.sm.wire_axes(names, flags)):
            if mesh_axes and n % self.sm.devices(mesh_axes) == 0:
                per //= self.sm.devices(mesh_axes)
        return per, whole

    def weight_bytes(self, names: tuple[str, ...], sizes: tuple[int, ...], gather: tuple[str, ...] = ()) -> int:
        """Per-device bytes of a weight, with the mesh axes in `gather` taken as whole."""
        per = math.prod(sizes) * 4
        for mesh_axes in self.sm.weight_axes(names):
            if mesh_axes:
                per //= self.sm.devices(tuple(m for m in mesh_axes if m not in gather) or ())
        return per

    def add(self, *args, **kwargs):
        c = Collective(*args, **kwargs)
        if c.bytes and all(self.sm.mesh_sizes[m] > 1 for m in c.mesh_axes) and c.mesh_axes:
            self.cost.collectives.append(c)

    # -- weights
    def weights(self, d: Diagram):
        """Per-device parameter bytes; the gradient (and FSDP gather) collectives of every trained weight,
        once `self.batched` holds the boxes whose inputs carry the batch (`activations` fills it)."""
        for dotted, w, copies, box in weights_of(d):
            names = tuple(c for c, _ in copies) + w.type.names
            sizes = tuple(self.size(s) for _, s in copies) + tuple(self.size(a.size) for a in w.type.axes)
            per = self.weight_bytes(names, sizes)
            self.cost.parameter_bytes += per
            self.cost.parameter_bytes_whole += math.prod(sizes) * 4
            if w.state:
                continue
            split = [axes for axes in self.sm.weight_axes(names) if axes]
            on_batch = tuple(m for axes in split for m in axes if m in self.sm.batch)
            rest = tuple(m for m in self.sm.batch if m not in on_batch)
            if not on_batch:
                if self.sm.batch:
                    self.add(dotted, "all-reduce", "gradient", self.sm.batch, per, what="gradient")
                continue
            # fully sharded: gathered for use; its gradient reduce-scattered back where its box runs per
            # shard of the batch (GATHERED_IN_BOX, the batch split evenly, the weight's split axes all the
            # batch's), else summed whole over the batch and sliced
            gathered = self.weight_bytes(names, sizes, on_batch)
            self.add(dotted, "all-gather", "forward", on_batch, gathered, what="weight, gathered for use")
            box_name = dotted[:len(dotted) - len(w.name) - 1] if w.name else dotted
            in_box = (box.op in GATHERED_IN_BOX and box_name in self.batched
                      and self.batch % self.batch_devices == 0 and all(set(axes) <= set(self.sm.batch) for axes in split if set(axes) & set(self.sm.batch)))
            if in_box:
                self.add(dotted, "reduce-scatter", "gradient", on_batch, gathered, what="gradient")
                if rest:
                    self.add(dotted, "all-reduce", "gradient", rest, per, what="gradient")
            else:
                self.add(dotted, "all-reduce", "gradient", self.sm.batch, gathered,
                         what="gradient, whole (each device keeps its shard)")

    # -- activations and partial sums
    def activations(self, d: Diagram, prefix: str, extra: tuple, times: int, batched_in: list[bool],
                    grad_in: list[bool]):
        """Walk one diagram; `batched_in`/`grad_in` say, per input wire, whether it carries the batch and
        whether it depends on a weight. Returns the same two flags for the output wires."""
        batched: dict[str, bool] = {}
        grad: dict[str, bool] = {}
        for w, bt, g in zip((w for p in d.inputs for w in p.wires), batched_in, grad_in):
            batched[w], grad[w] = bt, g
        for w in (w for p in d.inputs for w in p.wires):
            per, whole = self.wire_bytes(d.wire(w).type, extra, batched[w])
            self.cost.activation_bytes += per * times
            self.cost.activation_bytes_whole += whole * times
        for b in d.boxes:
            bt = any(batched.get(w, False) for w in b.inputs)
            if bt:
                self.batched.add(f"{prefix}{b.name}")
            g = bool(b.weights) or any(grad.get(w, False) for w in b.inputs)
            if b.body is not None:
                outs_bt, outs_g = self.nested(d, b, prefix, extra, times, [batched.get(w, False) for w in b.inputs],
                                              [grad.get(w, False) for w in b.inputs])
            else:
                outs_bt, outs_g = [bt] * len(b.outputs), [g] * len(b.outputs)
                if b.op in _CONTRACTIONS:
                    self.partial_sums(d, b, prefix, extra, times, bt, [grad.get(w, False) for w in b.inputs])
            for w, x, y in zip(b.outputs, outs_bt, outs_g):
                batched[w], grad[w] = x, y
                per, whole = self.wire_bytes(d.wire(w).type, extra, x)
                self.cost.activation_bytes += per * times
                self.cost.activation_bytes_whole += whole * times
        out = list(d.output.wires)
        return [batched.get(w, False) for w in out], [grad.get(w, False) for w in out]

    def nested(self, d: Diagram, b: Box, prefix: str, extra: tuple, times: int, bts: list, grads: list):
        body = b.body
        own = f"{prefix}{b.name}."
        outer = {a.name: self.size(a.size) for w in b.outputs for a in d.wire(w).type.axes}
        broadcast = tuple((n, outer[n]) for n in b.attr("batch", ()) if n in outer)
        if b.op == "repeat":
            n_carry = b.attr("carried")
            count = self.size(b.attr("count"))
            bt, _ = self.activations(body, own, extra, times * count, bts, [True] * n_carry + grads[n_carry:])
            return bt, [True] * len(b.outputs)
        if b.op == "scan":
            length = self.size(b.attr("length"))
            self.activations(body, own, extra + broadcast, times * length, [any(bts)] * len(bts),
                             [True] * len(grads))
            return [any(bts)] * len(b.outputs), [True] * len(b.outputs)
        return self.activations(body, own, extra + broadcast, times, bts, grads)

    def partial_sums(self, d: Diagram, b: Box, prefix: str, extra: tuple, times: int, batched: bool,
                     grads: list[bool]):
        out_t = d.wire(b.outputs[0]).type
        out_names = set(out_t.names)
        axes = self.sm.axes
        in_names = set().union(*(d.wire(w).type.names for w in b.inputs))
        if b.op == "linear":
            in_names |= set(b.attr("in_axes"))
            summed = set(b.attr("in_axes"))
        else:
            summed = in_names - out_names
        out_mesh = {m for n in out_names for m in axes.get(n, ())}
        partial = sorted({m for n in summed for m in axes.get(n, ()) if m not in out_mesh
                          and m not in self.sm.batch})
        name = f"{prefix}{b.name}"
        if partial:
            per, _ = self.wire_bytes(out_t, extra, batched)
            self.add(name, "all-reduce", "forward", tuple(partial), per, times=times,
                     what=f"partial sums of {out_t} over {', '.join(n for n in sorted(summed) if n in axes)}")
        if b.op == "linear" and grads and grads[0]:
            x_t = d.wire(b.inputs[0]).type
            x_mesh = {m for n in x_t.names for m in axes.get(n, ())}
            new = sorted({m for n in b.attr("out_axes") for m in axes.get(n, ()) if m not in x_mesh
                          and m not in self.sm.batch})
            if new:
                per, _ = self.wire_bytes(x_t, extra, batched)
                self.add(name, "all-reduce", "backward", tuple(new), per, times=times,
                         what=f"partial gradient of its input {x_t}")


def analyse_sharding(diagram: Diagram, shard_map: ShardMap, *, batch: int = 1,
                     bindings: Mapping[str, int] | None = None, train: bool = True) -> ShardedCost:
    """Per-device bytes and the collectives of one training step of `diagram` under `shard_map`.

    Args:
        diagram: the checked circuit.
        shard_map: from `check.sharding.validate` (which has checked every name and size).
        batch: the global batch size (split over the batch's mesh axes).
        bindings: sizes of free axes.
        train: count a training step (gradients, loss); False for the forward pass alone.
    """
    walk = _Walk(diagram, shard_map, batch, bindings or {})
    n_in = sum(len(p.wires) for p in diagram.inputs)
    walk.activations(diagram, "", (), 1, [True] * n_in, [False] * n_in)
    of_activations, walk.cost.collectives = walk.cost.collectives, []
    walk.weights(diagram)  # listed first: a weight's collectives, then the boxes'
    walk.cost.collectives += of_activations
    if train and shard_map.batch:
        walk.add("loss", "all-reduce", "loss", shard_map.batch, 4, what="the mean of the loss")
    if not train:
        walk.cost.collectives = [c for c in walk.cost.collectives if c.phase == "forward"]
    return walk.cost


def mesh_figure_options(shard_map: ShardMap, cost: ShardedCost) -> dict:
    """`render_svg` options that draw a mapping: sharded wires labelled `heads / model`, and each box that
    communicates marked with what it sends (`render_svg(d, depth=None, **mesh_figure_options(...))`)."""
    marks: dict[str, list[str]] = {}
    for c in cost.collectives:
        if c.phase in ("forward", "backward"):
            marks.setdefault(c.box, []).append(f"\u21c4 {c.kind} {'+'.join(c.mesh_axes)} ({'fwd' if c.phase == 'forward' else 'bwd'})")
    return {"mesh_axes": {name: "+".join(axes) for name, axes in shard_map.shard if axes},
            "annotations": {box: ", ".join(texts) for box, texts in marks.items()}}
