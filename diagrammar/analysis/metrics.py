"""Analysis: representation similarity and class-separation metrics on (examples x features) arrays.

Every function takes representations as arrays whose first axis is the
examples (the batch axes of a captured wire, flattened) and whose other axes
are features (flattened per example): ``X`` of shape ``(n, p)`` and ``Y`` of
shape ``(n, q)`` hold the same ``n`` examples in the same order. Everything is
computed in float64 NumPy, never in JAX, so results do not depend on the
device or on jit.

The metrics that only need second moments (linear CKA, SVCCA, Procrustes,
unit matching) are written once in terms of the centred covariance blocks
``Cxx, Cyy, Cxy`` (the ``*_from_covariance`` functions), so the streaming
accumulators of :mod:`diagrammar.analysis.streaming` give the same numbers
as the in-memory functions over any number of examples.

References:
  Kornblith et al. 2019, "Similarity of neural network representations revisited" (CKA).
  Song et al. 2012, "Feature selection via dependence maximization" (unbiased HSIC).
  Kriegeskorte et al. 2008, "Representational similarity analysis" (RDMs, RSA).
  Raghu et al. 2017, "SVCCA".
  Ding et al. 2021, "Grounding representation similarity" (orthogonal Procrustes distance).
  Li et al. 2015, "Convergent learning" (one-to-one unit matching).
  Montavon et al. 2011, "Kernel analysis of deep networks".
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "as_examples", "linear_cka", "rbf_cka", "hsic", "rdm", "rsa", "svcca", "procrustes_distance", "match_units",
    "kernel_analysis", "linear_gram", "rbf_gram", "centre_gram",
    "linear_cka_from_covariance", "svcca_from_covariance", "procrustes_from_covariance", "match_from_covariance",
]


# ---------------------------------------------------------------- inputs


def as_examples(X, name: str = "X") -> np.ndarray:
    """``X`` as a float64 matrix (examples, features): axes after the first are flattened per example.

    >>> as_examples(np.zeros((4, 2, 3))).shape, as_examples(np.arange(3)).shape
    ((4, 6), (3, 1))
    """
    a = np.asarray(X, dtype=np.float64)
    if a.ndim == 0:
        raise ValueError(f"{name} is a scalar; it needs an examples axis")
    if a.ndim == 1:
        a = a[:, None]
    elif a.ndim > 2:
        a = a.reshape(a.shape[0], -1)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return a


def _pair(X, Y) -> tuple[np.ndarray, np.ndarray]:
    X, Y = as_examples(X, "X"), as_examples(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must hold the same examples: X has {X.shape[0]}, Y has {Y.shape[0]}")
    if X.shape[0] < 2:
        raise ValueError("at least two examples are needed")
    return X, Y


def _centred(X: np.ndarray) -> np.ndarray:
    return X - X.mean(axis=0, keepdims=True)


def _covariances(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The centred second-moment blocks X'X, Y'Y, X'Y (unnormalised: every metric here is scale-free)."""
    Xc, Yc = _centred(X), _centred(Y)
    return Xc.T @ Xc, Yc.T @ Yc, Xc.T @ Yc


# ---------------------------------------------------------------- kernels and HSIC


def linear_gram(X) -> np.ndarray:
    """The linear kernel matrix ``X X^T`` over examples."""
    X = as_examples(X)
    return X @ X.T


def _square_distances(X: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", X, X)
    d = sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)
    np.fill_diagonal(d, 0.0)
    return np.maximum(d, 0.0)


def rbf_gram(X, sigma: float | None = None) -> np.ndarray:
    """The Gaussian kernel ``exp(-|xi - xj|^2 / (2 s^2))`` over examples.

    The bandwidth is relative, as in Kornblith et al. (2019): ``s = sigma *
    median distance`` between distinct examples (``sigma=None`` means 1), so the
    kernel, and RBF CKA, do not change when a representation is scaled.
    """
    X = as_examples(X)
    d2 = _square_distances(X)
    n = d2.shape[0]
    off = d2[~np.eye(n, dtype=bool)]
    median = float(np.median(off)) if off.size else 0.0
    if median <= 0.0:  # all examples (or most) coincide: every pair is as near as the nearest
        return np.ones_like(d2)
    scale = 1.0 if sigma is None else float(sigma)
    if not scale > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return np.exp(-d2 / (2.0 * scale * scale * median))


