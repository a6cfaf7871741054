"""Representation metrics against direct NumPy formulas written here, and against their invariances."""
import itertools

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.distance import cdist
from scipy.stats import spearmanr

from diagrammar.analysis import metrics as M


def _data(n=60, p=8, q=5, seed=0, noise=0.5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    Y = X @ rng.normal(size=(p, q)) + noise * rng.normal(size=(n, q))
    return X, Y


def _orthogonal(p, seed=1):
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(p, p)))[0]


# ------------------------------------------------------------ direct formulas

def _hsic_direct(K, L):
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def _cka_direct(K, L):
    return _hsic_direct(K, L) / np.sqrt(_hsic_direct(K, K) * _hsic_direct(L, L))


def _hsic_unbiased_ustatistic(K, L):
    """Song et al. 2012: HSIC_u is the U-statistic over ordered 4-tuples of distinct examples of
    h(i,j,q,r) = 1/4! sum over the 4! orderings (t,u,v,w) of k_tu l_tu + k_tu l_vw - 2 k_tu l_tv."""
    n = K.shape[0]
    total, count = 0.0, 0
    for tup in itertools.permutations(range(n), 4):
        h = 0.0
        for t, u, v, w in itertools.permutations(tup):
            h += K[t, u] * L[t, u] + K[t, u] * L[v, w] - 2 * K[t, u] * L[t, v]
        total += h / 24
        count += 1
    return total / count


def test_linear_cka_matches_gram_formula():
    X, Y = _data()
    K, L = X @ X.T, Y @ Y.T
    assert M.linear_cka(X, Y) == pytest.approx(_cka_direct(K, L), rel=1e-10)
    # the wide case takes the Gram path inside; same formula
    Xw, Yw = _data(n=10, p=40, q=30)
    assert M.linear_cka(Xw, Yw) == pytest.approx(_cka_direct(Xw @ Xw.T, Yw @ Yw.T), rel=1e-10)


def test_hsic_biased_matches_trace_formula():
    X, Y = _data(n=20)
    K, L = np.exp(-cdist(X, X) ** 2 / 10), Y @ Y.T
    assert M.hsic(K, L) == pytest.approx(_hsic_direct(K, L), rel=1e-10)


def test_unbiased_hsic_is_the_u_statistic_of_song_et_al():
    X, Y = _data(n=7, p=3, q=2)
    K, L = X @ X.T, np.exp(-cdist(Y, Y) ** 2)
    assert M.hsic(K, L, unbiased=True) == pytest.approx(_hsic_unbiased_ustatistic(K, L), rel=1e-9)
    with pytest.raises(ValueError, match="at least 4"):
        M.hsic(K[:3, :3], L[:3, :3], unbiased=True)


def test_unbiased_linear_cka_uses_unbiased_hsic_and_is_near_zero_for_independent_data():
    X, Y = _data(n=30)
    K, L = X @ X.T, Y @ Y.T
    want = M.hsic(K, L, True) / np.sqrt(M.hsic(K, K, True) * M.hsic(L, L, True))
    assert M.linear_cka(X, Y, unbiased=True) == pytest.approx(want, rel=1e-10)
    rng = np.random.default_rng(5)
    A, B = rng.normal(size=(400, 50)), rng.normal(size=(400, 50))
    # the biased estimator is pulled up by the width/examples ratio; the unbiased one stays near 0
    assert M.linear_cka(A, B) > 0.08
    assert abs(M.linear_cka(A, B, unbiased=True)) < 0.02


def test_rbf_cka_matches_explicit_kernel():
    X, Y = _data(n=25)

    def gram(Z, sigma):
        D2 = cdist(Z, Z, "sqeuclidean")
        med = np.median(D2[~np.eye(len(Z), dtype=bool)])
        return np.exp(-D2 / (2 * sigma ** 2 * med))

    assert M.rbf_cka(X, Y) == pytest.approx(_cka_direct(gram(X, 1.0), gram(Y, 1.0)), rel=1e-9)
    assert M.rbf_cka(X, Y, sigma=0.5) == pytest.approx(_cka_direct(gram(X, 0.5), gram(Y, 0.5)), rel=1e-9)


