"""Backend: a typed diagram compiled to a trainable `flax.nnx.Module`.

This is the only module of diagrammar that imports jax or flax. It reads the
frozen IR (`diagrammar.ir`) and never re-derives a type: every size comes from
the IR's wires and weights, evaluated with the sizes bound at compile time.

How it runs. Every value is kept as an array together with the names of its
axes, in the array's memory order. Element-wise operations align their operands
by name (a transpose plus size-1 axes, never NumPy's implicit rank promotion).
`linear` is one 2-D matrix product, as in a hand-written `nnx.Linear` (input
axes moved last and flattened, weights `[IN..., OUT...]` read by position, so a
square map `d -> d` is no special case); `dot` and `einsum` become `jnp.einsum`
with one letter per axis name. A `onehot` stays lazy (its indices) while it
is only stacked, and a `linear` of it gathers the weight rows the indices
pick (a scatter-add backward) instead of multiplying by mostly-zero rows;
`compile(..., onehot_gather=False)` keeps the literal product. Axes that the circuit is
broadcast over (the leading batch axes of the inputs, and the extra axes of a
broadcast circuit call or scan step) get internal names starting with `#`,
which no circuit can spell, and stay first in memory.

Choices this backend makes where the language leaves them open:
  - Weights are `nnx.Param`s at the IR's dotted names: `model.h.W`,
    `model.attention.q.W`, `model.pos_embed`. Each array is laid out in the
    order of its weight type's axes (`linear`: input axes, then output axes).
    A box name that clashes with an `nnx.Module` attribute (`train`, `eval`,
    ...) or starts with `_` gets a trailing `_` as its attribute name.
  - `repeat N` keeps one set of weights per copy, stacked on a leading copy
    axis (`model.repeat.x.W` has shape `[N, ...]`; nested repeats add one
    leading axis each, outermost first) and runs the copies with
    `jax.lax.scan`. `scan` runs `jax.lax.scan` along its axis with the step's
    weights shared by all steps. `compile(..., remat=True)` rematerialises
    every scan step (`jax.checkpoint`): the backward pass recomputes a step
    instead of stacking its intermediates for every step, which pays when they
    dwarf its state (a pointer network's `[n, att]` attention: 3-4x faster
    training on CPU at n = 50); it is off by default (a plain LSTM step trains
    about 20% slower with it).
  - Initialisers: `lecun` is flax's `lecun_normal` (a normal truncated at two
    standard deviations, rescaled to variance 1/fan_in; fan_in is the product
    of the sizes of `Init.fan_in`), `glorot` is flax's `glorot_uniform`
    (uniform with variance 2/(fan_in + fan_out); a weight with one axis uses
    fan_out = fan_in), `embed` is flax's `nnx.Embed` default (normal, std
    1/sqrt(product of the output axes)), `normal(std)` and `uniform(lo, hi)`
    are plain.
  - `gelu` is `jax.nn.gelu` (tanh approximation, as `nnx.gelu`); `layernorm`
    divides by sqrt(var + eps) with the variance of the centred values.
  - `embed` and `gather` index as `jnp.take` does (the default of
    `nnx.Embed`: an index out of range gives NaN); `onehot` of an index out of
    range is all zeros.
  - Dropout follows `nnx.Dropout`: a new module is in training mode (dropout
    active); `model.eval()` turns it off and `model.train()` back on. Masks
    come from the `dropout` stream of the `nnx.Rngs` given at compile time
    (the `default` stream if there is none): one key per call, folded with
    each box's position and each repeat/scan iteration.
"""
from __future__ import annotations

import difflib
import functools
import math
import string
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jax.custom_derivatives import SymbolicZero

from ..errors import InvalidArgument, SizeConflict, SizeTooLarge, UnknownName
from ..ir import Box, Diagram, Init, Size, TensorType, TupleType, Weight, eval_const

__all__ = ["compile_diagram", "CompiledCircuit", "DEFAULT_MAX_WEIGHT_ELEMENTS"]

DEFAULT_MAX_WEIGHT_ELEMENTS = 2 ** 31

_DTYPES = {"float": jnp.float32, "int": jnp.int32, "bool": jnp.bool_}
_LETTERS = string.ascii_letters
# flax's lecun_normal: a normal truncated to [-2, 2] has this standard deviation
_TRUNC_STD = 0.87962566103423978


# ---------------------------------------------------------------- compile time


class _Sizes:
    """Evaluates the IR's symbolic sizes with the sizes bound at compile time."""

    def __init__(self, bindings: dict[str, int]):
        self.bindings = dict(bindings)
        self._cache: dict[Size, int] = {}

    def __call__(self, size: Size) -> int:
        n = self._cache.get(size)
        if n is None:
            n = self._cache[size] = size.value if size.is_const else int(size.evaluate(self.bindings))
        return n

    def shape(self, t: TensorType) -> tuple[int, ...]:
        return tuple(self(a.size) for a in t.axes)


@dataclass(frozen=True)
class _WeightSpec:
    dotted: str  # the IR's dotted name, e.g. "repeat.x.W"
    path: tuple[str, ...]  # attribute path in the module tree (names mangled where needed)
    weight: Weight
    copies: tuple[tuple[str, Size], ...]  # enclosing repeats, outermost first: (dotted box name, count)
    box: Box


def _walk_weights(d: Diagram, prefix: str = "", copies: tuple = ()) -> Iterable[tuple[str, Weight, tuple, Box]]:
    # the same order as Diagram.weights(), plus the repeat counts one by one and the owning box
    for b in d.boxes:
        for w in b.weights:
            yield f"{prefix}{b.name}" + (f".{w.name}" if w.name else ""), w, copies, b
        if b.body is not None:
            inner = copies + ((f"{prefix}{b.name}", b.attr("count")),) if b.op == "repeat" else copies
            yield from _walk_weights(b.body, f"{prefix}{b.name}.", inner)


def _diagrams(d: Diagram) -> Iterable[Diagram]:
    seen: set[int] = set()
    stack = [d]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        stack.extend(b.body for b in x.boxes if b.body is not None)


def _all_axes(d: Diagram) -> dict[str, set[Size]]:
    out: dict[str, set[Size]] = {}
    for x in _diagrams(d):
        for w in x.wires:
            for a in w.type.axes:
                out.setdefault(a.name, set()).add(a.size)
        for b in x.boxes:
            for w in b.weights:
                for a in w.type.axes:
                    out.setdefault(a.name, set()).add(a.size)
    return out


