"""Analysis: bounded-memory accumulators over a stream of example batches.

Linear CKA, SVCCA, Procrustes distance and unit matching need only the
centred covariance of the features, so :class:`Moments` keeps a running mean
and co-moment matrix (merged batch by batch with Chan et al.'s 1979 update,
which stays accurate when the means are large) whose size depends on the
feature count, never on the number of examples. Metrics that compare
examples pairwise (RBF CKA, RSA, kernel analysis) need the examples
themselves; :class:`Reservoir` keeps a uniform random subsample of at most
``MAX_PAIRWISE_EXAMPLES`` of them (Vitter's algorithm R, seeded, so a run is
reproducible), because their n x n matrices would not fit otherwise.
"""
from __future__ import annotations

import numpy as np

from . import metrics

__all__ = ["Moments", "Reservoir", "WireStatistics", "MAX_MOMENT_FEATURES", "MAX_PAIRWISE_EXAMPLES", "covariance_blocks",
           "moment_metric", "MOMENT_METRICS", "PAIRWISE_METRICS"]

# All wires of one analysis together: their joint co-moment matrix is at most 4096^2 float64 = 128 MiB.
MAX_MOMENT_FEATURES = 4096
# RBF CKA, RSA and kernel analysis build n x n matrices: 4,000^2 float64 = 122 MiB each.
MAX_PAIRWISE_EXAMPLES = 4000


class Moments:
    """Running mean and centred co-moment matrix ``sum (x - mean)(x - mean)^T`` of feature vectors.

    Args:
      dim: the number of features.

    Example:
      >>> m = Moments(2); m.update(np.array([[0., 1.], [2., 3.]])); m.update(np.array([[4., 5.]]))
      >>> m.n, m.mean.tolist(), float(m.comoment[0, 0])
      (3, [2.0, 3.0], 8.0)
    """

    def __init__(self, dim: int):
        if dim > MAX_MOMENT_FEATURES:
            raise ValueError(f"{dim:,} features need a {dim:,} x {dim:,} co-moment matrix; at most "
                             f"{MAX_MOMENT_FEATURES:,} are kept")
        self.n = 0
        self.mean = np.zeros(dim)
        self.comoment = np.zeros((dim, dim))

    @property
    def nbytes(self) -> int:
        """Memory held, independent of the number of examples seen."""
        return self.mean.nbytes + self.comoment.nbytes

    def update(self, batch) -> None:
        """Add a batch of examples, (b, dim)."""
        x = np.asarray(batch, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"expected a batch of shape (b, {self.mean.shape[0]}), got {x.shape}")
        b = x.shape[0]
        if b == 0:
            return
        mean_b = x.mean(axis=0)
        xc = x - mean_b
        delta = mean_b - self.mean
        total = self.n + b
        self.comoment += xc.T @ xc + np.outer(delta, delta) * (self.n * b / total)
        self.mean += delta * (b / total)
        self.n = total


