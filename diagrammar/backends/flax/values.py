"""Backend flax: named values (an array and the names of its axes) and the context a diagram runs in."""
from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

_DTYPES = {"float": jnp.float32, "int": jnp.int32, "bool": jnp.bool_}
_LETTERS = string.ascii_letters


class _V:
    """An array and the names of its axes, in memory order.

    A one-hot value may stay lazy: `hot = (indices, n)` stands for
    `one_hot(indices, n)` along the last name, and the dense array is built
    only when an operation asks for `.a`. `stack` keeps it lazy and `linear`
    reads it as a row gather, so `linear(onehot(i, p), p -> h)` costs a lookup
    instead of a matrix product with p-wide one-hot rows (ModAddMLP's first
    layer: most of its step).
    """

    __slots__ = ("_a", "hot", "names")

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

    def child(self, index: int, extra: dict[str, int] | None = None, step=None) -> _Ctx:
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
