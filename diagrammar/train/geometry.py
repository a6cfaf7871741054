"""Train stage: a task whose input geometry and target geometry are set separately (for representation studies).

Alleman et al. (2024) found that the nonlinearity decides which geometry a
hidden layer takes on: tanh networks follow the targets, ReLU networks keep
more of the inputs'. Studying that needs a task where the two geometries are
known and can be moved apart, which this one is.

The task has ``grid * grid`` conditions, one per point ``(u, v)`` of a square
grid. Each condition has

* an input prototype in ``input_dims`` dimensions: ``sqrt(s)`` times the
  standardised grid coordinates, embedded by a fixed random orthonormal map,
  plus ``sqrt(1 - s)`` times a random unit-variance vector of its own, where
  ``s = input_structure``. At ``s = 1`` the inputs lie on a 2-D grid (nearby
  conditions have similar inputs); at ``s = 0`` they are unrelated points.
* a category from ``rule`` over the grid, and as target the category's code:
  ``categories`` orthogonal +-1 vectors of length ``target_dims``, each with
  as many +1 as -1 (rows 1, 2, ... of a Hadamard matrix; row 0 is constant). ``rule="parity"`` (a checkerboard, ``(u + v) mod 2``) makes
  the target geometry as unlike the input grid as it can be; ``"halves"``
  (``u < grid / 2``) aligns it with one input axis; ``"quadrants"`` uses both.

An example is a prototype plus Gaussian noise of standard deviation ``noise``
per input dimension; the train and test sets hold ``per_condition`` fresh
examples of every condition each. The model maps ``x: [input_dims]`` to
``[target_dims]`` and is trained with squared error on the code; accuracy is
the share of examples whose output is closest (by dot product) to the right code.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

RULES = ("parity", "halves", "quadrants")


@dataclasses.dataclass
class GeometryTask:
    """See the module docstring. ``seed`` fixes the prototypes, the embedding and the noise."""

    grid: int = 4
    input_dims: int = 32
    input_structure: float = 1.0
    noise: float = 0.2
    rule: str = "parity"
    target_dims: int = 8
    per_condition: int = 32
    batch_size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.grid < 2:
            raise ValueError(f"grid must be at least 2, got {self.grid}")
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")
        if not 0.0 <= self.input_structure <= 1.0:
            raise ValueError(f"input_structure must be from 0 to 1, got {self.input_structure}")
        if self.input_dims < 2 or self.per_condition < 1 or self.noise < 0:
            raise ValueError("need input_dims >= 2, per_condition >= 1 and noise >= 0")
        if self.target_dims <= self.categories or self.target_dims & (self.target_dims - 1):
            raise ValueError(f"target_dims must be a power of two above {self.categories}, got {self.target_dims}")
        rng = np.random.default_rng([self.seed, 0x6E0])
        u, v = np.divmod(np.arange(self.grid ** 2), self.grid)
        coords = np.stack([u, v], axis=1).astype(np.float64)
        coords = (coords - coords.mean(axis=0)) / coords.std(axis=0)
        embed = np.linalg.qr(rng.normal(size=(self.input_dims, 2)))[0].T  # [2, input_dims], orthonormal rows
        own = rng.normal(size=(self.grid ** 2, self.input_dims))
        s = self.input_structure
        # Grid part: unit variance per condition summed over dims, like `own` / input_dims.
        self.prototypes = np.sqrt(s) * coords @ embed * np.sqrt(self.input_dims / 2) + np.sqrt(1 - s) * own
        self.labels = self.category(u, v)
        self.codes = _hadamard(self.target_dims)[1: self.categories + 1]  # row 0 is constant: no correlation
        self.targets = self.codes[self.labels]
        self.train_data = self._sample(rng)
        self.test_data = self._sample(rng)

    @property
    def categories(self) -> int:
        return 4 if self.rule == "quadrants" else 2

    def category(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        half = self.grid / 2
        if self.rule == "parity":
            return (u + v) % 2
        if self.rule == "halves":
            return (u >= half).astype(int)
        return (u >= half).astype(int) * 2 + (v >= half).astype(int)

    def _sample(self, rng: np.random.Generator) -> dict[str, jax.Array]:
        cond = np.repeat(np.arange(self.grid ** 2), self.per_condition)
        x = self.prototypes[cond] + self.noise * rng.normal(size=(len(cond), self.input_dims))
        return {"x": jnp.asarray(x, jnp.float32), "target": jnp.asarray(self.targets[cond], jnp.float32),
                "label": jnp.asarray(self.labels[cond], jnp.int32), "condition": jnp.asarray(cond, jnp.int32)}

    @property
    def config(self) -> dict[str, Any]:
        """What determines the data; a resumed run must match it."""
        return {"task": "geometry", **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    def loss(self, model: nnx.Module, batch: dict[str, jax.Array],
             train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Mean squared error to the target code (summed over its dimensions) and nearest-code accuracy."""
        out = model(batch["x"]).astype(jnp.float32)
        loss = jnp.mean(jnp.sum(jnp.square(out - batch["target"]), axis=-1))
        scores = out @ jnp.asarray(self.codes.T, jnp.float32)
        return loss, {"acc": jnp.mean(jnp.argmax(scores, axis=-1) == batch["label"])}


def _hadamard(n: int) -> np.ndarray:
    """The ``n x n`` Sylvester Hadamard matrix (+-1, orthogonal rows); ``n`` a power of two.

    >>> h = _hadamard(4); bool(np.array_equal(h @ h.T, 4 * np.eye(4)))
    True
    """
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h
