"""Check stage: a mapping of named axes onto mesh axes, validated against the IR before anything is allocated.

`compile(..., mesh=, shard={"heads": "model"}, batch="data")` and
`diagrammar stats --mesh ... --shard ...` both call `validate` first. It reads
the IR and the mesh's axis names and sizes only (no jax), so the cost backend
and the checker can use it too. Every problem is a span error: the circuit's
header for a name that does not exist, the box that makes the weight or wire
for a mesh axis used twice in one tensor or a size that does not split evenly.

The rules, which the flax backend applies and the cost backend counts:
  - a weight's axis `a` lives split over `shard[a]` (a tuple of mesh axes);
    a `repeat`'s stacked copies are the axis `<repeat's dotted name>#copy`;
  - a wire's axis `a` likewise, except that the leading batch axis takes the
    `batch` mesh axes first: an axis mapped onto a mesh axis the batch already
    uses stays whole on that wire (so `shard={"d": "data"}` with
    `batch="data"` splits the weights over `data` and the examples over
    `data`: fully sharded data parallelism);
  - a tensor may use a mesh axis once; every split axis must divide evenly.
"""
from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ..bounds import diagrams
from ..errors import CircuitError, InvalidArgument, SizeConflict, UnknownName
from ..ir import Box, Diagram, Size, Weight

COPY_SUFFIX = "#copy"  # a repeat's stacked copy axis: "<dotted repeat name>#copy"


@dataclass(frozen=True)
class ShardMap:
    """A validated mapping: axis name -> mesh axes, the batch's mesh axes and the mesh's sizes."""

    shard: tuple[tuple[str, tuple[str, ...]], ...]
    batch: tuple[str, ...]
    mesh: tuple[tuple[str, int], ...]  # mesh axis -> size, in the mesh's order

    @property
    def axes(self) -> dict[str, tuple[str, ...]]:
        return dict(self.shard)

    @property
    def mesh_sizes(self) -> dict[str, int]:
        return dict(self.mesh)

    def devices(self, mesh_axes: tuple[str, ...]) -> int:
        """How many pieces an axis split over `mesh_axes` is cut into."""
        sizes = self.mesh_sizes
        return math.prod(sizes[m] for m in mesh_axes)

    def weight_axes(self, names: tuple[str, ...]) -> tuple[tuple[str, ...] | None, ...]:
        """The mesh axes of each axis of a weight laid out as `names` (None: whole)."""
        axes = self.axes
        return tuple(axes.get(n) for n in names)

    def wire_axes(self, names: tuple[str, ...], batched: tuple[bool, ...] | None = None
                  ) -> tuple[tuple[str, ...] | None, ...]:
        """The mesh axes of each axis of an activation laid out as `names`.

        `batched[i]` marks the leading batch axis (split over `batch`); an axis
        whose mesh axes are already taken by an earlier axis (the batch comes
        first) stays whole.
        """
        axes = self.axes
        used: set[str] = set()
        out: list[tuple[str, ...] | None] = []
        for i, n in enumerate(names):
            want = self.batch if batched is not None and batched[i] else axes.get(n)
            if not want or used & set(want):
                out.append(None)
                continue
            used |= set(want)
            out.append(tuple(want))
        return tuple(out)


def _as_axes(value, what: str, span) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InvalidArgument(f"{what} must be a mesh axis name or a tuple of them, got {value!r}", span)


def _size(size: Size, bindings: Mapping[str, int]) -> int:
    return size.value if size.is_const else int(size.evaluate(dict(bindings)))


def _copy_axes(d: Diagram, prefix: str = "") -> Iterator[tuple[str, Box]]:
    for b in d.boxes:
        if b.op == "repeat":
            yield f"{prefix}{b.name}{COPY_SUFFIX}", b
        if b.body is not None:
            yield from _copy_axes(b.body, f"{prefix}{b.name}.")


