"""Analysis: overlays measured on a running circuit, the time each box takes and the size of each wire.

Two sources a figure can be coloured by (``diagrammar render --overlay time|train-time|norms``), beside the
cost backend's counts (``cost_overlay``) and a user's JSON file (``load_overlay``); each returns the same
:class:`~diagrammar.backends.svg.overlay.Overlay`, and :func:`overlay_json` writes one so it can be reused.

Time per box (:func:`time_overlay`, from :func:`profile_boxes`). The flax backend runs every box inside
``jax.named_scope(<box name>)`` (``backends/flax/runner.py``), so nested scopes spell the box's path in the
``op_name`` that XLA keeps in each HLO instruction's metadata (``jit(f)/attention/q/dot_general``; JAX's
own scopes, such as ``while/body`` or ``transpose(jvp(...))``, sit in between and are skipped). The
compiled forward pass (or a training step: the gradient of the mean square of the outputs, without
the optimiser) runs a few times under ``jax.profiler.trace``; the trace's events name the HLO
instructions that ran, and each instruction's time goes to the box its op_name names.

  - A fusion that spans boxes (a matrix product and the bias and relu after it) goes to the box of the
    instruction that does its work: its matrix products and convolutions, else its gathers, scatters
    and sorts, else its reductions, else its root (a fusion of element-wise ops); when those
    instructions belong to several boxes (two products fused into one kernel), the time is split
    evenly among them.
  - A control-flow op (the ``while`` loop of a ``repeat`` or ``scan``) counts only its own time: the ops
    of its body, traced inside it on the same thread, are taken out of it (each event keeps its
    exclusive time). An op's time is the median of its events times their number, so a run slowed
    by another process sharing the cores counts as a typical one.
  - A box with a body (call, repeat, scan) gets the total of everything inside it, as the collapsed
    block in the figure stands for all of it; the boxes inside keep their own times. Ops outside every
    box (copies of the arguments, the loss of a training step) are reported as ``unattributed``.
  - The optimisation passes run as in training: a pass keeps every box and its name. Sibling linear maps
    fused into one product (``passes/fuse_siblings.py``: attention's q, k and v) carry whichever
    member's name XLA kept, so the time of the group's ops is pooled and shared among its members by
    their output widths.

Wire norms (:func:`norm_overlay`). The circuit runs once on a batch, capturing every named float wire
(``model(x, capture=[...])``, nested ones included) and each wire gets the root mean square of its
values over the batch (and over the copies or steps of an enclosing repeat or scan); entries that are
not finite (a causal mask's ``-inf``) are left out, and so are int wires and constants.

Inputs are random unless given: floats standard normal, ints uniform below the smallest table they
index (``embed``, ``onehot``, ``gather``; 2 when nothing bounds them), bools fair coins, all from
``seed``. Without a checkpoint the weights are the circuit's initialisers at seed 0, and the caption
says so.
"""
from __future__ import annotations

import glob
import gzip
import json
import math
import os
import re
import statistics
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..backends.svg.overlay import Overlay, OverlayError
from ..ir import Diagram, TensorType, TupleType

__all__ = [
    "BoxTimes",
    "HloOp",
    "box_of",
    "hlo_ops",
    "norm_overlay",
    "op_times",
    "overlay_json",
    "prepare_model",
    "profile_boxes",
    "random_inputs",
    "time_overlay",
    "wire_norms",
]

DEFAULT_BATCH = 32
DEFAULT_CALLS = 5
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ---------------------------------------------------------------- the model and its inputs