def centre_gram(K) -> np.ndarray:
    """``H K H`` with the centring matrix ``H = I - 11^T / n``."""
    K = np.asarray(K, dtype=np.float64)
    return K - K.mean(axis=0, keepdims=True) - K.mean(axis=1, keepdims=True) + K.mean()


def hsic(K, L, unbiased: bool = False) -> float:
    """The Hilbert-Schmidt independence criterion between two kernel matrices over the same examples.

    Biased (Gretton et al. 2005): ``tr(K H L H) / (n - 1)^2``. Unbiased (Song et
    al. 2012, needs n > 3), with ``K~``, ``L~`` the kernels with zeroed diagonals:
    ``[tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))``.
    """
    K = np.asarray(K, dtype=np.float64)
    L = np.asarray(L, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape != L.shape:
        raise ValueError(f"K and L must be square kernel matrices of one size, got {K.shape} and {L.shape}")
    n = K.shape[0]
    if not unbiased:
        if n < 2:
            raise ValueError("HSIC needs at least two examples")
        return float(np.sum(centre_gram(K) * L) / (n - 1) ** 2)
    if n < 4:
        raise ValueError(f"the unbiased HSIC estimator needs at least 4 examples, got {n}")
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    kl = Kt @ Lt.sum(axis=1)  # K~ L~ 1
    value = (np.sum(Kt * Lt) + Kt.sum() * Lt.sum() / ((n - 1) * (n - 2)) - 2.0 * kl.sum() / (n - 2))
    return float(value / (n * (n - 3)))


def _cka_from_grams(K: np.ndarray, L: np.ndarray, unbiased: bool) -> float:
    kl = hsic(K, L, unbiased)
    kk = hsic(K, K, unbiased)
    ll = hsic(L, L, unbiased)
    denom = kk * ll
    return float(kl / np.sqrt(denom)) if denom > 0 else float("nan")


# ---------------------------------------------------------------- CKA


def linear_cka_from_covariance(Cxx, Cyy, Cxy) -> float:
    """Linear CKA from centred covariance blocks: ``|Cxy|_F^2 / (|Cxx|_F |Cyy|_F)``; NaN if X or Y is constant."""
    num = float(np.sum(np.square(Cxy)))
    denom = float(np.linalg.norm(Cxx) * np.linalg.norm(Cyy))
    return num / denom if denom > 0 else float("nan")


def linear_cka(X, Y, unbiased: bool = False) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019), between 0 and 1.

    1 for representations equal up to an orthogonal map, an isotropic scaling
    and a translation; not invariant to general invertible linear maps.
    ``unbiased=True`` uses the unbiased HSIC estimator (Song et al. 2012), whose
    value can dip slightly below 0 for unrelated representations.

    >>> rng = np.random.default_rng(0); X = rng.normal(size=(50, 5))
    >>> round(linear_cka(X, 3 * X @ np.linalg.qr(rng.normal(size=(5, 5)))[0] + 1), 6)
    1.0
    """
    X, Y = _pair(X, Y)
    if unbiased:
        return _cka_from_grams(linear_gram(X), linear_gram(Y), True)
    n, p, q = X.shape[0], X.shape[1], Y.shape[1]
    if p * q > n * n:  # many features: the n x n Gram form is cheaper than the p x q one
        Xc, Yc = _centred(X), _centred(Y)
        return _cka_from_grams(Xc @ Xc.T, Yc @ Yc.T, False)
    return linear_cka_from_covariance(*_covariances(X, Y))


def rbf_cka(X, Y, sigma: float | None = None, unbiased: bool = False) -> float:
    """CKA with Gaussian kernels whose bandwidth is ``sigma`` times each representation's median distance.

    Builds two n x n kernel matrices: callers with many examples pass a subsample
    (``diagrammar analyse`` uses at most :data:`diagrammar.analysis.streaming.MAX_PAIRWISE_EXAMPLES`).
    """
    X, Y = _pair(X, Y)
    return _cka_from_grams(rbf_gram(X, sigma), rbf_gram(Y, sigma), unbiased)


# ---------------------------------------------------------------- RSA


def rdm(X, metric: str = "correlation") -> np.ndarray:
    """The representational dissimilarity matrix between examples (n x n, zero diagonal).

    ``"correlation"``: 1 - Pearson correlation between the examples' feature
    vectors (an example with constant features has correlation 0 with every
    other); ``"euclidean"``: the Euclidean distance.
    """
    X = as_examples(X)
    if metric == "correlation":
        if X.shape[1] < 2:
            raise ValueError("the correlation RDM needs at least two features per example; use metric='euclidean'")
        Z = X - X.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(Z, axis=1)
        Z = np.divide(Z, norms[:, None], out=np.zeros_like(Z), where=norms[:, None] > 0)
        D = 1.0 - Z @ Z.T
    elif metric == "euclidean":
        D = np.sqrt(_square_distances(X))
    else:
        raise ValueError(f"metric must be 'correlation' or 'euclidean', got {metric!r}")
    np.fill_diagonal(D, 0.0)
    return D


def _ranks(v: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(v)  # ties get their mean rank, as Spearman's coefficient needs


def rsa(X, Y, metric: str = "correlation") -> float:
    """Representational similarity: Spearman correlation between the upper triangles of the two RDMs.

    Builds two n x n matrices: pass a subsample when n is large.
    """
    X, Y = _pair(X, Y)
    if X.shape[0] < 3:
        raise ValueError("RSA needs at least three examples (two pairs to rank)")
    iu = np.triu_indices(X.shape[0], k=1)
    a, b = _ranks(rdm(X, metric)[iu]), _ranks(rdm(Y, metric)[iu])
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b) / denom) if denom > 0 else float("nan")


# ---------------------------------------------------------------- SVCCA


def _leading(C: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvectors and eigenvalues of the fewest leading directions holding ``keep`` of the variance."""
    vals, vecs = np.linalg.eigh((C + C.T) / 2.0)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    top = vals[0] if vals.size else 0.0
    if top <= 0:
        return vecs[:, :0], vals[:0]
    vals = np.where(vals > top * 1e-10, vals, 0.0)  # below this the direction is round-off, not variance
    share = np.cumsum(vals) / vals.sum()
    k = int(np.searchsorted(share, keep - 1e-12) + 1)
    k = min(k, int(np.count_nonzero(vals)))
    return vecs[:, :k], vals[:k]