def weights_of(d: Diagram, prefix: str = "", copies: tuple = ()) -> Iterator[tuple[str, Weight, tuple, Box]]:
    """(dotted name, the weight, enclosing copy axes as (name, size), owning box) of every weight and state
    array, through `repeat` and `dispatch` copies (the cost backend's communication rules walk the same)."""
    for b in d.boxes:
        for w in b.weights:
            yield f"{prefix}{b.name}" + (f".{w.name}" if w.name else ""), w, copies, b
        if b.body is not None:
            inner = copies
            if b.op == "repeat":
                inner = copies + ((f"{prefix}{b.name}{COPY_SUFFIX}", b.attr("count")),)
            elif b.op == "dispatch":
                inner = copies + ((b.attr("along"), b.attr("count")),)
            yield from weights_of(b.body, f"{prefix}{b.name}.", inner)


def validate(diagram: Diagram, mesh: Mapping[str, int], shard: Mapping[str, object] | None,
             batch: object = None, bindings: Mapping[str, int] | None = None) -> ShardMap:
    """Check a mapping of `diagram`'s axes onto a mesh of the given axis sizes; return it normalised.

    Args:
        diagram: the checked circuit.
        mesh: the mesh's axis names and sizes, in order (`{"data": 4, "model": 2}`).
        shard: axis name -> a mesh axis or a tuple of them.
        batch: the mesh axis (or tuple) the leading batch axis of the inputs is split over.
        bindings: the sizes of the circuit's free axes.

    Raises:
        UnknownName: an axis the circuit does not have, or a mesh axis the mesh does not have.
        InvalidArgument: a mesh axis used twice in one weight or wire.
        SizeConflict: an axis whose size the mesh axes it is split over do not divide.
        Every error found is in the first one's `errors`.
    """
    bindings = dict(bindings or {})
    span = diagram.span
    mesh = {str(k): int(v) for k, v in dict(mesh).items()}
    errors: list[CircuitError] = []
    known: set[str] = set()
    for x in diagrams(diagram):
        for w in x.wires:
            known.update(w.type.names)
        for b in x.boxes:
            for wt in b.weights:
                known.update(wt.type.names)
    known.update(name for name, _ in _copy_axes(diagram))
    mapping: dict[str, tuple[str, ...]] = {}
    listing = ", ".join(f"{k}={v}" for k, v in mesh.items())
    for key, value in dict(shard or {}).items():
        if not isinstance(key, str):
            raise InvalidArgument(f"shard maps axis names to mesh axes; got the key {key!r}", span)
        targets = _as_axes(value, f"shard[{key!r}]", span)
        if key not in known:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            errors.append(UnknownName(
                f"{diagram.name} has no axis {key!r} to shard" + (f"; did you mean {hint[0]!r}?" if hint else ""),
                span, hint="its axes: " + ", ".join(sorted(n for n in known if COPY_SUFFIX not in n))
                + "; a repeat's copies: " + (", ".join(n for n, _ in _copy_axes(diagram)) or "none")))
        for m in targets:
            if m not in mesh:
                errors.append(UnknownName(f"shard maps {key} onto mesh axis {m!r}, which the mesh does not have",
                                          span, hint=f"the mesh's axes: {listing}"))
        if len(set(targets)) != len(targets):
            errors.append(InvalidArgument(f"shard maps {key} onto mesh axis {targets} with one axis twice", span))
        mapping[key] = targets
    batch_axes = _as_axes(batch, "batch", span)
    for m in batch_axes:
        if m not in mesh:
            errors.append(UnknownName(f"batch is split over mesh axis {m!r}, which the mesh does not have", span,
                                      hint=f"the mesh's axes: {listing}"))
    result = ShardMap(tuple(mapping.items()), batch_axes, tuple(mesh.items()))
    if not errors:  # names are good: now every tensor
        errors.extend(_tensor_errors(diagram, result, bindings))
    if errors:
        first = errors[0]
        first.errors = errors
        raise first
    return result


