"""Backend flax: compile time (sizes, weights, initialisers), the `nnx.Module` and its inputs and outputs."""
from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ... import bounds, limits
from ...bounds import DEFAULT_MAX_WEIGHT_ELEMENTS
from ...bounds import diagrams as _diagrams
from ...errors import InvalidArgument, SizeConflict, SizeTooLarge, UnknownName
from ...ir import Box, Diagram, Init, Size, TensorType, TupleType, Weight
from .runner import _Runner
from .values import _DTYPES, _V, _Ctx, _full

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
    copies: tuple[tuple[str, Size], ...]  # enclosing repeats and dispatches, outermost first: (axis name, count)
    box: Box


def _walk_weights(d: Diagram, prefix: str = "", copies: tuple = ()) -> Iterable[tuple[str, Weight, tuple, Box]]:
    # the same order as Diagram.weights(), plus the repeat counts one by one and the owning box
    for b in d.boxes:
        for w in b.weights:
            yield f"{prefix}{b.name}" + (f".{w.name}" if w.name else ""), w, copies, b
        if b.body is not None:
            inner = copies
            if b.op == "repeat":  # its copies stack on an axis named after it
                inner = copies + ((f"{prefix}{b.name}#copy", b.attr("count")),)
            elif b.op == "dispatch":  # the experts stack on the axis they are chosen along
                inner = copies + ((b.attr("along"), b.attr("count")),)
            yield from _walk_weights(b.body, f"{prefix}{b.name}.", inner)


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
            owner = _axis_parameter_owner(d, name)
            raise UnknownName(f"{d.name} has no axis {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""),
                              d.span, hint=(f"{name} is an axis parameter of {owner}, set where it is called: "
                                            f"{owner}[{name} = {value}](...)") if owner else
                              ("its free axes: " + ", ".join(sorted(free))) if free
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
                owner = _axis_parameter_owner(d, name)
                raise SizeConflict(f"axis {name} is fixed at {min(fixed)} by the program; it cannot be compiled "
                                   f"with {name}={value}", d.span,
                                   hint=(f"{name} is an axis parameter of {owner}, set where it is called: "
                                         f"{owner}[{name} = {value}](...)" if owner else
                                         f"compile binds free sizes only; to change a declared size, check the "
                                         f"program again with it: program.with_sizes({name}={value})[{d.name!r}]")
                                   + (" (free axes: " + ", ".join(sorted(free)) + ")" if free else ""))
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
                if n > limits.MAX_INDEX:
                    raise SizeTooLarge(f"axis {a.name} = {a.size} evaluates to {n:,} in {x.name}, over the limit of "
                                       f"{limits.MAX_INDEX:,} (limits.MAX_INDEX)", x.span)
        for b in x.boxes:
            for key in ("count", "length"):
                s = b.attr(key)
                if isinstance(s, Size) and sizes(s) < 1:
                    raise SizeConflict(f"{b.op} {b.name} runs {sizes(s)} times; it needs at least 1", b.span)
                if isinstance(s, Size) and sizes(s) > limits.MAX_STEPS:
                    raise SizeTooLarge(f"{b.op} {b.name} runs {sizes(s):,} steps, over the limit of "
                                       f"{limits.MAX_STEPS:,} (limits.MAX_STEPS)", b.span)
    # what the checker could only compare symbolically (requirements, merge and split) must hold as numbers
    bounds.raise_first(d, bindings)
    return sizes


def _axis_parameter_owner(d: Diagram, name: str) -> str | None:
    """The circuit called in `d` that has an axis parameter `name`, if any (for a hint)."""
    for x in _diagrams(d):
        if x is not d and any(k == name for k, _ in x.axis_args):
            return x.name
    return None


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
        self.source = diagram  # the diagram as checked; `diagram` is what runs, after the passes (see passes/)
        self.rewrites: tuple = ()  # what the passes did (passes.Rewrite)
        self.layout = None  # a sharding.Layout when compiled onto a mesh

    def __repr__(self) -> str:
        return f"<plan {self.diagram.name} {self.sizes.bindings}>"


# ---------------------------------------------------------------- initialisers


def _fan(w: Weight, names: Sequence[str], sizes: _Sizes) -> int:
    by_name = {a.name: sizes(a.size) for a in w.type.axes}
    return math.prod(by_name[n] for n in names if n in by_name)


def _recipe(w: Weight, copies: tuple[int, ...], sizes: _Sizes) -> tuple:
    """How one weight is drawn, as a hashable `(kind, shape, a, b)`: kind is zeros, ones, normal (std a),
    truncated (a normal cut at 2 std, scaled by a), uniform (a to b), or expr (an initialiser expression)."""
    shape = copies + sizes.shape(w.type)
    init: Init = w.init
    kind = init.kind
    if kind in ("zeros", "ones", "expr"):
        return kind, shape, 0.0, 0.0
    if kind == "normal":
        return "normal", shape, float(init.args[0]), 0.0
    if kind == "uniform":
        return "uniform", shape, float(init.args[0]), float(init.args[1])
    if kind == "lecun":
        fan_in = max(_fan(w, init.fan_in, sizes), 1)
        return "truncated", shape, math.sqrt(1.0 / fan_in) / _TRUNC_STD, 0.0
    if kind == "glorot":
        fan_in = max(_fan(w, init.fan_in, sizes), 1)
        fan_out = max(_fan(w, init.fan_out, sizes), 1) if init.fan_out else fan_in
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return "uniform", shape, -limit, limit
    if kind == "embed":
        return "normal", shape, 1.0 / math.sqrt(max(_fan(w, init.fan_out, sizes), 1)), 0.0
    raise InvalidArgument(f"the flax backend does not know the initialiser {kind!r}")


def _draw(key, recipe: tuple) -> jax.Array:
    """One weight's values from its key and recipe (traced once per recipe inside `_init_all`)."""
    kind, shape, a, b = recipe
    if kind in ("zeros", "ones"):
        return (jnp.zeros if kind == "zeros" else jnp.ones)(shape, jnp.float32)
    if kind == "normal":
        return a * jax.random.normal(key, shape, jnp.float32)
    if kind == "truncated":
        return a * jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)
    return jax.random.uniform(key, shape, jnp.float32, minval=a, maxval=b)


