"""The pointer and workspace tasks themselves: targets right, splits disjoint, metrics honest."""

import itertools

import numpy as np
import pytest

from diagrammar.train import tasks_data as td


# ----------------------------------------------------------------------------- sorting


def test_sort_targets_sort_the_inputs():
    d = td.sort_batch(0, 64, 5, 10, pad_to=12)
    assert d["x"].shape == (64, 12, 1) and d["x"].dtype == np.float32
    assert d["target"].shape == (64, 12) and d["target"].dtype == np.int32
    assert d["mask"].dtype == bool
    assert np.array_equal(d["mask"].sum(1), d["lengths"])
    assert set(np.unique(d["lengths"])) <= set(range(5, 11)) and len(np.unique(d["lengths"])) > 1
    for b in range(64):
        n = d["lengths"][b]
        x = d["x"][b, :n, 0]
        t = d["target"][b, :n]
        assert sorted(t.tolist()) == list(range(n))  # a permutation of the real positions
        assert np.all(np.diff(x[t]) >= 0)
        assert np.all(d["target"][b, n:] == 0) and not d["mask"][b, n:].any()
        assert np.all(d["x"][b, n:] == 0)
        assert np.all((x >= 0) & (x < 1))
    assert np.array_equal(d["target_mask"], d["mask"])


def test_sort_padding_never_pointed_to():
    d = td.sort_batch(1, 32, 3, 8)
    valid = d["mask"][np.arange(32)[:, None], d["target"]]
    assert np.all(valid[d["target_mask"]])


def test_sort_rejects_bad_widths():
    with pytest.raises(ValueError):
        td.sort_batch(0, 4, 5, 10, pad_to=8)
    with pytest.raises(ValueError):
        td.sort_batch(0, 4, 6, 5)


# ----------------------------------------------------------------------------- convex hull


def brute_force_hull_edges(pts):
    """Directed edges (i, j) with every other point strictly to the left: the CCW hull edges."""
    edges = set()
    n = len(pts)
    for i, j in itertools.permutations(range(n), 2):
        if all(td._cross(pts[i], pts[j], pts[k]) > 0 for k in range(n) if k not in (i, j)):
            edges.add((i, j))
    return edges


def check_hull(pts, h):
    h = [int(i) for i in h]
    assert h[0] == h[-1], "closed"
    ring = h[:-1]
    assert len(set(ring)) == len(ring) >= 3
    assert ring[0] == min(ring), "starts from the hull vertex with the lowest index"
    # Exactly the brute-force hull edges, in counter-clockwise direction.
    assert set(zip(h[:-1], h[1:])) == brute_force_hull_edges(pts)
    # Counter-clockwise: positive signed area, and every turn is a left turn.
    x, y = pts[ring, 0], pts[ring, 1]
    assert np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)) > 0
    k = len(ring)
    for i in range(k):
        assert td._cross(pts[ring[i]], pts[ring[(i + 1) % k]], pts[ring[(i + 2) % k]]) > 0
    # Every other point is inside.
    for p in set(range(len(pts))) - set(ring):
        assert all(td._cross(pts[ring[i]], pts[ring[(i + 1) % k]], pts[p]) > 0 for i in range(k))


def test_hull_targets_are_the_true_hull():
    d = td.hull_batch(0, 40, 3, 15)
    assert d["x"].shape == (40, 15, 2) and d["target"].shape == (40, 16)
    assert np.array_equal(d["target_mask"].sum(1), d["target_lengths"])
    for b in range(40):
        n = d["lengths"][b]
        pts = d["x"][b, :n].astype(np.float64)
        h = d["target"][b][d["target_mask"][b]]
        assert np.all(h < n), "never points to padding"
        check_hull(pts, h)
        assert np.all(d["target"][b][~d["target_mask"][b]] == 0)


def test_hull_matches_scipy_when_available():
    spatial = pytest.importorskip("scipy.spatial")
    rng = np.random.default_rng(3)
    for _ in range(20):
        pts = rng.random((30, 2))
        ours = td.convex_hull_indices(pts)[:-1]
        theirs = spatial.ConvexHull(pts).vertices  # counter-clockwise in 2-D
        s = int(np.argmin(theirs))
        assert ours.tolist() == np.roll(theirs, -s).tolist()


def test_hull_hand_example_with_collinear_and_interior_points():
    pts = np.array([[0.5, 0.5], [1, 0], [0, 0], [0.5, 0.0], [1, 1], [0, 1]], dtype=float)
    # Interior point 0 and edge point 3 are not vertices; start at index 1.
    assert td.convex_hull_indices(pts).tolist() == [1, 4, 5, 2, 1]