def prepare_model(target, checkpoint: str | os.PathLike | None = None, sizes: Mapping[str, int] | None = None):
    """``(model, caption)``: a compiled circuit to measure and what its weights are.

    ``target`` is a checked ``Diagram`` (compiled with seed 0, or loaded from ``checkpoint``, a
    ``checkpoint.npz`` or a run folder holding one) or an already compiled circuit (used as it is).
    ``sizes`` binds the diagram's free axes.
    """
    from flax import nnx

    if not isinstance(target, Diagram):
        if checkpoint is not None:
            raise ValueError("give a checkpoint with a Diagram, not with a compiled model")
        return target, "weights as given"
    if checkpoint is not None:
        from .capture import checkpoint_file, load_checkpoint

        model, meta = load_checkpoint(target, checkpoint, dict(sizes or {}))
        step = meta.get("step")
        where = checkpoint_file(checkpoint)
        name = where.parent.name if where.name == "checkpoint.npz" else where.name
        return model, f"checkpoint {name}" + (f" at step {step}" if step is not None else "")
    model = target.compile(rngs=nnx.Rngs(0), **dict(sizes or {}))
    return model, "random initial weights (seed 0)"


def _size(size, bindings: Mapping[str, int]) -> int:
    return size.value if size.is_const else int(size.evaluate(dict(bindings)))


def _index_bound(d: Diagram, wire: str, bindings: Mapping[str, int]) -> int | None:
    """The smallest table an int wire indexes: an embed's rows, a onehot's length, a gather's axis."""
    found: list[int] = []
    for b in d.boxes:
        if wire not in b.inputs:
            continue
        if b.op == "embed" and b.weights:
            axis = b.weights[0].type.axis(b.attr("vocab"))
            if axis is not None:
                found.append(_size(axis.size, bindings))
        elif b.op == "onehot":
            axis = d.wire(b.outputs[0]).type.axis(b.attr("axis"))
            if axis is not None:
                found.append(_size(axis.size, bindings))
        elif b.op == "gather" and len(b.inputs) > 1 and b.inputs[1] == wire:
            t = d.wire(b.inputs[0]).type
            axis = t.axis(b.attr("along")) if isinstance(t, TensorType) else None
            if axis is not None:
                found.append(_size(axis.size, bindings))
        elif b.body is not None:  # follow the wire into the body, through the port at the same position
            ports = [w for p in b.body.inputs for w in p.wires]
            i = b.inputs.index(wire)
            if i < len(ports):
                inner = _index_bound(b.body, ports[i], bindings)
                if inner is not None:
                    found.append(inner)
    return min(found) if found else None


def random_inputs(model, batch: int = DEFAULT_BATCH, seed: int = 0) -> tuple:
    """Random inputs of ``batch`` examples for a compiled circuit, one per input port (see the module
    docstring for how each dtype is drawn); a tuple-typed port gets a tuple."""
    import numpy as np

    d, bindings = model.diagram, model.sizes
    rng = np.random.default_rng(seed)

    def draw(t, wires: list[str]):
        if isinstance(t, TupleType):
            return tuple(draw(part, wires) for part in t.items)
        wire = wires.pop(0)
        shape = (batch,) + tuple(_size(a.size, bindings) for a in t.axes)
        if t.dtype == "int":
            bound = _index_bound(d, wire, bindings) or 2
            return rng.integers(0, bound, size=shape).astype(np.int32)
        if t.dtype == "bool":
            return rng.random(shape) < 0.5
        return rng.standard_normal(shape).astype(np.float32)

    return tuple(draw(p.type, list(p.wires)) for p in d.inputs)


# ---------------------------------------------------------------- HLO text and profiler traces


@dataclass(frozen=True)
class HloOp:
    """One HLO instruction of a compiled module: its opcode, the op_name of its metadata (``""`` if it has
    none), the computation it sits in, the computations it calls (a fusion's body, a loop's body), and
    ``work``: the op_names its time is attributed by (its own; for a fusion, those of its heaviest
    instructions, see :data:`HEAVY`)."""

    name: str
    opcode: str
    op_name: str
    computation: str
    calls: tuple[str, ...] = ()
    work: tuple[str, ...] = ()


# the instructions that do a fusion's work, heaviest kind first: its time goes to their boxes
HEAVY = (
    frozenset({"dot", "convolution", "custom-call", "fft", "triangular-solve", "cholesky"}),
    frozenset({"gather", "scatter", "sort"}),
    frozenset({"reduce", "reduce-window", "select-and-scatter"}),
)