def _init_all(key, count, recipes: tuple):
    """Every weight of a module in one compiled program.

    Weight j gets `fold_in(key, count + j)`, the key the j-th call of the
    `params` stream would give, so the values are those of drawing the
    weights one by one (`_init_weight`), up to the last bit of a float32
    where XLA fuses differently; the stream's next count comes back with
    them. Compiling one program per model, instead of one per initialiser,
    shape and scale, is what makes `compile` fast (benchmarks/compile_time.py).

    Random bits cost XLA the most to compile (threefry, once per drawn
    array), so weights of one distribution are drawn together: `vmap` over
    their keys, each row as long as the largest (a draw of n values is the
    first n of a longer one, laid out row-major), then cut, reshaped and
    scaled. `_draw_groups` puts weights of very different sizes in separate
    draws: padding adds at most a tenth to the work of a large draw.
    Initialiser expressions are left as None (run outside).
    """
    out: list = [None] * len(recipes)
    for j, (kind, shape, _, _) in enumerate(recipes):
        if kind in ("zeros", "ones"):
            out[j] = _draw(None, recipes[j])
    for (kind, a, b), members in _draw_groups(recipes):
        length = max(math.prod(recipes[j][1]) for j in members)
        counts = count + jnp.asarray(members, jnp.uint32)
        draw = (kind, (length,), a, b)
        rows = jax.vmap(lambda c, draw=draw: _draw(jax.random.fold_in(key, c), draw))(counts)
        for r, j in enumerate(members):
            _, shape, scale, _ = recipes[j]
            value = rows[r, :math.prod(shape)].reshape(shape)
            out[j] = value if kind == "uniform" else scale * value
    return out, count + len(recipes)