# ----------------------------------------------------------------------------- metrics


def test_sequence_accuracies_hand_examples():
    target = np.array([[0, 1, 2, 0], [2, 1, 0, 0], [1, 0, 0, 0]])
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0]], dtype=bool)
    pred = np.array([[0, 1, 2, 9], [2, 0, 0, 0], [0, 1, 3, 3]])
    # Row 0 right (padding ignored), row 1 one token wrong, row 2 both wrong.
    assert td.exact_sequence_accuracy(pred, target, mask) == pytest.approx(1 / 3)
    assert td.per_token_accuracy(pred, target, mask) == pytest.approx(5 / 8)
    assert td.exact_sequence_accuracy(target, target, mask) == 1.0
    assert td.per_token_accuracy(target, target) == 1.0
    assert td.exact_sequence_accuracy([1, 2], [1, 3]) == 0.0
    with pytest.raises(ValueError):
        td.per_token_accuracy(pred, target, np.zeros_like(mask))


def square_with_inside():
    # 0..3 the unit square (counter-clockwise from 0), 4 an interior point.
    return np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.25]], dtype=float)


def test_area_coverage_hand_examples():
    pts = square_with_inside()
    true = [0, 1, 2, 3, 0]
    assert td.hull_area_coverage(pts, true, true) == 1.0
    assert td.hull_area_coverage(pts, [0, 1, 2, 3], true) == 1.0  # closing step optional
    assert td.hull_area_coverage(pts, [0, 3, 2, 1, 0], true) == 1.0  # clockwise: same area
    assert td.hull_area_coverage(pts, [0, 1, 2, 0], true) == pytest.approx(0.5)  # sub-polygon
    # Simple but not convex: the square with a notch to the interior point.
    assert td.hull_area_coverage(pts, [0, 4, 1, 2, 3, 0], true) == pytest.approx(1 - 0.125)
    # Invalid: self-intersecting (bow-tie), too few points, repeats, out of range.
    assert td.hull_area_coverage(pts, [0, 2, 1, 3, 0], true) == 0.0
    assert td.hull_area_coverage(pts, [0, 1, 0], true) == 0.0
    assert td.hull_area_coverage(pts, [0, 1, 2, 1, 3, 0], true) == 0.0
    assert td.hull_area_coverage(pts, [0, 1, 2, 7, 0], true) == 0.0


def test_area_coverage_on_random_hulls():
    d = td.hull_batch(5, 30, 8, 12)
    sub_checked = 0
    for b in range(30):
        n = d["lengths"][b]
        pts = d["x"][b, :n]
        h = d["target"][b][d["target_mask"][b]]
        assert td.hull_area_coverage(pts, h, h) == pytest.approx(1.0)
        ring = h[:-1]
        if len(ring) >= 4:
            # Swapping two consecutive vertices of a convex polygon makes it cross itself.
            bad = ring.copy()
            bad[1], bad[2] = bad[2], bad[1]
            assert td.hull_area_coverage(pts, bad, h) == 0.0
            # Dropping a vertex leaves a convex sub-polygon with less area.
            c = td.hull_area_coverage(pts, np.delete(ring, 1), h)
            assert 0 < c < 1
            sub_checked += 1
    assert sub_checked > 10
    # Batch mean: perfect predictions score 1, and pointers to padding score 0.
    assert td.hull_area_coverage_batch(d["x"], d["mask"], d["target"], d["target"], d["target_mask"]) == pytest.approx(1.0)
    bad = d["target"].copy()
    bad[:, 1] = d["x"].shape[1] - 1
    short = d["lengths"] < d["x"].shape[1]
    score = td.hull_area_coverage_batch(d["x"], d["mask"], bad, d["target"], d["target_mask"])
    assert score <= 1 - short.mean() + 1e-9


def test_truncate_at_closure():
    assert td.truncate_at_closure([3, 1, 2, 3, 0, 0]).tolist() == [3, 1, 2, 3]
    assert td.truncate_at_closure([3, 1, 2]).tolist() == [3, 1, 2]


def test_is_simple_polygon():
    sq = square_with_inside()[:4]
    assert td.is_simple_polygon(sq)
    assert not td.is_simple_polygon(sq[[0, 2, 1, 3]])
    # Folds back on itself along a line.
    assert not td.is_simple_polygon(np.array([[0, 0], [2, 0], [1, 0], [1, 1]], dtype=float))
    # Touches itself at a vertex lying on a non-adjacent edge.
    assert not td.is_simple_polygon(np.array([[0, 0], [2, 0], [2, 2], [1, 0], [0, 2]], dtype=float))