def _tensor_errors(diagram: Diagram, sm: ShardMap, bindings: dict[str, int]) -> list[CircuitError]:
    found: list[CircuitError] = []
    seen: set[tuple] = set()

    def check(what: str, names: tuple[str, ...], sizes: tuple[int, ...], axes, span):
        used: dict[str, str] = {}
        for name, n, mesh_axes in zip(names, sizes, axes):
            if not mesh_axes:
                continue
            for m in mesh_axes:
                if m in used and (what, m) not in seen:
                    seen.add((what, m))
                    found.append(InvalidArgument(
                        f"{what} would be split over mesh axis {m} twice, along {used[m]} and along {name}",
                        span, hint=f"map {used[m]} or {name} onto another mesh axis, or leave one whole"))
                used[m] = name
            k = sm.devices(mesh_axes)
            if n % k and (what, name) not in seen:
                seen.add((what, name))
                found.append(SizeConflict(
                    f"{what}: axis {name} = {n} does not split evenly over mesh axis "
                    + " x ".join(f"{m}={sm.mesh_sizes[m]}" for m in mesh_axes), span,
                    hint=f"choose a mesh whose {'x'.join(mesh_axes)} divides {n}, or leave {name} whole"))

    for dotted, weight, copies, box in weights_of(diagram):
        t = weight.type
        names = tuple(c for c, _ in copies) + t.names
        sizes = tuple(_size(s, bindings) for _, s in copies) + tuple(_size(a.size, bindings) for a in t.axes)
        check(f"weight {dotted} {t}", names, sizes, sm.weight_axes(names), box.span or diagram.span)
    for x in diagrams(diagram):
        made_by = {w: b for b in x.boxes for w in b.outputs}
        for w in x.wires:
            names = w.type.names
            if not any(n in sm.axes for n in names):
                continue
            sizes = tuple(_size(a.size, bindings) for a in w.type.axes)
            box = made_by.get(w.name)
            check(f"wire {w.name} {w.type} in {x.name}", names, sizes, sm.weight_axes(names),
                  (box.span if box is not None else None) or x.span or diagram.span)
    return found


# ---------------------------------------------------------------- the command line (no jax)

_ITEM = re.compile(r"^([A-Za-z_][A-Za-z0-9_#.]*)=(.+)$")


def parse_mesh(text: str) -> dict[str, int]:
    """`--mesh data=4,model=2` -> {"data": 4, "model": 2}; a ValueError saying what is wrong otherwise.

    >>> parse_mesh("data=4,model=2")
    {'data': 4, 'model': 2}
    """
    out: dict[str, int] = {}
    for item in text.split(","):
        m = _ITEM.match(item.strip())
        if not m or not m.group(2).strip().isdigit() or int(m.group(2)) < 1:
            raise ValueError(f"--mesh takes NAME=SIZE pairs separated by commas (data=4,model=2), got {text!r}")
        if m.group(1) in out:
            raise ValueError(f"--mesh names the axis {m.group(1)} twice")
        out[m.group(1)] = int(m.group(2))
    return out


def parse_shard(text: str) -> dict[str, tuple[str, ...]]:
    """`--shard heads=model,mlp=model` -> {"heads": ("model",), "mlp": ("model",)}; `d=data+model` splits d
    over both mesh axes.

    >>> parse_shard("heads=model,d=data+model")
    {'heads': ('model',), 'd': ('data', 'model')}
    """
    out: dict[str, tuple[str, ...]] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        m = _ITEM.match(item.strip())
        if not m or not all(part.strip() for part in m.group(2).split("+")):
            raise ValueError(f"--shard takes AXIS=MESH_AXIS pairs separated by commas (heads=model,mlp=model), "
                             f"got {text!r}")
        if m.group(1) in out:
            raise ValueError(f"--shard maps the axis {m.group(1)} twice")
        out[m.group(1)] = tuple(part.strip() for part in m.group(2).split("+"))
    return out