def _bind_sizes(d: Diagram, given: dict[str, Any]) -> _Sizes:
    free = d.free_sizes()
    known = _all_axes(d)
    bindings: dict[str, int] = {}
    for name, value in given.items():
        if name not in free and name not in known:
            hint = difflib.get_close_matches(name, sorted(set(known) | free), n=1)
            raise UnknownName(f"{d.name} has no axis {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""),
                              d.span, hint=("its free axes: " + ", ".join(sorted(free))) if free
                              else f"{d.name} has no free axes: every size is fixed by the program")
        if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
            raise InvalidArgument(f"the size of {name} must be an integer, got {value!r}", d.span)
        value = int(value)
        if value < 1:
            raise SizeConflict(f"the size of {name} must be at least 1, got {value}", d.span)
        if name in free:
            bindings[name] = value
        else:
            fixed = {s.value for s in known[name] if s.is_const}
            if fixed and value not in fixed:
                raise SizeConflict(f"axis {name} is fixed at {min(fixed)} by the program; it cannot be compiled "
                                   f"with {name}={value}", d.span,
                                   hint=("free axes: " + ", ".join(sorted(free))) if free else None)
    missing = sorted(free - set(bindings))
    if missing:
        raise InvalidArgument(
            f"{d.name} has free axes without a size: {', '.join(missing)}", d.span,
            hint="give them when compiling: compile(rngs=..., " + ", ".join(f"{m}=..." for m in missing) + ")")
    sizes = _Sizes(bindings)
    for x in _diagrams(d):
        for w in x.wires:
            for a in w.type.axes:
                n = sizes(a.size)
                if n < 1:
                    raise SizeConflict(f"axis {a.name} = {a.size} evaluates to {n} in {x.name}; sizes must be at "
                                       "least 1", x.span)
        for b in x.boxes:
            for key in ("count", "length"):
                s = b.attr(key)
                if isinstance(s, Size) and sizes(s) < 1:
                    raise SizeConflict(f"{b.op} {b.name} runs {sizes(s)} times; it needs at least 1", b.span)
            _check_reshape(x, b, sizes)
    return sizes


def _check_reshape(d: Diagram, b: Box, sizes: _Sizes):
    """Sizes the checker could only compare symbolically must also agree as numbers."""
    if b.op not in ("merge", "split", "concat"):
        return
    n_in = sum(math.prod(sizes.shape(d.wire(w).type)) for w in b.inputs)
    out_t = d.wire(b.outputs[0]).type
    n_out = math.prod(sizes.shape(out_t))
    if b.op != "concat" and n_in != n_out:
        raise SizeConflict(f"{b.op} {b.name} turns {n_in} elements into {n_out} with these sizes", b.span)


def _mangle(name: str) -> str:
    if name.startswith("_") or name in _RESERVED:
        return name + "_"
    return name


class _Plan:
    """Everything static about a compiled circuit (held by the module, hashed by identity)."""

    def __init__(self, diagram: Diagram, sizes: _Sizes, weights: list[_WeightSpec], remat: bool = False,
                 onehot_gather: bool = True):
        self.diagram = diagram
        self.sizes = sizes
        self.weights = weights
        self.has_dropout = any(b.op == "dropout" for x in _diagrams(diagram) for b in x.boxes)
        self.remat = remat  # rematerialise scan steps (compile_diagram's `remat`)
        self.onehot_gather = onehot_gather  # keep one-hots lazy (see _V)

    def __repr__(self) -> str:
        return f"<plan {self.diagram.name} {self.sizes.bindings}>"


# ---------------------------------------------------------------- initialisers


def _fan(w: Weight, names: Sequence[str], sizes: _Sizes) -> int:
    by_name = {a.name: sizes(a.size) for a in w.type.axes}
    return math.prod(by_name[n] for n in names if n in by_name)


def _init_weight(key, w: Weight, copies: tuple[int, ...], sizes: _Sizes) -> jax.Array:
    shape = copies + sizes.shape(w.type)
    init: Init = w.init
    kind = init.kind
    if kind in ("zeros", "ones"):
        return (jnp.zeros if kind == "zeros" else jnp.ones)(shape, jnp.float32)
    if kind == "normal":
        return _sample(key, "normal", shape, float(init.args[0]), 0.0)
    if kind == "uniform":
        return _sample(key, "uniform", shape, float(init.args[0]), float(init.args[1]))
    if kind == "lecun":
        fan_in = max(_fan(w, init.fan_in, sizes), 1)
        return _sample(key, "truncated", shape, math.sqrt(1.0 / fan_in) / _TRUNC_STD, 0.0)
    if kind == "glorot":
        fan_in = max(_fan(w, init.fan_in, sizes), 1)
        fan_out = max(_fan(w, init.fan_out, sizes), 1) if init.fan_out else fan_in
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return _sample(key, "uniform", shape, -limit, limit)
    if kind == "embed":
        return _sample(key, "normal", shape, 1.0 / math.sqrt(max(_fan(w, init.fan_out, sizes), 1)), 0.0)
    raise InvalidArgument(f"the flax backend does not know the initialiser {kind!r}")


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _sample(key, kind: str, shape: tuple[int, ...], a: float, b: float):
    # one small compiled program per (initialiser, shape, scale), cached by jax across modules
    if kind == "normal":
        return a * jax.random.normal(key, shape, jnp.float32)
    if kind == "truncated":
        return a * jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)
    return jax.random.uniform(key, shape, jnp.float32, minval=a, maxval=b)


# ---------------------------------------------------------------- the module


class _Node(nnx.Module):
    """A box that owns weights or nested boxes: its weights and sub-boxes are attributes."""