def test_rdm_and_rsa_match_scipy():
    X, Y = _data(n=30)
    assert np.allclose(M.rdm(X), 1 - np.corrcoef(X))
    assert np.allclose(M.rdm(X, "euclidean"), cdist(X, X))
    iu = np.triu_indices(30, 1)
    for metric, dist in (("correlation", "correlation"), ("euclidean", "euclidean")):
        want = spearmanr(cdist(X, X, dist)[iu], cdist(Y, Y, dist)[iu]).statistic
        assert M.rsa(X, Y, metric) == pytest.approx(want, rel=1e-9)
    with pytest.raises(ValueError, match="metric"):
        M.rdm(X, "cosine")


def test_svcca_matches_svd_then_cca_on_data():
    X, Y = _data(n=80, p=10, q=6)

    def reduce(Z, keep):
        Zc = Z - Z.mean(0)
        U, s, _ = np.linalg.svd(Zc, full_matrices=False)
        share = np.cumsum(s ** 2) / np.sum(s ** 2)
        k = int(np.argmax(share >= keep)) + 1
        return U[:, :k] * s[:k]

    for keep in (0.99, 0.8, 0.5):
        Xr, Yr = reduce(X, keep), reduce(Y, keep)
        Qx, Qy = np.linalg.qr(Xr)[0], np.linalg.qr(Yr)[0]
        want = np.linalg.svd(Qx.T @ Qy, compute_uv=False).mean()
        assert M.svcca(X, Y, keep=keep) == pytest.approx(want, rel=1e-8), keep


def test_procrustes_matches_scipy_orthogonal_procrustes():
    X, Y = _data(n=50, p=6, q=6)
    Xn = (X - X.mean(0)) / np.linalg.norm(X - X.mean(0))
    Yn = (Y - Y.mean(0)) / np.linalg.norm(Y - Y.mean(0))
    R, _ = orthogonal_procrustes(Yn, Xn)
    want = np.sum((Xn - Yn @ R) ** 2)
    assert M.procrustes_distance(X, Y) == pytest.approx(want, rel=1e-9)
    # different widths: the narrower side is padded with zero features
    Y4 = Y[:, :4]
    Y4n = (Y4 - Y4.mean(0)) / np.linalg.norm(Y4 - Y4.mean(0))
    R, _ = orthogonal_procrustes(np.hstack([Y4n, np.zeros((50, 2))]), Xn)
    want = np.sum((Xn - np.hstack([Y4n, np.zeros((50, 2))]) @ R) ** 2)
    assert M.procrustes_distance(X, Y4) == pytest.approx(want, rel=1e-9)


def test_match_units_is_the_best_one_to_one_matching_by_brute_force():
    X, Y = _data(n=40, p=4, q=4, noise=2.0)
    pairs, corr = M.match_units(X, Y)
    C = np.corrcoef(X.T, Y.T)[:4, 4:]
    best = max(sum(C[i, perm[i]] for i in range(4)) for perm in itertools.permutations(range(4)))
    assert corr.sum() == pytest.approx(best, rel=1e-9)
    assert np.allclose(corr, C[pairs[:, 0], pairs[:, 1]])


def test_match_units_recovers_a_permutation_of_units():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 12))
    perm = rng.permutation(12)
    Y = 2.5 * X[:, perm] + 0.1 * rng.normal(size=(200, 12)) + 7
    pairs, corr = M.match_units(X, Y)
    # unit i of X is column j of Y where perm[j] == i
    assert [perm[j] for _, j in pairs] == list(range(12))
    assert np.all(corr > 0.99)