_SMALL_DRAW = 1 << 20  # elements a group of draws may pad to without regard to waste
_PAD_LIMIT = 1.1  # beyond that, the elements a group draws over the elements its weights hold


def _draw_groups(recipes: tuple) -> list[tuple[tuple, list[int]]]:
    """Weights drawn together: ((kind, a, b) of one standard draw, their indices), smallest first.

    Normal and truncated weights share a draw of scale 1 (scaled afterwards,
    as `a * normal(...)` is); uniform ones share a draw only with the same
    bounds. Within a kind, a weight joins the draw of the smaller ones
    unless padding them all to its size would draw more than `_PAD_LIMIT`
    times the elements they hold (small draws always share: a draw of its
    own costs more to compile than padding costs to run).
    """
    kinds: dict[tuple, list[tuple[int, int]]] = {}
    for j, (kind, shape, a, b) in enumerate(recipes):
        if kind in ("normal", "truncated"):
            kinds.setdefault((kind, 1.0, 0.0), []).append((math.prod(shape), j))
        elif kind == "uniform":
            kinds.setdefault((kind, a, b), []).append((math.prod(shape), j))
    groups = []
    for family, members in kinds.items():
        bucket: list[tuple[int, int]] = []
        for n, j in sorted(members):
            padded = n * (len(bucket) + 1)
            if bucket and padded > _SMALL_DRAW and padded > _PAD_LIMIT * (n + sum(m for m, _ in bucket)):
                groups.append((family, sorted(i for _, i in bucket)))
                bucket = []
            bucket.append((n, j))
        groups.append((family, sorted(i for _, i in bucket)))
    return groups


# Unoptimised XLA code compiles a draw about 4x faster (0.1 s against 0.35 s) and runs it about 3x slower
# (20 against 60 million numbers a second): the optimised program pays off past some 8 million numbers a draw.
_QUICK_PER_DRAW = 1 << 23
_init_quick = jax.jit(_init_all, static_argnums=(2,), compiler_options={"xla_backend_optimization_level": 0})
_init_optimised = jax.jit(_init_all, static_argnums=(2,))


def _init_weight(key, w: Weight, copies: tuple[int, ...], sizes: _Sizes) -> jax.Array:
    """One weight on its own (the path for a `params` stream of split keys): eager, one small compiled
    program per (initialiser, shape, scale)."""
    recipe = _recipe(w, copies, sizes)
    kind, shape = recipe[:2]
    if kind == "expr":
        return _init_expression(w, shape, sizes)
    if kind in ("zeros", "ones"):
        return _draw(None, recipe)
    return _sample(key, *recipe)


def _init_expression(w: Weight, shape: tuple[int, ...], sizes: _Sizes) -> jax.Array:
    """An initialiser expression (v1): its diagram run once, made float32 and broadcast to the weight's
    axes (and to every copy of an enclosing repeat)."""
    expr = w.init.expr
    ctx = _Ctx(batch=(), sizes={}, training=False, key=None)
    (v,), _ = _Runner(_Plan(expr, sizes, []), {}).run(expr, "", [], ctx, None)
    names = w.type.names
    value = _full(v, names, dict(zip(names, sizes.shape(w.type)))).astype(jnp.float32)
    return jnp.broadcast_to(value, shape)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _sample(key, kind: str, shape: tuple[int, ...], a: float, b: float):
    return _draw(key, (kind, shape, a, b))


INIT_IN_ONE_PROGRAM = True  # False: draw each weight eagerly, as before (benchmarks/compile_time.py compares)