def svcca_from_covariance(Cxx, Cyy, Cxy, keep: float = 0.99) -> float:
    """SVCCA from centred covariance blocks: project each side on its leading principal directions
    (holding ``keep`` of its variance), then average the canonical correlations between the projections."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be a share of variance in (0, 1], got {keep}")
    Ux, sx = _leading(np.asarray(Cxx, np.float64), keep)
    Uy, sy = _leading(np.asarray(Cyy, np.float64), keep)
    if sx.size == 0 or sy.size == 0:
        return float("nan")
    M = (Ux / np.sqrt(sx)).T @ np.asarray(Cxy, np.float64) @ (Uy / np.sqrt(sy))
    rho = np.clip(np.linalg.svd(M, compute_uv=False), 0.0, 1.0)
    return float(rho.mean())


def svcca(X, Y, keep: float = 0.99) -> float:
    """SVCCA similarity (Raghu et al. 2017): the mean canonical correlation between the principal
    subspaces of X and Y that hold ``keep`` of their variance; 1 for a representation and any
    invertible linear map of it."""
    X, Y = _pair(X, Y)
    return svcca_from_covariance(*_covariances(X, Y), keep=keep)


# ---------------------------------------------------------------- Procrustes


def procrustes_from_covariance(Cxx, Cyy, Cxy) -> float:
    """Procrustes distance from centred covariance blocks: ``2 - 2 |Cxy|_* / sqrt(tr Cxx tr Cyy)``."""
    denom = float(np.sqrt(np.trace(Cxx) * np.trace(Cyy)))
    if denom <= 0:
        return float("nan")
    nuclear = float(np.linalg.svd(np.asarray(Cxy, np.float64), compute_uv=False).sum())
    return max(0.0, 2.0 - 2.0 * nuclear / denom)


def procrustes_distance(X, Y) -> float:
    """Orthogonal Procrustes distance (Ding et al. 2021), from 0 (same shape) to 2.

    Both representations are centred and scaled to unit Frobenius norm; the
    value is ``min over orthogonal Q of |X - Y Q|_F^2`` (Q is p x q with
    orthonormal columns when the widths differ, i.e. the narrower side is
    padded with zero features), which equals ``2 - 2 |X^T Y|_*``.
    """
    X, Y = _pair(X, Y)
    return procrustes_from_covariance(*_covariances(X, Y))


# ---------------------------------------------------------------- unit matching


def match_from_covariance(Cxx, Cyy, Cxy) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one unit matching from centred covariance blocks; see :func:`match_units`."""
    from scipy.optimize import linear_sum_assignment

    sx = np.sqrt(np.clip(np.diag(Cxx), 0.0, None))
    sy = np.sqrt(np.clip(np.diag(Cyy), 0.0, None))
    denom = np.outer(sx, sy)
    corr = np.divide(Cxy, denom, out=np.zeros(np.shape(Cxy)), where=denom > 0)  # a constant unit matches nothing
    rows, cols = linear_sum_assignment(corr, maximize=True)
    return np.stack([rows, cols], axis=1).astype(np.int64), corr[rows, cols]