_HEAD = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_OPCODE = re.compile(r"(?:^|[\s}\])])([a-z][a-z0-9\-_]*)\(")
_OP_NAME = re.compile(r'op_name="((?:[^"\\]|\\.)*)"')
_CALLS = re.compile(r"\b(?:calls|body|condition|to_apply|branch_computations)=\{?%?([\w.\-]+(?:,\s*%?[\w.\-]+)*)")


def hlo_ops(text: str) -> dict[str, HloOp]:
    """Every instruction of an HLO module's text (``compiled.as_text()``) by name (names are unique in a
    module), with the op_names its time is attributed by (``work``).

    A fusion's work is the op_names of its heaviest instructions (:data:`HEAVY`: matrix products and
    convolutions, else gathers, scatters and sorts, else reductions), nested fusions included; a fusion
    of element-wise ops has the op_name XLA gave it (its root's), or its root's if it has none.
    """
    ops: dict[str, HloOp] = {}
    roots: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if not line.startswith(" "):
            head = _HEAD.match(line.strip())
            if head:
                current = head.group(1)
            continue
        m = _INSTR.match(line)
        if not m:
            continue
        name, rest = m.group(1), m.group(2)
        if line.lstrip().startswith("ROOT"):
            roots[current] = name
        members.setdefault(current, []).append(name)
        op = _OPCODE.search(rest)
        meta = _OP_NAME.search(rest)
        calls = tuple(c.strip().lstrip("%") for found in _CALLS.findall(rest) for c in found.split(","))
        ops[name] = HloOp(name, op.group(1) if op else "", meta.group(1).replace('\\"', '"') if meta else "",
                          current, calls)

    def inside(computation: str, seen: set[str]) -> list[HloOp]:
        out = []
        for n in members.get(computation, ()):
            op = ops[n]
            out.append(op)
            if op.opcode == "fusion":
                for c in op.calls:
                    if c not in seen:
                        seen.add(c)
                        out.extend(inside(c, seen))
        return out

    for name, op in ops.items():
        work: tuple[str, ...] = (op.op_name,) if op.op_name else ()
        if op.opcode == "fusion" and op.calls:
            body = inside(op.calls[0], {op.calls[0]})
            for kinds in HEAVY:
                heavy = tuple(dict.fromkeys(i.op_name for i in body if i.opcode in kinds and i.op_name))
                if heavy:
                    work = heavy
                    break
            else:
                if not work and op.calls[0] in roots:
                    root = ops.get(roots[op.calls[0]])
                    work = (root.op_name,) if root is not None and root.op_name else ()
        ops[name] = HloOp(op.name, op.opcode, op.op_name, op.computation, op.calls, work)
    return ops


def op_times(events: Sequence[Mapping[str, Any]], ops: Mapping[str, Any]) -> dict[str, float]:
    """Microseconds each HLO instruction ran in the whole trace, from its complete ("X") events: the median
    of its events' times, times how many there are (so a run slowed by another process sharing the
    cores weighs no more than a typical one).

    An event is an op's when its ``args.hlo_op`` (GPU traces) or else its name is one of ``ops``. Each
    event keeps its exclusive time: events nested in it on the same thread (a loop's body inside the
    ``while``) are taken out of its duration, so nothing is counted twice.
    """
    by_thread: dict[tuple, list[tuple[float, float, str]]] = {}
    for e in events:
        if e.get("ph") != "X":
            continue
        args = e.get("args") or {}
        name = args.get("hlo_op") if isinstance(args, Mapping) and args.get("hlo_op") else e.get("name", "")
        if name not in ops:
            continue
        by_thread.setdefault((e.get("pid"), e.get("tid")), []).append(
            (float(e.get("ts", 0.0)), float(e.get("dur", 0.0)), name))
    each: dict[str, list[float]] = {}
    for spans in by_thread.values():
        spans.sort(key=lambda s: (s[0], -s[1]))
        stack: list[list] = []  # [end, name, exclusive]
        for ts, dur, name in spans:
            while stack and ts >= stack[-1][0]:
                _, done, own = stack.pop()
                each.setdefault(done, []).append(max(0.0, own))
            if stack:
                stack[-1][2] -= dur
            stack.append([ts + dur, name, dur])
        for _, done, own in stack:
            each.setdefault(done, []).append(max(0.0, own))
    return {k: statistics.median(v) * len(v) for k, v in each.items()}