def _initial_values(plan: _Plan, rngs: nnx.Rngs) -> list[jax.Array]:
    """The starting value of every weight in `plan.weights`, drawn from the `params` stream (or `default`)."""
    if not plan.weights:
        return []
    recipes = tuple(_recipe(spec.weight, tuple(plan.sizes(c) for _, c in spec.copies), plan.sizes)
                    for spec in plan.weights)
    stream = rngs.params
    if plan.layout is not None:  # drawn straight onto the mesh
        from .sharding import initial_values

        return initial_values(plan, stream, recipes)
    key, count = stream.key[...], stream.count[...]
    if INIT_IN_ONE_PROGRAM and key.shape == () and count.shape == ():
        total = sum(math.prod(r[1]) for r in recipes)
        # inside a trace (nnx.eval_shape, a jit around compile) the program is part of the outer one
        quick = (total <= _QUICK_PER_DRAW * max(len(_draw_groups(recipes)), 1)
                 and not isinstance(key, jax.core.Tracer))
        values, stream.count[...] = (_init_quick if quick else _init_optimised)(key, count, recipes)
    else:
        values = [_init_weight(stream(), spec.weight, recipe[1][:len(spec.copies)], plan.sizes)
                  for spec, recipe in zip(plan.weights, recipes)]
    exprs = [j for j, value in enumerate(values) if value is None]
    if exprs:  # initialiser expressions, all in one more compiled program (op by op, each op compiled once)
        made = jax.jit(lambda: [_init_expression(plan.weights[j].weight, recipes[j][1], plan.sizes) for j in exprs])()
        values = list(values)
        for j, value in zip(exprs, made):
            values[j] = value
    return list(values)


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
        for spec, value in zip(plan.weights, _initial_values(plan, rngs)):
            axes = tuple(name for name, _ in spec.copies) + spec.weight.type.names
            node = self
            for part in spec.path[:-1]:
                child = getattr(node, part, None)
                if child is None:
                    child = _Node()
                    setattr(node, part, child)
                node = child
            kind = nnx.BatchStat if spec.weight.state else nnx.Param  # running statistics are state, not trained
            setattr(node, spec.path[-1], kind(value, axes=axes))

    # -- introspection
    @property
    def diagram(self) -> Diagram:
        """The IR this module was compiled from (as checked, before the optimisation passes)."""
        return self._plan.source

    @property
    def sizes(self) -> dict[str, int]:
        """The sizes bound at compile time."""
        return dict(self._plan.sizes.bindings)

    def weight(self, dotted: str) -> nnx.Param | nnx.BatchStat:
        """The `nnx.Param` at the IR's dotted name, e.g. `model.weight("attention.q.W")`.

        State is read the same way: `model.weight("bn1.running_mean")` is an `nnx.BatchStat`.
        """
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
        # captured wires are read from the diagram as checked: a pass may narrow or fuse the wires it rewrites
        d = plan.diagram if capture is None else plan.source
        request = _parse_capture(d, capture) if capture is not None else None
        if len(inputs) != len(d.inputs):
            names = ", ".join(f"{p.name}: {p.type}" for p in d.inputs)
            raise TypeError(f"{d.name} takes {len(d.inputs)} input{'s' if len(d.inputs) != 1 else ''} ({names}), "
                            f"got {len(inputs)}")
        leaves: list[tuple[str, TensorType, Any]] = []
        for port, value in zip(d.inputs, inputs):
            _flatten_input(port.name, port.type, value, leaves)
        values, batch, batch_sizes = _bind_batch(d.name, leaves, plan.sizes)
        if plan.layout is not None:
            values = plan.layout.place_inputs(values)
        weights = {spec.dotted: self._param(spec)[...] for spec in plan.weights}
        training = not self.deterministic
        key = self._dropout_rngs() if plan.has_dropout and training else None
        ctx = _Ctx(batch=batch, sizes=batch_sizes, training=training, key=key)
        runner = _Runner(plan, weights)
        outs, caps = runner.run(d, "", values, ctx, request)
        if runner.updates:  # batchnorm in training: its new running statistics
            by_name = {spec.dotted: spec for spec in plan.weights}
            for dotted, value in runner.updates.items():
                self._param(by_name[dotted])[...] = value
        it = iter(outs)
        result = _rebuild(d.output.type, it, batch, batch_sizes, plan.sizes)
        if plan.layout is not None and isinstance(d.output.type, TensorType):
            result = plan.layout.place_output(result, tuple(batch) + d.output.type.names)
        if capture is None:
            return result
        return result, {name: caps[name][0] for name in request.order}