def match_units(X, Y) -> tuple[np.ndarray, np.ndarray]:
    """Pair each unit (feature) of X with a distinct unit of Y so that the summed correlation is largest
    (Li et al. 2015's one-to-one matching, solved exactly by linear assignment).

    Returns:
      ``(pairs, correlations)``: ``pairs[k] = (i, j)`` matches unit i of X with
      unit j of Y (min(p, q) pairs, sorted by i) and ``correlations[k]`` is their
      Pearson correlation over the examples (0 for a constant unit).
    """
    X, Y = _pair(X, Y)
    return match_from_covariance(*_covariances(X, Y))


# ---------------------------------------------------------------- kernel analysis

DEFAULT_KERNEL_COMPONENTS = 512


def kernel_analysis(X, labels, kernel: str = "rbf", max_components: int | None = None,
                    sigma: float | None = None) -> np.ndarray:
    """Kernel analysis (Montavon et al. 2011): how many leading kernel principal components the labels need.

    The one-hot labels, centred, are projected on the ``d`` leading eigenvectors
    of the centred kernel matrix, and each example is classified by the largest
    projected score (plus the class frequencies). A layer whose kernel
    separates the classes well reaches a low error with few components.

    Args:
      X: the representation, (n, features).
      labels: n integer class labels.
      kernel: ``"rbf"`` (bandwidth ``sigma`` times the median distance, see
        :func:`rbf_gram`) or ``"linear"``.
      max_components: the largest ``d`` (default ``min(n, 512)``).

    Returns:
      ``errors``, of length ``max_components``: ``errors[d - 1]`` is the
      training classification error with the ``d`` leading components (constant past the kernel's
      rank).
    """
    X = as_examples(X)
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"labels must be one per example: X has {X.shape[0]} examples, labels have shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {y.dtype}")
    n = X.shape[0]
    if kernel == "rbf":
        K = rbf_gram(X, sigma)
    elif kernel == "linear":
        K = linear_gram(X)
    else:
        raise ValueError(f"kernel must be 'rbf' or 'linear', got {kernel!r}")
    D = min(n, DEFAULT_KERNEL_COMPONENTS) if max_components is None else int(max_components)
    if not 1 <= D <= n:
        raise ValueError(f"max_components must be from 1 to the number of examples ({n}), got {max_components}")
    classes, index = np.unique(y, return_inverse=True)
    T = np.zeros((n, classes.size))
    T[np.arange(n), index] = 1.0
    prior = T.mean(axis=0)
    Tc = T - prior
    from scipy.linalg import eigh

    # only the D leading eigenpairs: several times faster than all n of them when D << n
    vals, vecs = eigh(centre_gram(K), subset_by_index=[n - D, n - 1])
    U, vals = vecs[:, ::-1], vals[::-1]
    coef = U.T @ Tc  # (D, classes): the labels' coordinates on each component
    # past the kernel's rank the eigenvectors are arbitrary directions, not features: they add nothing
    coef[vals <= max(vals[0], 0.0) * 1e-10] = 0.0
    scores = np.broadcast_to(prior, T.shape).copy()
    errors = np.empty(D)
    for d in range(D):
        scores += np.outer(U[:, d], coef[d])
        errors[d] = np.mean(np.argmax(scores, axis=1) != index)
    return errors