def _unwrap(component: str) -> str:
    """A name-stack component without JAX's transformation wrappers: ``transpose(jvp(attention))`` is
    ``attention``."""
    while True:
        m = re.fullmatch(r"[\w.\-]+\((.*)\)", component)
        if not m:
            return component
        component = m.group(1)


def box_of(op_name: str, diagram: Diagram) -> str | None:
    """The dotted path of the box an HLO op_name's scopes name, or None for an op outside every box.

    The scopes are matched level by level: a component naming a box of the current diagram enters it
    (and its body, if it has one); every other component (``while``, ``body``, ``jit(_take)``) is JAX's.
    """
    from ..backends.flax.runner import scope_name

    parts = op_name.split("/")
    if parts and parts[0].startswith(("jit(", "pjit(")):
        parts = parts[1:]
    d: Diagram | None = diagram
    path: list[str] = []
    for part in parts:
        if d is None:
            break
        name = _unwrap(part)
        box = next((b for b in d.boxes if scope_name(b.name) == name), None)
        if box is None:
            continue
        path.append(box.name)
        d = box.body
    return ".".join(path) or None


def _trace_events(run: Callable[[], Any], calls: int) -> list[dict]:
    """The events of a jax.profiler trace of ``calls`` runs of ``run`` (host Python tracing off)."""
    import jax

    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True, profiler_options=options):
            for _ in range(calls):
                jax.block_until_ready(run())
        found = glob.glob(os.path.join(tmp, "**", "*.trace.json.gz"), recursive=True)
        if not found:
            raise RuntimeError("jax.profiler wrote no trace (is another profiler session running?)")
        with gzip.open(found[0]) as f:
            data = json.load(f)
    return data["traceEvents"] if isinstance(data, dict) else data


# ---------------------------------------------------------------- time per box


@dataclass(frozen=True)
class BoxTimes:
    """Microseconds per call: ``own`` each box's ops (leaf boxes, and the loop of a repeat or scan),
    ``boxes`` the same with every box with a body given the total inside it; ``unattributed`` the ops
    outside every box, ``total`` all traced ops."""

    own: dict[str, float]
    boxes: dict[str, float]
    unattributed: float
    total: float
    calls: int
    batch: int
    train: bool
    caption: str = ""
    ops: dict[str, tuple[str, ...]] = field(default_factory=dict)  # HLO instruction -> the boxes it counts for