_RESERVED = frozenset(dir(CompiledCircuit)) | frozenset(dir(_Node)) | {"deterministic"}


def compile_diagram(diagram: Diagram, *, rngs: nnx.Rngs | int,
                    max_weight_elements: int = DEFAULT_MAX_WEIGHT_ELEMENTS, max_parameters: int | None = None,
                    remat: bool = False, onehot_gather: bool = True, mesh: Any = None,
                    shard: dict[str, Any] | None = None, batch: Any = None, passes: Any = None,
                    **axis_sizes: int) -> CompiledCircuit:
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
        mesh: a `jax.sharding.Mesh` to create the weights on and run over (auto or explicit
            axes); see `backends/flax/sharding.py` and docs/sharding.md.
        shard: with `mesh`, axis name -> mesh axis (or tuple of them), e.g.
            `{"heads": "model", "mlp": "model"}`; checked before anything is allocated.
        batch: with `mesh`, the mesh axis (or tuple) the leading batch axis is split over.
        passes: which optimisation passes rewrite the IR before it is lowered (`diagrammar.passes`):
            None or True runs all, False none, `{"fuse_siblings": False}` all but one. Weights,
            their names and checkpoints are the same whichever run; results agree to float rounding.
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
        from ..cost import check_budget  # reads the IR only, like this backend

        check_budget(diagram, max_parameters, sizes.bindings)
    specs = []
    for dotted, w, copies, box in _walk_weights(diagram):
        per_copy = math.prod(sizes.shape(w.type))
        n_copies = math.prod(sizes(c) for _, c in copies)
        what = bounds.over_budget(per_copy, n_copies, max_weight_elements)  # the checker's rule, here with free sizes
        if what is not None:
            raise SizeTooLarge(f"weight {dotted} {w.type} has {what}, over the budget of {max_weight_elements:,}; "
                               "nothing was allocated", box.span,
                               hint="bind smaller sizes, or raise max_weight_elements")
        specs.append(_WeightSpec(dotted, tuple(_mangle(p) for p in dotted.split(".")), w, copies, box))
    from ...passes import optimise  # reads and writes the IR only

    runnable, rewrites = optimise(diagram, sizes.bindings, passes)
    plan = _Plan(runnable, sizes, specs, remat=bool(remat), onehot_gather=bool(onehot_gather))
    plan.source, plan.rewrites = diagram, rewrites
    if mesh is not None:
        from .sharding import make_layout  # validates the mapping first: span errors, nothing allocated

        plan.layout = make_layout(diagram, mesh, shard, batch, sizes.bindings)
    elif shard or batch is not None:
        raise InvalidArgument("shard= and batch= need a mesh: compile(..., mesh=jax.make_mesh(...))", diagram.span)
    return CompiledCircuit(plan, rngs)


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


def _check_int32_input(circuit: str, name: str, t, value) -> None:
    """Refuse host indices that int32 cannot hold (int64 values of 2**31 and above would wrap)."""
    import numpy as np

    host = np.asarray(value)
    if host.dtype.kind not in "iu" or host.size == 0:
        return
    low, high = bounds.INT32
    if host.min() < low or host.max() > high:
        bad = host.max() if host.max() > high else host.min()
        raise ValueError(f"{circuit}'s input {name} is {t}: its indices are int32, from {low:,} to {high:,}; got "
                         f"{int(bad):,}")


def _bind_batch(circuit: str, leaves, sizes: _Sizes):
    """Inputs as named values; leading extra axes become the batch axes `#0`, `#1`, ... (aligned on the right)."""
    arrays = []
    for name, t, value in leaves:
        if t.dtype == "int" and not isinstance(value, jax.Array):
            _check_int32_input(circuit, name, t, value)  # before jnp.asarray, which would wrap int64 silently
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