# ----------------------------------------------------------------------------- decoding mask


def test_mask_chosen():
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=bool)
    out = td.mask_chosen(mask, np.array([2, 0]))
    assert out.tolist() == [[True, True, False, False], [False, True, False, False]]
    assert mask[0, 2], "input not modified"
    assert td.mask_chosen(np.ones(3, bool), 1).tolist() == [True, False, True]
    # Greedy decoding with the mask always yields a permutation of the real positions.
    rng = np.random.default_rng(0)
    m = mask.copy()
    picks = []
    for _ in range(2):
        logits = np.where(m, rng.normal(size=m.shape), -np.inf)
        c = logits.argmax(1)
        picks.append(c)
        m = td.mask_chosen(m, c)
    assert sorted(np.array(picks)[:, 1].tolist()) == [0, 1]


# ----------------------------------------------------------------------------- workspace a + b


def pairs(split):
    return set(zip(split["a"].tolist(), split["b"].tolist()))


def test_workspace_split():
    s = td.workspace_split()
    train, held, ext, full = (pairs(s[k]) for k in ("train", "heldout", "extrap", "extrap_full"))
    assert not train & held and not (train | held) & full
    assert len(train | held) == 70 and len(held) == 14 and len(full) == 30
    assert ext <= full and len(ext) == 24
    assert max(b for _, b in ext) > max(b for _, b in train | held) == s["max_train_b"] == 6
    assert min(b for _, b in full) > s["max_train_b"]
    assert {a for a, _ in train} == set(range(10))
    assert {a + b for a, b in train} == set(range(16))
    trained_steps = {k for a, b in train for k in range(a, a + b)}
    assert all(set(range(a, a + b)) <= trained_steps for a, b in ext | held)
    for k in ("train", "heldout", "extrap", "extrap_full"):
        d = s[k]
        assert np.array_equal(d["sum"], d["a"] + d["b"]) and np.array_equal(d["steps"], d["b"])
        assert d["a"].dtype == np.int32
    assert s["n_numbers"] == 19 > max(a + b for a, b in full)
    # Deterministic for a seed, different for another.
    assert pairs(td.workspace_split(seed=0)["heldout"]) == held
    assert pairs(td.workspace_split(seed=1)["heldout"]) != held


def test_digit_images_and_pools():
    pytest.importorskip("sklearn")
    digits = td.load_digit_images()
    assert digits["images"].shape == (1797, 8, 8) and digits["images"].dtype == np.float32
    assert digits["images"].min() >= 0 and digits["images"].max() <= 1
    pools = td.split_digit_images(digits, seed=0)
    tr, te = pools["train"], pools["test"]
    assert not set(tr["index"].tolist()) & set(te["index"].tolist())
    assert len(tr["index"]) + len(te["index"]) == 1797
    assert np.all(np.abs(np.bincount(tr["labels"]) - np.bincount(te["labels"])) <= 1)
    labels = np.array([[3, 0], [9, 3]])
    imgs = td.digit_image_batch(7, tr, labels)
    assert imgs.shape == (2, 2, 8, 8) and imgs.dtype == np.float32
    # Each image is one of the pool's images of the requested digit.
    for lab, img in zip(labels.ravel(), imgs.reshape(-1, 8, 8)):
        hits = np.nonzero(np.all(tr["images"] == img, axis=(1, 2)))[0]
        assert len(hits) and tr["labels"][hits[0]] == lab
    assert np.array_equal(td.digit_image_batch(7, tr, labels), imgs)
    # Many draws of one digit from the test pool stay in the test pool.
    many = td.digit_image_batch(0, te, np.full(200, 5))
    test_fives = te["images"][te["labels"] == 5]
    assert all(np.any(np.all(test_fives == m, axis=(1, 2))) for m in many)
    assert len({m.tobytes() for m in many}) > 20


def test_digit_images_missing_sklearn(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        td.load_digit_images()


# ----------------------------------------------------------------------------- determinism


def test_generators_deterministic():
    for make in (td.sort_batch, td.hull_batch):
        a, b, c = make(42, 8, 5, 10), make(42, 8, 5, 10), make(43, 8, 5, 10)
        assert all(np.array_equal(a[k], b[k]) for k in a)
        assert not np.array_equal(a["x"], c["x"])
        g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
        assert np.array_equal(make(g1, 4, 5, 10)["x"], make(g2, 4, 5, 10)["x"])
        # A Generator advances: the next batch differs.
        assert not np.array_equal(make(g1, 4, 5, 10)["x"], make(np.random.default_rng(9), 4, 5, 10)["x"])