def _step(model, train: bool):
    """A pure function of (state, *inputs) that runs the forward pass, or forward and backward."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    was = model.deterministic  # the mode is split into the graph; the caller's model is left as it was
    if not train:
        model.eval()
        graphdef, state = nnx.split(model)
        model.deterministic = was

        def forward(state, *xs):
            return nnx.merge(graphdef, state, copy=True)(*xs)

        return forward, state
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    model.deterministic = was

    def loss(params, rest, *xs):
        out = nnx.merge(graphdef, params, rest, copy=True)(*xs)  # fresh Variables at this trace level
        leaves = [x for x in jax.tree_util.tree_leaves(out) if jnp.issubdtype(x.dtype, jnp.floating)]
        return sum(jnp.mean(jnp.square(x)) for x in leaves)

    grad = jax.value_and_grad(loss)

    def step(state, *xs):
        return grad(state[0], state[1], *xs)

    return step, (params, rest)


def profile_boxes(target, *, inputs: Sequence[Any] | None = None, batch: int = DEFAULT_BATCH,
                  calls: int = DEFAULT_CALLS, train: bool = False, checkpoint: str | os.PathLike | None = None,
                  sizes: Mapping[str, int] | None = None, seed: int = 0,
                  progress: Progress | None = None) -> BoxTimes:
    """Time per box of a compiled circuit's forward pass (or training step), from a JAX profiler trace.

    Args:
      target: a checked ``Diagram`` or a compiled circuit (see :func:`prepare_model`).
      inputs: the model's positional arguments (one leading batch axis); default random, ``batch``
        examples drawn with ``seed``.
      calls: how many calls are traced (after one untraced call that warms up); times are per call.
      train: time ``value_and_grad`` of the mean square of the outputs instead of the forward pass.
      checkpoint, sizes: see :func:`prepare_model`.
      progress: called with a line of text at each stage.

    See the module docstring for how ops are attributed to boxes.
    """
    import jax

    say = progress or _quiet
    model, caption = prepare_model(target, checkpoint, sizes)
    diagram = model.diagram
    if inputs is None:
        inputs = random_inputs(model, batch, seed)
    else:
        batch = int(jax.tree_util.tree_leaves(inputs)[0].shape[0])
    fn, state = _step(model, train)
    what = "training step" if train else "forward pass"
    say(f"compiling {diagram.name}'s {what} (batch {batch})")
    compiled = jax.jit(fn).lower(state, *inputs).compile()
    ops = hlo_ops(compiled.as_text())
    jax.block_until_ready(compiled(state, *inputs))
    say(f"profiling {calls} call{'s' if calls != 1 else ''} under jax.profiler")
    events = _trace_events(lambda: compiled(state, *inputs), calls)
    say(f"attributing {len(events):,} trace events to {diagram.name}'s boxes")
    times = op_times(events, ops)
    if not times:
        raise RuntimeError("the profiler trace names none of the compiled program's ops; this JAX backend's "
                           "traces cannot be attributed to boxes")
    owners = {name: [box_of(n, diagram) for n in op.work] for name, op in ops.items() if op.work}
    own: dict[str, float] = {}
    unattributed = 0.0
    for name, us in times.items():
        paths = list(dict.fromkeys(owners.get(name) or [None]))  # the boxes that share the op, evenly
        for path in paths:
            if path is None:
                unattributed += us / len(paths)
            else:
                own[path] = own.get(path, 0.0) + us / len(paths)
    own = _share_fused({k: v / calls for k, v in own.items()}, model)
    boxes = dict(own)
    for path, us in own.items():  # every enclosing box gets the time of what it holds
        parts = path.split(".")
        # a dotted path splits at box names, which never hold a dot: each prefix is an enclosing box
        for i in range(1, len(parts)):
            outer = ".".join(parts[:i])
            boxes[outer] = boxes.get(outer, 0.0) + us
    total = sum(times.values()) / calls
    say(f"{total:,.0f} µs of ops per call, {unattributed / calls / total:.0%} of it outside every box")
    return BoxTimes(own, boxes, unattributed / calls, total, calls, batch, train, caption,
                    {k: tuple(p for p in v if p is not None) for k, v in owners.items() if any(v)})


def _share_fused(own: dict[str, float], model) -> dict[str, float]:
    """Share the time of each group of sibling linear maps fused into one product (passes/fuse_siblings.py)
    among its members by their output widths: which member's name XLA keeps on the fused op is chance."""
    plan = getattr(model, "_plan", None)
    runnable = getattr(plan, "diagram", None)
    if runnable is None:
        return own
    bindings = model.sizes
    out = dict(own)
    for path, b in runnable.walk():
        group = dict(b.attr("pass", ()) or ()).get("fuse_siblings")
        if not group or group[0] != "lead":
            continue
        prefix = path[: len(path) - len(b.name)]
        owner = runnable
        for part in [p for p in prefix.split(".") if p]:
            owner = owner.box(part).body
        widths = {}
        for name, out_axes, _ in group[1]:
            t = owner.wire(owner.box(name).outputs[0]).type
            widths[prefix + name] = math.prod(_size(t.axis(a).size, bindings) for a in out_axes)
        pooled = sum(out.pop(m, 0.0) for m in widths)
        if pooled:
            total = sum(widths.values())
            for m, w in widths.items():
                out[m] = pooled * w / total
    return out