class CompiledCircuit(nnx.Module):
    """A circuit compiled to flax: call it with the circuit's inputs, in declared order.

    Inputs are laid out as their types are written, with any extra leading
    (batch) axes first; the whole circuit is broadcast over them. Tuple-typed
    inputs are Python tuples. The result is laid out as the return type is
    written, after the batch axes.

    `model(*inputs, capture=["h", "attention.a"])` returns `(output, wires)`,
    where `wires` maps each requested wire (a dotted path into calls, repeats
    and scans) to its value, laid out as: one leading axis per enclosing
    repeat or scan (its copies or steps, outermost first), then the batch
    axes, then the wire's axes as its type is written.
    """

    def __init__(self, plan: _Plan, rngs: nnx.Rngs):
        self.deterministic = False  # nnx.Dropout's convention: train() clears it, eval() sets it
        self._plan = plan
        if plan.has_dropout:
            self._dropout_rngs = rngs["dropout"].fork()
        for spec in plan.weights:
            # eager, one weight at a time: jax caches each initialiser per shape across modules
            counts = tuple(plan.sizes(c) for _, c in spec.copies)
            value = _init_weight(rngs.params(), spec.weight, counts, plan.sizes)
            axes = tuple(f"{name}#copy" for name, _ in spec.copies) + spec.weight.type.names
            node = self
            for part in spec.path[:-1]:
                child = getattr(node, part, None)
                if child is None:
                    child = _Node()
                    setattr(node, part, child)
                node = child
            setattr(node, spec.path[-1], nnx.Param(value, axes=axes))

    # -- introspection
    @property
    def diagram(self) -> Diagram:
        """The IR this module runs."""
        return self._plan.diagram

    @property
    def sizes(self) -> dict[str, int]:
        """The sizes bound at compile time."""
        return dict(self._plan.sizes.bindings)

    def weight(self, dotted: str) -> nnx.Param:
        """The `nnx.Param` at the IR's dotted name, e.g. `model.weight("attention.q.W")`."""
        for spec in self._plan.weights:
            if spec.dotted == dotted:
                return self._param(spec)
        hint = difflib.get_close_matches(dotted, [s.dotted for s in self._plan.weights], n=1)
        raise KeyError(f"no weight {dotted!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))

    def _param(self, spec: _WeightSpec) -> nnx.Param:
        node = self
        for part in spec.path:
            node = getattr(node, part)
        return node

    # -- the forward pass
    def __call__(self, *inputs, capture: str | Sequence[str] | None = None):
        plan = self._plan
        d = plan.diagram
        request = _parse_capture(d, capture) if capture is not None else None
        if len(inputs) != len(d.inputs):
            names = ", ".join(f"{p.name}: {p.type}" for p in d.inputs)
            raise TypeError(f"{d.name} takes {len(d.inputs)} input{'s' if len(d.inputs) != 1 else ''} ({names}), "
                            f"got {len(inputs)}")
        leaves: list[tuple[str, TensorType, Any]] = []
        for port, value in zip(d.inputs, inputs):
            _flatten_input(port.name, port.type, value, leaves)
        values, batch, batch_sizes = _bind_batch(d.name, leaves, plan.sizes)
        weights = {spec.dotted: self._param(spec)[...] for spec in plan.weights}
        training = not self.deterministic
        key = self._dropout_rngs() if plan.has_dropout and training else None
        ctx = _Ctx(batch=batch, sizes=batch_sizes, training=training, key=key)
        outs, caps = _Runner(plan, weights).run(d, "", values, ctx, request)
        it = iter(outs)
        result = _rebuild(d.output.type, it, batch, batch_sizes, plan.sizes)
        if capture is None:
            return result
        return result, {name: caps[name][0] for name in request.order}


_RESERVED = frozenset(dir(CompiledCircuit)) | frozenset(dir(_Node)) | {"deterministic"}


def compile_diagram(diagram: Diagram, *, rngs: nnx.Rngs | int,
                    max_weight_elements: int = DEFAULT_MAX_WEIGHT_ELEMENTS, max_parameters: int | None = None,
                    remat: bool = False, onehot_gather: bool = True, **axis_sizes: int) -> CompiledCircuit:
    """Compile a typed diagram to a trainable `flax.nnx.Module`.

    Args:
        diagram: a checked circuit, e.g. `diagrammar.load(path)["Name"]`.
        rngs: the `nnx.Rngs` (or an int seed) that initialise the weights (the
            `params` stream) and drive dropout (the `dropout` stream); either
            falls back to the `default` stream.
        max_weight_elements: refuse, before allocating anything, any weight with
            more elements than this (counting every copy of a `repeat`).
        max_parameters: refuse, before allocating anything, a model with more
            parameters than this in all (`backends.cost.check_budget`).
        remat: rematerialise every `scan` step in the backward pass (`jax.checkpoint`):
            same results, less memory, faster when a step's intermediates dwarf its state.
        onehot_gather: run `linear` of a `onehot` (or of a `stack` of them) as a
            gather of weight rows instead of a matrix product with one-hot rows:
            same results, less work (ModAddMLP trains 1.6x faster). False keeps
            the dense product, e.g. to compare with a hand-written model.
        **axis_sizes: sizes of the circuit's free axes (`diagram.free_sizes()`).

    Returns:
        A `CompiledCircuit`: call it with the circuit's inputs; weights are
        `nnx.Param`s at the IR's dotted names.

    Raises:
        InvalidArgument: a free axis was not given a size.
        UnknownName: a size was given for an axis the circuit does not have.
        SizeConflict: a size is below 1, or contradicts a size fixed by the program.
        SizeTooLarge: a weight exceeds `max_weight_elements`, or the model
            `max_parameters`.

    Example:
        >>> import diagrammar, jax.numpy as jnp
        >>> from flax import nnx
        >>> program = diagrammar.parse('''
        ... axis n, d = 3, h = 8
        ... circuit Net(x: [n, d]) -> [n]:
        ...     return sum(relu(linear(x, d -> h)), over = h)
        ... ''')
        >>> model = compile_diagram(program["Net"], rngs=nnx.Rngs(0), n=5)
        >>> model.out.W.shape
        (3, 8)
        >>> model(jnp.ones((2, 5, 3))).shape    # a batch of 2
        (2, 5)
    """
    if isinstance(rngs, int):
        rngs = nnx.Rngs(rngs)
    sizes = _bind_sizes(diagram, axis_sizes)
    if max_parameters is not None:
        from .cost import check_budget  # reads the IR only, like this backend

        check_budget(diagram, max_parameters, sizes.bindings)
    specs = []
    for dotted, w, copies, box in _walk_weights(diagram):
        per_copy = math.prod(sizes.shape(w.type))
        n_copies = math.prod(sizes(c) for _, c in copies)
        total = per_copy * n_copies
        if total > max_weight_elements:
            what = f"{per_copy:,} elements" + (f" per copy x {n_copies:,} copies = {total:,}" if n_copies > 1 else "")
            raise SizeTooLarge(f"weight {dotted} {w.type} has {what}, over the budget of {max_weight_elements:,}; "
                               "nothing was allocated", box.span,
                               hint="bind smaller sizes, or raise max_weight_elements")
        specs.append(_WeightSpec(dotted, tuple(_mangle(p) for p in dotted.split(".")), w, copies, box))
    return CompiledCircuit(_Plan(diagram, sizes, specs, remat=bool(remat), onehot_gather=bool(onehot_gather)), rngs)


# ---------------------------------------------------------------- the boundary


def _flatten_input(name: str, t, value, out: list):
    if isinstance(t, TupleType):
        if not isinstance(value, (tuple, list)) or len(value) != len(t.items):
            n = len(value) if isinstance(value, (tuple, list)) else "not a tuple"
            raise TypeError(f"input {name} is the tuple {t}: pass a tuple of {len(t.items)} arrays (got {n})")
        for i, (ti, vi) in enumerate(zip(t.items, value)):
            _flatten_input(f"{name}.{i}", ti, vi, out)
        return
    out.append((name, t, value))


def _bind_batch(circuit: str, leaves, sizes: _Sizes):
    """Inputs as named values; leading extra axes become the batch axes `#0`, `#1`, ... (aligned on the right)."""
    arrays = []
    for name, t, value in leaves:
        a = jnp.asarray(value)
        want = sizes.shape(t)
        r = len(want)
        if a.ndim < r or tuple(a.shape[a.ndim - r:]) != want:
            axes = ", ".join(f"{n}={s}" for n, s in zip(t.names, want))
            raise ValueError(f"{circuit}'s input {name} is {t} ({axes}), so its last {r} axes must have the shape "
                             f"{want}; got an array of shape {tuple(a.shape)} (extra leading axes are a batch)")
        if t.dtype == "int":
            if not (jnp.issubdtype(a.dtype, jnp.integer) or a.dtype == jnp.bool_):
                raise TypeError(f"{circuit}'s input {name} is {t}: it needs integer indices, got {a.dtype}")
            a = a.astype(jnp.int32)
        elif t.dtype == "bool":
            if jnp.issubdtype(a.dtype, jnp.floating):
                raise TypeError(f"{circuit}'s input {name} is {t}: it needs booleans, got {a.dtype}")
            a = a.astype(jnp.bool_)
        else:
            a = a.astype(jnp.float32)
        arrays.append((a, a.ndim - r, t.names))
    k = max((e for _, e, _ in arrays), default=0)
    batch = tuple(f"#{i}" for i in range(k))
    batch_sizes: dict[str, int] = {}
    for a, e, _ in arrays:
        for j in range(e):
            n, s = batch[k - e + j], a.shape[j]
            if s != 1 and batch_sizes.get(n, 1) not in (1, s):
                raise ValueError(f"{circuit}'s inputs disagree on batch axis {k - e + j} "
                                 f"(sizes {batch_sizes[n]} and {s})")
            if s != 1 or n not in batch_sizes:
                batch_sizes[n] = s
    values = []
    for a, e, names in arrays:
        bnames = list(batch[k - e:])
        # a size-1 batch axis where another input has more is broadcast by dropping it
        drop = [j for j, n in enumerate(bnames) if a.shape[j] == 1 and batch_sizes[n] != 1]
        if drop:
            a = jnp.squeeze(a, axis=tuple(drop))
            bnames = [n for j, n in enumerate(bnames) if j not in drop]
        values.append(_V(a, tuple(bnames) + tuple(names)))
    return values, batch, batch_sizes


def _rebuild(t, it, batch, batch_sizes, sizes: _Sizes):
    if isinstance(t, TupleType):
        return tuple(_rebuild(x, it, batch, batch_sizes, sizes) for x in t.items)
    v = next(it)
    names = tuple(batch) + t.names
    full = dict(batch_sizes)
    full.update(zip(t.names, sizes.shape(t)))
    return _full(v, names, full).astype(_DTYPES[t.dtype])


# ---------------------------------------------------------------- named values


class _V:
    """An array and the names of its axes, in memory order.

    A one-hot value may stay lazy: `hot = (indices, n)` stands for
    `one_hot(indices, n)` along the last name, and the dense array is built
    only when an operation asks for `.a`. `stack` keeps it lazy and `linear`
    reads it as a row gather, so `linear(onehot(i, p), p -> h)` costs a lookup
    instead of a matrix product with p-wide one-hot rows (ModAddMLP's first
    layer: most of its step).
    """

    __slots__ = ("_a", "names", "hot")

    def __init__(self, a, names: tuple[str, ...], hot: tuple[Any, int] | None = None):
        self._a = a
        self.names = tuple(names)
        self.hot = hot

    @property
    def a(self):
        if self._a is None:
            indices, n = self.hot
            self._a = jax.nn.one_hot(indices, n, dtype=jnp.float32)
        return self._a

    @property
    def shape(self) -> tuple[int, ...]:
        if self._a is None:
            return tuple(self.hot[0].shape) + (self.hot[1],)
        return self._a.shape

    def size(self, name: str) -> int:
        return self.shape[self.names.index(name)]

    def __repr__(self) -> str:
        return f"_V({self.names}, {getattr(self._a, 'shape', None) if self.hot is None else self.shape})"


def _transpose(v: _V, names: Sequence[str]):
    names = tuple(names)
    if v.names == names:
        return v.a
    return jnp.transpose(v.a, [v.names.index(n) for n in names])


def _align(v: _V, names: Sequence[str]):
    """`v`'s array with its axes in the order of `names` and size 1 where it lacks one."""
    present = [n for n in names if n in v.names]
    a = _transpose(v, present)
    if len(present) != len(names):
        a = a.reshape(tuple(v.size(n) if n in v.names else 1 for n in names))
    return a


def _full(v: _V, names: Sequence[str], sizes: dict[str, int]):
    a = _align(v, names)
    shape = tuple(sizes[n] for n in names)
    return a if a.shape == shape else jnp.broadcast_to(a, shape)


def _union(vs: Iterable[_V]) -> list[str]:
    out: list[str] = []
    for v in vs:
        out.extend(n for n in v.names if n not in out)
    return out


def _sizes_of(vs: Iterable[_V]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in vs:
        out.update(zip(v.names, v.shape))
    return out


@dataclass
class _Ctx:
    batch: tuple[str, ...]  # names the current diagram is broadcast over, outermost first
    sizes: dict[str, int]  # their sizes
    training: bool
    key: Any  # dropout key for this diagram, or None

    def order(self, names: Iterable[str]) -> tuple[str, ...]:
        """Batch axes first (outermost first), then the rest in the given order."""
        names = list(names)
        lead = [n for n in self.batch if n in names]
        return tuple(lead) + tuple(n for n in names if n not in lead)

    def child(self, index: int, extra: dict[str, int] = None, step=None) -> "_Ctx":
        key = self.key
        if key is not None:
            key = jax.random.fold_in(key, index)
            if step is not None:
                key = jax.random.fold_in(key, step)
        sizes = dict(self.sizes)
        sizes.update(extra or {})
        return _Ctx(self.batch + tuple(extra or {}), sizes, self.training, key)


def _einsum(operands: Sequence[tuple[Any, Sequence[Any]]], out: Sequence[Any]):
    """einsum over symbolic axis ids (names, or anything hashable)."""
    letters: dict[Any, str] = {}

    def letter(x):
        if x not in letters:
            if len(letters) >= len(_LETTERS):
                raise ValueError("more than 52 distinct axes in one contraction")
            letters[x] = _LETTERS[len(letters)]
        return letters[x]

    spec = ",".join("".join(letter(x) for x in ids) for _, ids in operands)
    spec += "->" + "".join(letter(x) for x in out)
    return jnp.einsum(spec, *[a for a, _ in operands])


def _dims(x) -> tuple:
    return (((x.ndim - 1,), (0,)), ((), ()))


@jax.custom_jvp
def _matmul(x, w):
    """`x @ w` over x's last axis, with a backward pass that computes dW before dX.

    The two backward products are independent, so XLA's CPU runtime may run them
    at the same time, each asking for every core; which one it starts first
    depends on incidental things such as the order of the weights' names (a
    layer whose weights are `W, b` got a 30% slower step than the same layer
    with `kernel, bias`). An optimisation barrier in the tangent rule orders
    them (dW, then dX) so the step time no longer depends on luck. Defined as a
    custom JVP, not a custom VJP, so forward-mode and higher-order derivatives
    still work.
    """
    return lax.dot_general(x, w, _dims(x))


def _matmul_jvp(primals, tangents):
    x, w = primals
    dx, dw = tangents
    y = lax.dot_general(x, w, _dims(x))
    zero_x, zero_w = type(dx) is SymbolicZero, type(dw) is SymbolicZero
    if zero_x and zero_w:
        return y, jnp.zeros_like(y)
    if zero_x:
        return y, lax.dot_general(x, dw, _dims(x))
    t = lax.dot_general(dx, w, _dims(dx))
    if zero_w:
        return y, t
    # transposed, the barrier makes dX = g w^T wait for dW = x^T g
    t, dw = lax.optimization_barrier((t, dw))
    return y, t + lax.dot_general(x, dw, _dims(x))


_matmul.defjvp(_matmul_jvp, symbolic_zeros=True)


_MAX_GATHER_SLOTS = 16  # up to this many one-hot slots per example, one gather (and scatter-add) each


def _gather_rows_sum(blocks, indices):
    """`sum_j blocks[j, indices[..., j]]`; an index of n (one past a block) picks a zero row.

    One gather per slot `j`, from the slot's own block of rows: JAX's transpose
    of that (the weight gradient) is one scatter-add per slot of the incoming
    cotangent. A single gather over all slots followed by a sum is transposed
    into a scatter of a cotangent broadcast over the slots, which XLA's CPU
    backend fuses, with the layers behind it, into its serial scatter loop:
    ModAddMLP's step took 24 ms that way and 13.7 ms this way (the hand-written
    `W1[0, a] + W1[1, b]`: 13.5 ms).
    """
    return sum(jnp.take(blocks[j], indices[..., j], axis=0, mode="fill", fill_value=0)
               for j in range(indices.shape[-1]))


# ---------------------------------------------------------------- probes


@dataclass
class _Request:
    wires: set = field(default_factory=set)
    children: dict = field(default_factory=dict)
    order: list = field(default_factory=list)  # every requested name, as given (top level only)


def _wire_names(d: Diagram, prefix: str = "") -> list[str]:
    out = [prefix + w.name for w in d.wires]
    for b in d.boxes:
        if b.body is not None:
            out.extend(_wire_names(b.body, f"{prefix}{b.name}."))
    return out


def _parse_capture(d: Diagram, capture) -> _Request:
    names = [capture] if isinstance(capture, str) else list(capture)
    root = _Request()
    for full in names:
        node, dg, rest = root, d, full
        while True:
            if any(w.name == rest for w in dg.wires):
                node.wires.add(rest)
                break
            owner = next((b for b in dg.boxes if b.body is not None and rest.startswith(b.name + ".")), None)
            if owner is None:
                every = _wire_names(d)
                hint = difflib.get_close_matches(full, every, n=3)
                shown = [n for n in every if ":" not in n]
                listing = ", ".join(shown[:40]) + (", ..." if len(shown) > 40 else "")
                raise KeyError(f"{d.name} has no wire {full!r}"
                               + (f"; did you mean {' or '.join(repr(h) for h in hint)}?" if hint else "")
                               + f" Wires: {listing}")
            node = node.children.setdefault(owner.name, _Request())
            dg, rest = owner.body, rest[len(owner.name) + 1:]
        if full not in root.order:
            root.order.append(full)
    return root


# ---------------------------------------------------------------- the interpreter

_BINARY = {"add": jnp.add, "sub": jnp.subtract, "mul": jnp.multiply, "div": jnp.divide,
           "maximum": jnp.maximum, "minimum": jnp.minimum, "lt": jnp.less, "le": jnp.less_equal,
           "gt": jnp.greater, "ge": jnp.greater_equal, "eq": jnp.equal}
_COMPARE = {"lt", "le", "gt", "ge", "eq"}
_UNARY = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "silu": jax.nn.silu, "tanh": jnp.tanh,
          "sigmoid": jax.nn.sigmoid, "softplus": jax.nn.softplus, "exp": jnp.exp, "log": jnp.log,
          "sqrt": jnp.sqrt, "abs": jnp.abs, "square": jnp.square, "neg": jnp.negative}
_REDUCE = {"sum": jnp.sum, "mean": jnp.mean, "max": jnp.max, "min": jnp.min, "logsumexp": jax.nn.logsumexp}
_RANK = {"bool": 0, "int": 1, "float": 2}


class _Runner:
    """Runs diagrams on named values. Pure: weights come in as a dict of arrays by dotted name."""

    def __init__(self, plan: _Plan, weights: dict[str, Any]):
        self.plan = plan
        self.sizes = plan.sizes
        self.weights = weights

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
            sub = req.children.get(b.name) if req is not None else None
            if b.body is not None:
                outs, inner = getattr(self, "op_" + b.op)(d, b, index, prefix, ins, ctx, sub)
                caps.update(inner)
            else:
                outs = self.box(d, b, index, prefix, ins, ctx)
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

    # -- helpers
    def _out_type(self, d: Diagram, b: Box, i: int = 0) -> TensorType:
        return d.wire(b.outputs[i]).type

    def _weight(self, prefix: str, b: Box, name: str):
        return self.weights[f"{prefix}{b.name}" + (f".{name}" if name else "")]

    def box(self, d: Diagram, b: Box, index: int, prefix: str, ins: list[_V], ctx: _Ctx) -> list[_V]:
        op = b.op
        out_t = self._out_type(d, b) if b.outputs else None
        if op in _BINARY or op == "where":
            return [self._elementwise(d, b, ins, ctx, out_t)]
        if op in _UNARY:
            x = ins[0]
            dt = _DTYPES[out_t.dtype]
            a = x.a.astype(jnp.int32 if op == "neg" and x.a.dtype == jnp.bool_ else dt)
            return [_V(_UNARY[op](a).astype(dt), x.names)]
        method = getattr(self, "op_" + op, None)
        if method is None:
            raise NotImplementedError(f"the flax backend has no operation {op!r} (box {b.name})")
        return method(d, b, index, prefix, ins, ctx)

    def _elementwise(self, d, b, ins, ctx, out_t):
        names = ctx.order(_union(ins))
        if b.op in _COMPARE:
            ta, tb = (d.wire(w).type.dtype for w in b.inputs)
            dt = _DTYPES[ta if _RANK[ta] >= _RANK[tb] else tb]
        else:
            dt = _DTYPES[out_t.dtype]
        if b.op == "where":
            cond, x, y = ins
            return _V(jnp.where(_align(cond, names), _align(x, names).astype(dt), _align(y, names).astype(dt)),
                      names)
        x, y = (_align(v, names).astype(dt) for v in ins)
        return _V(_BINARY[b.op](x, y).astype(_DTYPES[out_t.dtype]), names)

    # -- leaves
    def op_const(self, d, b, index, prefix, ins, ctx):
        x = eval_const(b.attr("value"), self.sizes.bindings)
        dtype = self._out_type(d, b).dtype
        return [_V(jnp.asarray(int(x) if dtype == "int" else x, _DTYPES[dtype]), ())]

    def op_param(self, d, b, index, prefix, ins, ctx):
        (w,) = b.weights
        return [_V(self._weight(prefix, b, w.name), w.type.names)]

    def op_arange(self, d, b, index, prefix, ins, ctx):
        n = self.sizes.shape(self._out_type(d, b))[0]
        return [_V(jnp.arange(n, dtype=jnp.int32), (b.attr("axis"),))]

    # -- contractions
    def op_linear(self, d, b, index, prefix, ins, ctx):
        (x,) = ins
        in_axes, out_axes = b.attr("in_axes"), b.attr("out_axes")
        keep = list(ctx.order([n for n in x.names if n not in in_axes]))
        names = tuple(keep) + tuple(out_axes)
        w = self._weight(prefix, b, "W")
        if x.hot is not None and x.names[-1] in in_axes:
            y = self._linear_of_onehot(x, list(in_axes), keep, w)
            if b.attr("bias"):
                y = y + _align(_V(self._weight(prefix, b, "b"), out_axes), names)
            return [_V(y, names)]
        # One 2-D matrix product, as a hand-written nnx.Linear does: with the input axes last and
        # flattened, XLA picks the same GEMMs (and the same weight-gradient orientation) for both.
        a = _transpose(x, keep + list(in_axes))
        lead = a.shape[:len(keep)]
        k = math.prod(a.shape[len(keep):])
        out_shape = w.shape[len(in_axes):]
        a = a.reshape(lead + (k,))
        y = _matmul(a, w.reshape((k, math.prod(out_shape))))
        y = y.reshape(lead + out_shape)
        if b.attr("bias"):
            y = y + _align(_V(self._weight(prefix, b, "b"), out_axes), names)
        return [_V(y, names)]

    @staticmethod
    def _linear_of_onehot(x: _V, in_axes: list[str], keep: list[str], w):
        """`linear` of a lazy one-hot: gather the weight rows its indices pick and add them up.

        With the one-hot axis `p` and the other contracted axes `c` (e.g. `arg`
        in ModAddMLP), `y[..., o] = sum_c W[c, i[..., c], o]`. An index outside
        0..p-1 picks nothing, as its all-zero one-hot row would.
        """
        hot_axis = x.names[-1]
        indices, n = x.hot
        others = [a for a in in_axes if a != hot_axis]
        perm = [in_axes.index(a) for a in others] + [in_axes.index(hot_axis)]
        out_shape = w.shape[len(in_axes):]
        w = jnp.transpose(w, perm + list(range(len(in_axes), w.ndim)))
        c = math.prod(w.shape[:len(others)])
        blocks = w.reshape((c, n, math.prod(out_shape)))
        i = _transpose(_V(indices, x.names[:-1]), keep + others)
        lead = i.shape[:len(keep)]
        i = i.reshape(lead + (c,)).astype(jnp.int32)
        i = jnp.where((i >= 0) & (i < n), i, n)  # jnp.take would wrap a negative index; n picks the zero fill
        if c <= _MAX_GATHER_SLOTS:
            y = _gather_rows_sum(blocks, i)
        else:  # one gather over all slots, row j * n + i of the stacked blocks
            offsets = (jnp.arange(c, dtype=jnp.int32) * n).reshape((1,) * len(lead) + (c,))
            flat = jnp.where(i < n, offsets + i, c * n)
            y = jnp.take(blocks.reshape((c * n, -1)), flat, axis=0, mode="fill", fill_value=0).sum(axis=-2)
        return y.reshape(lead + out_shape)

    def op_dot(self, d, b, index, prefix, ins, ctx):
        x, y = ins
        over = set(b.attr("over"))
        names = ctx.order([n for n in _union(ins) if n not in over])
        return [_V(_einsum([(x.a, x.names), (y.a, y.names)], names), names)]

    def op_einsum(self, d, b, index, prefix, ins, ctx):
        present = _union(ins)
        names = ctx.order([n for n in ctx.batch if n in present] + list(b.attr("result")))
        return [_V(_einsum([(v.a, v.names) for v in ins], names), names)]

    # -- along axes
    def op_sum(self, d, b, index, prefix, ins, ctx):
        return self._reduce(d, b, ins)

    op_mean = op_max = op_min = op_logsumexp = op_sum

    def _reduce(self, d, b, ins):
        (x,) = ins
        over = b.attr("over")
        out_t = self._out_type(d, b)
        a = x.a.astype(_DTYPES[out_t.dtype])
        axis = tuple(x.names.index(n) for n in over)
        return [_V(_REDUCE[b.op](a, axis=axis), tuple(n for n in x.names if n not in over))]

    def op_softmax(self, d, b, index, prefix, ins, ctx):
        (x,) = ins
        axis = tuple(x.names.index(n) for n in b.attr("over"))
        fn = jax.nn.softmax if b.op == "softmax" else jax.nn.log_softmax
        return [_V(fn(x.a, axis=axis), x.names)]

    op_log_softmax = op_softmax

    def op_layernorm(self, d, b, index, prefix, ins, ctx):
        (x,) = ins
        over = b.attr("over")
        axis = tuple(x.names.index(n) for n in over)
        eps = b.attr("eps")
        if b.op == "layernorm":
            mean = jnp.mean(x.a, axis=axis, keepdims=True)
            xc = x.a - mean
            y = xc * lax.rsqrt(jnp.mean(jnp.square(xc), axis=axis, keepdims=True) + eps)
        else:
            y = x.a * lax.rsqrt(jnp.mean(jnp.square(x.a), axis=axis, keepdims=True) + eps)
        y = y * _align(_V(self._weight(prefix, b, "scale"), over), x.names)
        if b.op == "layernorm":
            y = y + _align(_V(self._weight(prefix, b, "bias"), over), x.names)
        return [_V(y, x.names)]

    op_rmsnorm = op_layernorm

    def op_argmax(self, d, b, index, prefix, ins, ctx):
        (x,) = ins
        (a,) = b.attr("over")
        i = x.names.index(a)
        return [_V(jnp.argmax(x.a, axis=i).astype(jnp.int32), x.names[:i] + x.names[i + 1:])]

    def op_causal(self, d, b, index, prefix, ins, ctx):
        (x,) = ins
        qi = lax.broadcasted_iota(jnp.int32, x.a.shape, x.names.index(b.attr("q")))
        ki = lax.broadcasted_iota(jnp.int32, x.a.shape, x.names.index(b.attr("k")))
        return [_V(jnp.where(ki > qi, -jnp.inf, x.a), x.names)]

    # -- indices
    def op_onehot(self, d, b, index, prefix, ins, ctx):
        (i,) = ins
        a = b.attr("axis")
        n = self.sizes(self._out_type(d, b).axis(a).size)
        if not self.plan.onehot_gather:
            return [_V(jax.nn.one_hot(i.a, n, dtype=jnp.float32), i.names + (a,))]
        return [_V(None, i.names + (a,), hot=(i.a, n))]  # lazy: see _V

    def op_embed(self, d, b, index, prefix, ins, ctx):
        (i,) = ins
        w = self._weight(prefix, b, "W")
        return [_V(jnp.take(w, i.a, axis=0), i.names + tuple(b.attr("out_axes")))]

    def op_gather(self, d, b, index, prefix, ins, ctx):
        x, i = ins
        along = b.attr("along")
        shared = [n for n in x.names if n != along and n in i.names]
        x_only = [n for n in x.names if n != along and n not in i.names]
        i_only = [n for n in i.names if n not in x.names]
        xa = _transpose(x, shared + x_only + [along])
        ia = _transpose(i, shared + i_only)
        lead = xa.shape[:len(shared)]
        s = math.prod(lead)
        xa = xa.reshape((s,) + xa.shape[len(shared):])
        ia = ia.reshape((s,) + ia.shape[len(shared):])
        y = jax.vmap(lambda xx, jj: jnp.take(xx, jj, axis=-1))(xa, ia)
        y = y.reshape(lead + y.shape[1:])
        names = tuple(shared + x_only + i_only)
        v = _V(y, names)
        order = ctx.order(names)
        return [_V(_transpose(v, order), order)]

    def op_take(self, d, b, index, prefix, ins, ctx):
        (x,) = ins
        a = b.attr("axis")
        i = x.names.index(a)
        k = b.attr("index")
        if k < 0:
            k += x.a.shape[i]
        return [_V(lax.index_in_dim(x.a, k, axis=i, keepdims=False), x.names[:i] + x.names[i + 1:])]

    # -- shape
    def op_rename(self, d, b, index, prefix, ins, ctx):
        (x,) = ins
        table = dict(zip(b.attr("src"), b.attr("dst")))
        return [_V(x.a, tuple(table.get(n, n) for n in x.names))]

    def op_merge(self, d, b, index, prefix, ins, ctx):
        (x,) = ins
        src, dst = list(b.attr("src")), b.attr("dst")
        first = min(x.names.index(n) for n in src)
        before = [n for n in x.names[:first] if n not in src]
        after = [n for n in x.names[first:] if n not in src]
        a = _transpose(x, before + src + after)
        shape = a.shape
        nb = len(before)
        merged = math.prod(shape[nb:nb + len(src)])
        a = a.reshape(shape[:nb] + (merged,) + shape[nb + len(src):])
        return [_V(a, tuple(before) + (dst,) + tuple(after))]

    def op_split(self, d, b, index, prefix, ins, ctx):
        (x,) = ins
        src, dst = b.attr("src"), b.attr("dst")
        i = x.names.index(src)
        t = self._out_type(d, b)
        parts = tuple(self.sizes(t.axis(n).size) for n in dst)
        a = x.a.reshape(x.a.shape[:i] + parts + x.a.shape[i + 1:])
        return [_V(a, x.names[:i] + tuple(dst) + x.names[i + 1:])]

    def op_stack(self, d, b, index, prefix, ins, ctx):
        if all(v.hot is not None for v in ins) and len({(v.names[-1], v.hot[1]) for v in ins}) == 1:
            # one-hots of one axis stack as their indices, and stay lazy
            axis, n = ins[0].names[-1], ins[0].hot[1]
            (idx,) = self.op_stack(d, b, index, prefix, [_V(v.hot[0], v.names[:-1]) for v in ins], ctx)
            return [_V(None, idx.names + (axis,), hot=(idx.a, n))]
        names = list(ctx.order(_union(ins)))
        sizes = _sizes_of(ins)
        pos = sum(1 for n in names if n in ctx.batch)  # the new axis goes right after the batch axes
        arrays = [_full(v, names, sizes) for v in ins]
        return [_V(jnp.stack(arrays, axis=pos), tuple(names[:pos]) + (b.attr("along"),) + tuple(names[pos:]))]

    def op_concat(self, d, b, index, prefix, ins, ctx):
        along, dst = b.attr("along"), b.attr("dst")
        renamed = [_V(v.a, tuple(dst if n == a else n for n in v.names)) for v, a in zip(ins, along)]
        rest = list(ctx.order([n for n in _union(renamed) if n != dst]))
        pos = sum(1 for n in rest if n in ctx.batch)
        names = rest[:pos] + [dst] + rest[pos:]
        sizes = _sizes_of(renamed)
        arrays = []
        for v in renamed:
            sizes[dst] = v.size(dst)
            arrays.append(_full(v, names, sizes))
        return [_V(jnp.concatenate(arrays, axis=pos), tuple(names))]

    # -- convolution and pooling
    def op_conv(self, d, b, index, prefix, ins, ctx):
        (x,) = ins
        over, out_over = list(b.attr("over")), list(b.attr("out_over"))
        cin, cout = b.attr("cin"), b.attr("cout")
        others = [n for n in x.names if n not in over and n != cin]
        a = _transpose(x, others + over + [cin])
        lead = a.shape[:len(others)]
        nd = len(over)
        a = a.reshape((math.prod(lead),) + a.shape[len(others):])
        w = self._weight(prefix, b, "W")
        spatial = tuple(range(1, nd + 1))
        dn = lax.ConvDimensionNumbers(lhs_spec=(0, nd + 1) + spatial, rhs_spec=(nd + 1, nd) + tuple(range(nd)),
                                      out_spec=(0, nd + 1) + spatial)
        y = lax.conv_general_dilated(a, w, window_strides=tuple(b.attr("stride")),
                                     padding=b.attr("padding").upper(), dimension_numbers=dn)
        y = y.reshape(lead + y.shape[1:])
        names = tuple(others + out_over + [cout])
        if b.attr("bias"):
            y = y + _align(_V(self._weight(prefix, b, "b"), (cout,)), names)
        return [_V(y, names)]

    def op_pool(self, d, b, index, prefix, ins, ctx):
        (x,) = ins
        over = list(b.attr("over"))
        table = dict(zip(over, b.attr("out_over")))
        window = dict(zip(over, b.attr("window")))
        stride = dict(zip(over, b.attr("stride")))
        dims = tuple(window.get(n, 1) for n in x.names)
        strides = tuple(stride.get(n, 1) for n in x.names)
        if b.attr("op") == "max":
            y = lax.reduce_window(x.a, -jnp.inf, lax.max, dims, strides, "VALID")
        else:
            y = lax.reduce_window(x.a, 0.0, lax.add, dims, strides, "VALID") / math.prod(dims)
        return [_V(y, tuple(table.get(n, n) for n in x.names))]

    def op_dropout(self, d, b, index, prefix, ins, ctx):
        (x,) = ins
        rate = b.attr("rate")
        if not ctx.training or rate == 0.0 or ctx.key is None:
            return [x]
        keep = 1.0 - rate
        mask = jax.random.bernoulli(jax.random.fold_in(ctx.key, index), keep, x.a.shape)
        return [_V(jnp.where(mask, x.a / keep, 0.0), x.names)]

    # -- nested diagrams
    def _enter(self, d: Diagram, b: Box, ctx: _Ctx, ins: list[_V]):
        """Internal names for the axes a call or scan is broadcast over (callee names can never clash)."""
        table = {n: f"#{n}@{len(ctx.batch) + j}" for j, n in enumerate(b.attr("batch", ()))}
        sizes = {}
        for i in range(len(b.outputs)):
            t = self._out_type(d, b, i)
            for n in table:
                a = t.axis(n)
                if a is not None:
                    sizes[table[n]] = self.sizes(a.size)
        ins = [_V(v.a, tuple(table.get(n, n) for n in v.names)) for v in ins]
        back = {v: k for k, v in table.items()}
        return ins, sizes, back

    @staticmethod
    def _leave(vs: list[_V], back: dict[str, str]) -> list[_V]:
        return [_V(v.a, tuple(back.get(n, n) for n in v.names)) for v in vs]

    def op_call(self, d, b, index, prefix, ins, ctx, req):
        ins, extra, back = self._enter(d, b, ctx, ins)
        inner = ctx.child(index, extra)
        outs, caps = self.run(b.body, f"{prefix}{b.name}.", ins, inner, req)
        return self._leave(outs, back), caps

    def _carry_names(self, d, b, ctx, ins, outs_idx, extra_sizes):
        """Names (batch axes first) and sizes of each carried value: its type plus every batch axis of the inputs."""
        present = set(_union(ins))
        lead = [n for n in ctx.batch if n in present]
        sizes = dict(extra_sizes)
        sizes.update(_sizes_of(ins))
        out = []
        for i in outs_idx:
            t = self._out_type(d, b, i)
            sizes.update(zip(t.names, self.sizes.shape(t)))
            out.append((tuple(lead) + tuple(n for n in t.names if n not in lead), t.dtype))
        return out, sizes

    def op_repeat(self, d, b, index, prefix, ins, ctx, req):
        n_carry = b.attr("carried")
        count = self.sizes(b.attr("count"))
        carry_spec, sizes = self._carry_names(d, b, ctx, ins, range(n_carry), {})
        init = tuple(_full(v, names, sizes).astype(_DTYPES[dt]) for v, (names, dt) in zip(ins, carry_spec))
        captured = ins[n_carry:]
        own = f"{prefix}{b.name}."
        stacked = {k: v for k, v in self.weights.items() if k.startswith(own)}
        cap_names: dict[str, tuple] = {}

        def body(carry, xs):
            w, i = xs
            runner = _Runner(self.plan, {**self.weights, **w})
            vals = [_V(a, names) for a, (names, _) in zip(carry, carry_spec)] + list(captured)
            inner = ctx.child(index, step=i)
            outs, caps = runner.run(b.body, own, vals, inner, req)
            new = tuple(_full(v, names, sizes).astype(_DTYPES[dt]) for v, (names, dt) in zip(outs, carry_spec))
            for k, (_, names) in caps.items():
                cap_names[k] = names
            return new, {k: a for k, (a, _) in caps.items()}

        final, caps = lax.scan(body, init, (stacked, jnp.arange(count)))
        outs = [_V(a, names) for a, (names, _) in zip(final, carry_spec)]
        axis = f"#{b.name}#copy"
        return outs, {k: (a, (axis,) + cap_names[k]) for k, a in caps.items()}

    def op_scan(self, d, b, index, prefix, ins, ctx, req):
        n_state, n_xs = b.attr("n_state"), b.attr("n_xs")
        along = b.attr("along")
        length = self.sizes(b.attr("length"))
        ins, extra, back = self._enter(d, b, ctx, ins)
        inner_batch = ctx.batch + tuple(extra)
        probe = _Ctx(inner_batch, {**ctx.sizes, **extra}, ctx.training, None)
        states, xs, consts = ins[:n_state], ins[n_state:n_state + n_xs], ins[n_state + n_xs:]
        # the state carries every batch axis of any input: a step's result can depend on all of them
        present = set(_union(ins))
        lead = [n for n in inner_batch if n in present]
        sizes = {**extra, **_sizes_of(ins)}
        state_spec = []
        for i in range(n_state):
            t = self._out_type(d, b, i)
            own = [n for n in t.names if n not in b.attr("batch", ())]
            sizes.update(zip(t.names, self.sizes.shape(t)))
            state_spec.append((tuple(lead) + tuple(own), t.dtype))
        init = tuple(_full(v, names, sizes).astype(_DTYPES[dt]) for v, (names, dt) in zip(states, state_spec))
        x_names = [probe.order([n for n in v.names if n != along]) for v in xs]
        x_arrays = tuple(_transpose(v, (along,) + names) for v, names in zip(xs, x_names))
        y_names: list[tuple] = []
        cap_names: dict[str, tuple] = {}
        own = f"{prefix}{b.name}."

        def body(carry, step):
            xs_t, i = step
            vals = ([_V(a, names) for a, (names, _) in zip(carry, state_spec)]
                    + [_V(a, names) for a, names in zip(xs_t, x_names)] + list(consts))
            inner = ctx.child(index, extra, step=i)
            outs, caps = self.run(b.body, own, vals, inner, req)
            new = tuple(_full(v, names, sizes).astype(_DTYPES[dt])
                        for v, (names, dt) in zip(outs[:n_state], state_spec))
            ys = []
            y_names.clear()
            for v in outs[n_state:]:
                names = inner.order(v.names)
                ys.append(_transpose(v, names))
                y_names.append(names)
            for k, (_, names) in caps.items():
                cap_names[k] = names
            return new, (tuple(ys), {k: a for k, (a, _) in caps.items()})

        if self.plan.remat:
            body = jax.checkpoint(body)
        final, (ys, caps) = lax.scan(body, init, (x_arrays, jnp.arange(length)), length=length)
        outs = [_V(a, names) for a, (names, _) in zip(final, state_spec)]
        for a, names in zip(ys, y_names):
            v = _V(a, (along,) + names)
            order = probe.order(v.names)
            outs.append(_V(_transpose(v, order), order))
        axis = f"#{b.name}#step"
        return self._leave(outs, back), {k: (a, (axis,) + cap_names[k]) for k, a in caps.items()}