def covariance_blocks(m: Moments, a: slice, b: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Caa, Cbb, Cab) of two groups of features of one :class:`Moments` (e.g. two wires side by side)."""
    C = m.comoment
    return C[a, a], C[b, b], C[a, b]


MOMENT_METRICS = ("cka", "svcca", "procrustes", "match")


def moment_metric(metric: str, Cxx, Cyy, Cxy, keep: float = 0.99) -> float:
    """One number from covariance blocks: linear CKA, SVCCA, Procrustes distance, or the mean correlation of
    matched units."""
    if metric == "cka":
        return metrics.linear_cka_from_covariance(Cxx, Cyy, Cxy)
    if metric == "svcca":
        return metrics.svcca_from_covariance(Cxx, Cyy, Cxy, keep=keep)
    if metric == "procrustes":
        return metrics.procrustes_from_covariance(Cxx, Cyy, Cxy)
    if metric == "match":
        _, corr = metrics.match_from_covariance(Cxx, Cyy, Cxy)
        return float(corr.mean()) if corr.size else float("nan")
    raise ValueError(f"not a covariance metric: {metric!r} (one of {', '.join(MOMENT_METRICS)})")


class Reservoir:
    """A uniform random sample of at most ``size`` rows from a stream (algorithm R), with their stream order kept.

    Rows of several aligned streams (wires of the same examples) are sampled together by passing them in
    one call as a dict.
    """

    def __init__(self, size: int = MAX_PAIRWISE_EXAMPLES, seed: int = 0):
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        self.size = size
        self.seen = 0
        self._rng = np.random.default_rng(seed)
        self._rows: dict[str, np.ndarray] = {}
        self._index = np.empty(0, dtype=np.int64)  # the stream position of each kept row

    def update(self, batch: dict[str, np.ndarray]) -> None:
        b = {len(np.asarray(v)) for v in batch.values()}
        if len(b) != 1:
            raise ValueError("every stream of a batch must hold the same examples")
        count = b.pop()
        positions = self.seen + np.arange(count)
        if not self._rows:
            self._rows = {k: np.empty((0, *np.shape(v)[1:]), dtype=np.asarray(v).dtype) for k, v in batch.items()}
        free = max(0, min(self.size - len(self._index), count))
        if free:  # fill the reservoir first
            for k, v in batch.items():
                self._rows[k] = np.concatenate([self._rows[k], np.asarray(v)[:free]])
            self._index = np.concatenate([self._index, positions[:free]])
        # then row t (0-based) replaces a random slot with probability size / (t + 1); when two rows of a batch
        # pick the same slot the later one wins, as it would one row at a time
        rest = positions[free:]
        if rest.size:
            slots = self._rng.integers(0, rest + 1)
            hit = np.nonzero(slots < self.size)[0]
            if hit.size:
                last = hit.size - 1 - np.unique(slots[hit][::-1], return_index=True)[1]
                hit = hit[last]
                for k, v in batch.items():
                    self._rows[k][slots[hit]] = np.asarray(v)[free + hit]
                self._index[slots[hit]] = rest[hit]
        self.seen += count

    def rows(self) -> dict[str, np.ndarray]:
        """The sample, in the order the rows arrived."""
        order = np.argsort(self._index, kind="stable")
        return {k: v[order] for k, v in self._rows.items()}


PAIRWISE_METRICS = ("rbf_cka", "rsa", "kernel")
# A pairwise sample holds rows x features float64 of every wire together: at most 2^25 numbers (256 MiB).
MAX_SAMPLE_NUMBERS = 2 ** 25
LABELS = "\0labels"  # the reservoir key of the class labels, which no wire name can take


class WireStatistics:
    """What one analysis keeps of several wires of the same examples, streamed batch by batch.

    For the covariance metrics (``cka``, ``svcca``, ``procrustes``, ``match``) one
    :class:`Moments` over all wires side by side, when they have at most
    :data:`MAX_MOMENT_FEATURES` features in all: every example counts, and
    memory does not grow with their number. Otherwise (the pairwise metrics
    ``rbf_cka``, ``rsa``, ``kernel``, or too many features) a :class:`Reservoir`
    of at most ``max_examples`` examples (fewer if the wires are wide, so the
    sample stays under :data:`MAX_SAMPLE_NUMBERS` numbers), on which the
    in-memory metrics run.

    Args:
      dims: features per wire, in order (names may be ``"h@A"``-like to compare models).
      metric: one of :data:`MOMENT_METRICS` or :data:`PAIRWISE_METRICS`.
      max_examples: the largest pairwise sample.
      seed: seeds the sample.
    """

    def __init__(self, dims: dict[str, int], metric: str, *, max_examples: int = MAX_PAIRWISE_EXAMPLES,
                 seed: int = 0):
        if metric not in MOMENT_METRICS + PAIRWISE_METRICS:
            raise ValueError(f"metric must be one of {', '.join(MOMENT_METRICS + PAIRWISE_METRICS)}, got {metric!r}")
        self.metric = metric
        self.dims = dict(dims)
        self.slices: dict[str, slice] = {}
        start = 0
        for name, dim in self.dims.items():
            self.slices[name] = slice(start, start + dim)
            start += dim
        total = start
        self.moments = Moments(total) if metric in MOMENT_METRICS and total <= MAX_MOMENT_FEATURES else None
        self.reservoir = None
        if self.moments is None:
            rows = max(2, min(max_examples, MAX_SAMPLE_NUMBERS // max(total, 1)))
            self.reservoir = Reservoir(rows, seed)
        self.seen = 0

    def update(self, batch: dict[str, np.ndarray], labels=None) -> None:
        """Add one batch: {wire: (b, features)} for every wire, and optionally b class labels."""
        if self.moments is not None:
            self.moments.update(np.concatenate([np.asarray(batch[k], np.float64) for k in self.dims], axis=1))
        else:
            rows = {k: np.asarray(batch[k], np.float32) for k in self.dims}  # float32 halves the sample
            if labels is not None:
                rows[LABELS] = np.asarray(labels)
            self.reservoir.update(rows)
        self.seen += len(next(iter(batch.values())))

    @property
    def used(self) -> int:
        """How many examples the numbers rest on."""
        return self.seen if self.moments is not None else min(self.seen, self.reservoir.size)

    def describe(self) -> str:
        """A line saying what the numbers rest on."""
        if self.moments is not None:
            return f"all {self.seen:,} examples, streamed (covariance of {self.moments.mean.size:,} features)"
        if self.used == self.seen:
            return f"all {self.seen:,} examples"
        return f"a uniform random sample of {self.used:,} of {self.seen:,} examples"

    def compare(self, a: str, b: str, *, keep: float = 0.99, sigma: float | None = None) -> float:
        """The metric between wires ``a`` and ``b`` (for ``kernel``, use :meth:`kernel`)."""
        if self.metric == "kernel":
            raise ValueError("kernel analysis measures one wire against the labels; use kernel()")
        if self.moments is not None:
            if self.moments.n < 2:
                raise ValueError("at least two examples are needed")
            return moment_metric(self.metric, *covariance_blocks(self.moments, self.slices[a], self.slices[b]),
                                 keep=keep)
        rows = self.reservoir.rows()
        X, Y = rows[a], rows[b]
        if self.metric == "cka":
            return metrics.linear_cka(X, Y)
        if self.metric == "svcca":
            return metrics.svcca(X, Y, keep=keep)
        if self.metric == "procrustes":
            return metrics.procrustes_distance(X, Y)
        if self.metric == "match":
            return float(metrics.match_units(X, Y)[1].mean())
        if self.metric == "rbf_cka":
            return metrics.rbf_cka(X, Y, sigma=sigma)
        return metrics.rsa(X, Y)

    def kernel(self, a: str, *, max_components: int | None = None, sigma: float | None = None) -> np.ndarray:
        """Kernel analysis of wire ``a`` against the labels given to :meth:`update` (see ``kernel_analysis``)."""
        rows = self.reservoir.rows() if self.reservoir is not None else {}
        if LABELS not in rows:
            raise ValueError("kernel analysis needs class labels with every batch")
        return metrics.kernel_analysis(rows[a], rows[LABELS].astype(np.int64), max_components=max_components,
                                       sigma=sigma)