def time_overlay(target, **options) -> Overlay:
    """The time each box takes, in microseconds per call, on a log scale (see :func:`profile_boxes` for the
    options, and the module docstring for how time is attributed).

    The caption names the pass, the batch and the weights.
    """
    t = profile_boxes(target, **options)
    values = {k: v for k, v in t.boxes.items() if v > 0}
    if not values:
        raise OverlayError("the profiler attributed no time to any box")
    what = "training step" if t.train else "forward pass"
    label = f"µs per box, {what}, batch {t.batch}; {t.caption}"
    return Overlay(boxes=tuple(sorted(values.items())), label=label, scale="log", lenient=True)


# ---------------------------------------------------------------- wire norms


def _float_wires(d: Diagram, prefix: str = "") -> list[str]:
    """Every float tensor wire, nested ones included, but a constant's (it holds no activation)."""
    constant = {w for b in d.boxes if b.op == "const" for w in b.outputs}
    out = [prefix + w.name for w in d.wires
           if isinstance(w.type, TensorType) and w.type.dtype == "float" and w.name not in constant]
    for b in d.boxes:
        if b.body is not None:
            out.extend(_float_wires(b.body, f"{prefix}{b.name}."))
    return out


def wire_norms(target, *, inputs: Sequence[Any] | None = None, batch: int = DEFAULT_BATCH,
               checkpoint: str | os.PathLike | None = None, sizes: Mapping[str, int] | None = None,
               seed: int = 0, wires: Sequence[str] | None = None) -> tuple[dict[str, float], str]:
    """``({wire: RMS}, caption)``: the root mean square of every named float wire (or of ``wires``) over
    one batch, the circuit in eval mode; the caption says what the inputs and weights were (see the
    module docstring)."""
    import jax
    import numpy as np
    from flax import nnx

    model, caption = prepare_model(target, checkpoint, sizes)
    if inputs is None:
        inputs = random_inputs(model, batch, seed)
        caption = f"{batch} random inputs; {caption}"
    else:
        caption = f"{int(jax.tree_util.tree_leaves(inputs)[0].shape[0])} given inputs; {caption}"
    names = list(wires) if wires is not None else _float_wires(model.diagram)
    if not names:
        raise OverlayError(f"{model.diagram.name} has no float wire to measure")
    was = model.deterministic
    model.eval()
    graphdef, state = nnx.split(model)
    model.deterministic = was

    @jax.jit
    def run(state, *xs):
        _, caps = nnx.merge(graphdef, state, copy=True)(*xs, capture=names)
        return {k: v for k, v in caps.items()}

    caps = jax.device_get(run(state, *inputs))
    norms = {}
    for name in names:
        a = np.asarray(caps[name], dtype=np.float64)
        a = a[np.isfinite(a)]
        if a.size:
            norms[name] = float(np.sqrt(np.mean(np.square(a))))
    return norms, caption


def norm_overlay(target, scale: str = "auto", **options) -> Overlay:
    """Each named float wire coloured by its RMS over a batch (see :func:`wire_norms` for the options).

    ``scale`` is ``"linear"``, ``"log"``, or ``"auto"``: log when every norm is positive and the largest
    is 30 times the smallest or more, else linear.
    """
    norms, caption = wire_norms(target, **options)
    if not norms:
        raise OverlayError("no wire has a finite value to measure")
    values = list(norms.values())
    if scale == "auto":
        positive = min(values) > 0
        scale = "log" if positive and max(values) >= 30 * min(values) else "linear"
    if scale == "log":  # a wire that is all zeros has no place on a log scale: it stays grey
        norms = {k: v for k, v in norms.items() if v > 0}
    label = f"RMS per wire, {caption}"
    return Overlay(wires=tuple(sorted(norms.items())), label=label, scale=scale, lenient=True)


# ---------------------------------------------------------------- reuse


def overlay_json(overlay: Overlay) -> str:
    """The JSON document ``diagrammar render --overlay FILE.json`` reads back as ``overlay``."""
    data: dict[str, Any] = {"label": overlay.label, "scale": overlay.scale}
    if overlay.range is not None:
        data["range"] = list(overlay.range)
    if overlay.boxes:
        data["boxes"] = dict(overlay.boxes)
    if overlay.wires:
        data["wires"] = dict(overlay.wires)
    if overlay.lenient:
        data["lenient"] = True
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"