def test_kernel_analysis_matches_explicit_projection():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 40)
    X = np.eye(3)[labels] * 2 + rng.normal(size=(40, 3))
    errors = M.kernel_analysis(X, labels, kernel="linear", max_components=5)
    n = 40
    H = np.eye(n) - 1 / n
    vals, vecs = np.linalg.eigh(H @ (X @ X.T) @ H)
    U = vecs[:, np.argsort(vals)[::-1]]
    T = np.eye(3)[labels]
    for d in range(1, 4):  # the linear kernel of three features has rank 3
        P = U[:, :d] @ U[:, :d].T
        scores = P @ (T - T.mean(0)) + T.mean(0)
        assert errors[d - 1] == pytest.approx(np.mean(scores.argmax(1) != labels)), d
    assert errors.shape == (5,) and errors[3] == errors[4] == errors[2]  # past the rank nothing is added


def test_kernel_analysis_separable_classes_need_few_components():
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(4), 30)
    clustered = np.eye(4)[labels] * 10 + 0.3 * rng.normal(size=(120, 4))
    noise = rng.normal(size=(120, 4))
    e_clustered = M.kernel_analysis(clustered, labels, max_components=10)
    e_noise = M.kernel_analysis(noise, labels, max_components=10)
    assert e_clustered[2] == 0.0  # three leading components separate four clusters
    assert e_noise[2] > 0.4
    with pytest.raises(ValueError, match="one per example"):
        M.kernel_analysis(noise, labels[:-1])


# ------------------------------------------------------------ invariances

@pytest.mark.parametrize("fn", [M.linear_cka, M.rbf_cka, lambda X, Y: M.linear_cka(X, Y, unbiased=True)])
def test_cka_invariant_to_orthogonal_maps_scaling_and_translation(fn):
    X, Y = _data(n=50, p=6)
    base = fn(X, Y)
    moved = 3.7 * X @ _orthogonal(6) + 5.0
    assert fn(moved, Y) == pytest.approx(base, rel=1e-8)
    assert fn(X, X) == pytest.approx(1.0, rel=1e-10)
    assert fn(X, moved) == pytest.approx(1.0, rel=1e-8)


def test_linear_cka_not_invariant_to_general_invertible_maps_but_svcca_is():
    X, _ = _data(n=100, p=6)
    A = np.diag([10.0, 1, 1, 1, 1, 0.1]) @ _orthogonal(6, seed=7)
    assert abs(np.linalg.det(A)) > 1e-6
    assert M.linear_cka(X, X @ A) < 0.9
    assert M.svcca(X, X @ A, keep=1.0) == pytest.approx(1.0, abs=1e-8)


def test_self_comparisons():
    X, Y = _data()
    assert M.rsa(X, X) == pytest.approx(1.0)
    assert M.svcca(X, X) == pytest.approx(1.0)
    assert M.procrustes_distance(X, X) == pytest.approx(0.0, abs=1e-12)
    assert M.procrustes_distance(X, 2 * X @ _orthogonal(8) - 1) == pytest.approx(0.0, abs=1e-10)
    assert M.procrustes_distance(X, Y) > 0.1
    pairs, corr = M.match_units(X, X)
    assert pairs.tolist() == [[i, i] for i in range(8)] and np.allclose(corr, 1.0)


def test_wires_with_several_axes_are_flattened_per_example_and_checked():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(30, 3, 4))
    assert M.linear_cka(W, W.reshape(30, 12)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same examples"):
        M.linear_cka(W, W[:20])
    with pytest.raises(ValueError, match="NaN"):
        M.linear_cka(np.full((5, 2), np.nan), W[:5])
    assert np.isnan(M.linear_cka(np.ones((10, 3)), W[:10]))  # a constant representation has no geometry


def test_metrics_do_not_import_jax():
    import subprocess
    import sys

    script = ("import sys, numpy as np\nimport diagrammar.analysis as A\n"
              "A.linear_cka(np.eye(5), np.eye(5))\nassert 'jax' not in sys.modules")
    subprocess.run([sys.executable, "-c", script], check=True)
