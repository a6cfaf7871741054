"""Data generators and metrics for the pointer-network and global-workspace tasks.

Pure numpy on purpose: the trainers turn these arrays into jax arrays, and the
tests can check the tasks themselves (are the targets right? are the splits
disjoint?) without compiling any model.

Every generator takes ``rng``: a ``numpy.random.Generator`` or an int seed, so a
fixed seed gives the same batch on every machine.

Padding convention (all pointer tasks): a batch mixes lengths, so inputs are
padded to one width ``n`` (``n_max`` or ``pad_to``) and come with
``mask[b, i]`` = "position i of example b is a real input".  Padding positions
must never be pointed to: no target points at one, a decoder must give them
zero probability (mask its logits), and a prediction that points at one is
wrong.  Padded target slots hold 0 and are switched off by ``target_mask``;
losses and metrics must ignore them.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = [
    "sort_batch",
    "hull_batch",
    "convex_hull_indices",
    "exact_sequence_accuracy",
    "per_token_accuracy",
    "truncate_at_closure",
    "polygon_area",
    "is_simple_polygon",
    "hull_area_coverage",
    "hull_area_coverage_batch",
    "mask_chosen",
    "workspace_split",
    "load_digit_images",
    "split_digit_images",
    "digit_image_batch",
]


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Accept a Generator (used as is, so calls advance it) or a seed."""
    return np.random.default_rng(rng)


def _lengths_and_width(rng, batch, n_min, n_max, pad_to, smallest):
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if not smallest <= n_min <= n_max:
        raise ValueError(f"need {smallest} <= n_min <= n_max, got n_min={n_min}, n_max={n_max}")
    width = n_max if pad_to is None else pad_to
    if width < n_max:
        raise ValueError(f"pad_to={pad_to} is smaller than n_max={n_max}")
    # n is drawn uniformly from n_min..n_max inclusive, one per example.
    lengths = rng.integers(n_min, n_max + 1, size=batch).astype(np.int32)
    mask = np.arange(width)[None, :] < lengths[:, None]
    return lengths, width, mask


# --------------------------------------------------------------------------- sorting


def sort_batch(rng, batch: int, n_min: int, n_max: int, pad_to: int | None = None) -> dict[str, np.ndarray]:
    """A batch of the sorting task: point to the inputs in increasing order.

    Returns
      x            float32[batch, n, 1]  uniform [0, 1) inputs, 0.0 in padding
      mask         bool[batch, n]        real input positions (n = pad_to or n_max)
      target       int32[batch, n]       target[b, t] = index of the t-th smallest
                                         input (argsort), 0 in padding slots
      target_mask  bool[batch, n]        real output steps (equal to mask: an
                                         example of length L has L outputs)
      lengths      int32[batch]
    Mixed lengths per batch; see the module docstring for the padding rule.
    """
    rng = _rng(rng)
    lengths, width, mask = _lengths_and_width(rng, batch, n_min, n_max, pad_to, 1)
    x = rng.random((batch, width)).astype(np.float32)
    x[~mask] = 0.0
    # Padding sorts after every real value (inf key), so the first L entries of
    # each argsort are exactly that example's order; stable for the (measure
    # zero) case of equal draws.
    keys = np.where(mask, x, np.inf)
    target = np.argsort(keys, axis=1, kind="stable").astype(np.int32)
    target[~mask] = 0
    return {
        "x": x[:, :, None],
        "mask": mask,
        "target": target,
        "target_mask": mask.copy(),
        "lengths": lengths,
    }


# --------------------------------------------------------------------------- convex hull


def _cross(o, a, b) -> float:
    """z of (a - o) x (b - o): > 0 when o -> a -> b turns left (counter-clockwise)."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def convex_hull_indices(points: np.ndarray) -> np.ndarray:
    """Indices of the convex hull of ``points`` (float[k, 2]), as the task wants them.

    Andrew's monotone chain.  Vertices only (points on an edge, collinear, are
    not vertices and are left out), counter-clockwise, starting from the hull
    vertex with the LOWEST INPUT INDEX (the convention of Vinyals et al. 2015),
    and closed: the start index is repeated at the end.  So a hull of h
    vertices gives h + 1 indices.  Needs at least 3 points not all collinear.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be [k, 2], got shape {pts.shape}")
    order = np.lexsort((pts[:, 1], pts[:, 0]))  # by x, then y
    p = [tuple(pts[i]) for i in order]
    idx = [int(i) for i in order]

    def chain(seq):
        out: list[int] = []
        for j in seq:
            while len(out) >= 2 and _cross(p[out[-2]], p[out[-1]], p[j]) <= 0:
                out.pop()
            out.append(j)
        return out

    lower = chain(range(len(p)))
    upper = chain(range(len(p) - 1, -1, -1))
    ring = [idx[j] for j in lower[:-1] + upper[:-1]]  # counter-clockwise, no repeat
    # Remove exact duplicate points (two inputs at one place): keep the first.
    seen, hull = set(), []
    for i in ring:
        if tuple(pts[i]) not in seen:
            seen.add(tuple(pts[i]))
            hull.append(i)
    if len(hull) < 3:
        raise ValueError("degenerate point set: the convex hull has fewer than 3 vertices")
    start = hull.index(min(hull))
    hull = hull[start:] + hull[:start]
    return np.asarray(hull + [hull[0]], dtype=np.int32)


def hull_batch(
    rng,
    batch: int,
    n_min: int,
    n_max: int,
    pad_to: int | None = None,
    target_pad_to: int | None = None,
) -> dict[str, np.ndarray]:
    """A batch of the planar convex hull task.

    Returns
      x              float32[batch, n, 2]  points uniform in the unit square, 0 in padding
      mask           bool[batch, n]        real points (n = pad_to or n_max)
      target         int32[batch, m]       hull as input indices: counter-clockwise,
                                           from the hull vertex with the lowest index,
                                           closed by pointing back to it; 0 after the end
      target_mask    bool[batch, m]        real output steps (hull size + 1 per example)
      target_lengths int32[batch]          hull size + 1 (the closing step counts)
      lengths        int32[batch]          number of points
    m defaults to n + 1, the longest closed hull n points can have, so the
    shape depends only on the padding and a jit-compiled step never recompiles.
    """
    rng = _rng(rng)
    lengths, width, mask = _lengths_and_width(rng, batch, n_min, n_max, pad_to, 3)
    m = width + 1 if target_pad_to is None else target_pad_to
    x = rng.random((batch, width, 2)).astype(np.float32)
    x[~mask] = 0.0
    target = np.zeros((batch, m), dtype=np.int32)
    target_mask = np.zeros((batch, m), dtype=bool)
    target_lengths = np.zeros(batch, dtype=np.int32)
    for b in range(batch):
        # float32 points, hull computed on exactly the values the model sees.
        h = convex_hull_indices(x[b, : lengths[b]])
        if len(h) > m:
            raise ValueError(f"target_pad_to={m} is too short for a closed hull of {len(h)} steps")
        target[b, : len(h)] = h
        target_mask[b, : len(h)] = True
        target_lengths[b] = len(h)
    return {
        "x": x,
        "mask": mask,
        "target": target,
        "target_mask": target_mask,
        "target_lengths": target_lengths,
        "lengths": lengths,
    }


# --------------------------------------------------------------------------- sequence metrics


def _as_2d(pred, target, mask):
    pred = np.atleast_2d(np.asarray(pred))
    target = np.atleast_2d(np.asarray(target))
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
    mask = np.ones(target.shape, dtype=bool) if mask is None else np.atleast_2d(np.asarray(mask, dtype=bool))
    if mask.shape != target.shape:
        raise ValueError(f"mask shape {mask.shape} != target shape {target.shape}")
    return pred, target, mask


def exact_sequence_accuracy(pred, target, mask=None) -> float:
    """Fraction of sequences whose every real step (mask True) is right.

    Arrays are [batch, steps] (a single [steps] sequence is also accepted);
    padded steps are ignored whatever they hold.
    """
    pred, target, mask = _as_2d(pred, target, mask)
    ok = np.all((pred == target) | ~mask, axis=-1)
    return float(np.mean(ok))


def per_token_accuracy(pred, target, mask=None) -> float:
    """Fraction of real steps (mask True), over the whole batch, that are right."""
    pred, target, mask = _as_2d(pred, target, mask)
    total = int(mask.sum())
    if total == 0:
        raise ValueError("mask selects no step: per-token accuracy is undefined")
    return float(((pred == target) & mask).sum() / total)


# --------------------------------------------------------------------------- polygon metrics


def truncate_at_closure(seq) -> np.ndarray:
    """Cut a decoded pointer sequence just after it first points back to its start.

    A greedy hull decoder runs for a fixed number of steps; the prediction is
    what it emitted up to and including the closing step.  A sequence that
    never closes is returned whole (and will usually be invalid).
    """
    seq = np.asarray(seq).reshape(-1)
    if seq.size == 0:
        return seq
    back = np.nonzero(seq[1:] == seq[0])[0]
    return seq if back.size == 0 else seq[: back[0] + 2]


def polygon_area(vertices: np.ndarray) -> float:
    """Unsigned shoelace area of a polygon given as float[k, 2] vertices, not closed."""
    v = np.asarray(vertices, dtype=np.float64)
    if len(v) < 3:
        return 0.0
    x, y = v[:, 0], v[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _on_segment(p, q, r) -> bool:
    """q collinear with p-r: does it lie within the segment's bounding box?"""
    return min(p[0], r[0]) <= q[0] <= max(p[0], r[0]) and min(p[1], r[1]) <= q[1] <= max(p[1], r[1])


def _segments_intersect(p1, p2, q1, q2) -> bool:
    """Closed segments p1-p2 and q1-q2 share a point (crossing, touching or overlapping)."""
    d1 = _cross(q1, q2, p1)
    d2 = _cross(q1, q2, p2)
    d3 = _cross(p1, p2, q1)
    d4 = _cross(p1, p2, q2)
    if ((d1 > 0 and d2 < 0) or (d1 < 0 and d2 > 0)) and ((d3 > 0 and d4 < 0) or (d3 < 0 and d4 > 0)):
        return True
    return (
        (d1 == 0 and _on_segment(q1, p1, q2))
        or (d2 == 0 and _on_segment(q1, p2, q2))
        or (d3 == 0 and _on_segment(p1, q1, p2))
        or (d4 == 0 and _on_segment(p1, q2, p2))
    )


def is_simple_polygon(vertices: np.ndarray) -> bool:
    """True when the closed polygon through float[k, 2] vertices (not closed) is simple.

    Simple: at least 3 vertices, no two at the same place, edges meeting only
    where consecutive edges share their vertex.  Non-adjacent edges may not
    touch at all; adjacent edges may not fold back over each other.  O(k^2).
    """
    v = [tuple(map(float, p)) for p in np.asarray(vertices, dtype=np.float64)]
    k = len(v)
    if k < 3 or len(set(v)) < k:
        return False
    edges = [(v[i], v[(i + 1) % k]) for i in range(k)]
    for i in range(k):
        a, b = edges[i]
        c = edges[(i + 1) % k][1]
        # Adjacent edges a-b, b-c: they fold over each other iff collinear and c
        # lies back towards a.
        if _cross(a, b, c) == 0 and (a[0] - b[0]) * (c[0] - b[0]) + (a[1] - b[1]) * (c[1] - b[1]) > 0:
            return False
        for j in range(i + 2, k):
            if i == 0 and j == k - 1:
                continue  # edges k-1 and 0 are adjacent (share v[0])
            if _segments_intersect(a, b, *edges[j]):
                return False
    return True


def _open_ring(indices) -> np.ndarray:
    idx = np.asarray(indices).reshape(-1).astype(np.int64)
    if idx.size >= 2 and idx[-1] == idx[0]:
        idx = idx[:-1]  # the closing step is not a new vertex
    return idx


def hull_area_coverage(points, pred_indices, true_indices) -> float:
    """Area of the predicted polygon over the true hull's area (Vinyals et al. 2015).

    ``pred_indices`` and ``true_indices`` index into ``points`` (float[k, 2]);
    each may end with a repeat of its first index (the closing step), which is
    dropped.  The prediction counts 0 when it is not a valid polygon: an index
    out of range, fewer than 3 points, any repeated point other than the
    closing one, or a self-intersecting (non-simple) polygon.  Orientation is
    not judged here (a clockwise hull covers the same area); the sequence
    accuracies judge the order.  A valid polygon on the input points lies
    inside the hull, so the value is in [0, 1].
    """
    pts = np.asarray(points, dtype=np.float64)
    true = _open_ring(true_indices)
    true_area = polygon_area(pts[true])
    if true_area <= 0:
        raise ValueError("the true hull has zero area")
    pred = _open_ring(pred_indices)
    if pred.size < 3 or np.any(pred < 0) or np.any(pred >= len(pts)) or len(set(pred.tolist())) < pred.size:
        return 0.0
    if not is_simple_polygon(pts[pred]):
        return 0.0
    return polygon_area(pts[pred]) / true_area


def hull_area_coverage_batch(x, mask, pred, target, target_mask, pred_mask=None) -> float:
    """Mean ``hull_area_coverage`` over a padded batch (the arrays of ``hull_batch``).

    Each prediction row is cut with ``pred_mask`` when given, otherwise at its
    first return to its start (``truncate_at_closure``: what greedy decoding
    yields).  A pointer to a padding position makes the prediction invalid (0).
    """
    x, mask = np.asarray(x), np.asarray(mask, dtype=bool)
    pred, target, target_mask = np.asarray(pred), np.asarray(target), np.asarray(target_mask, dtype=bool)
    scores = []
    for b in range(x.shape[0]):
        n = int(mask[b].sum())
        row = pred[b][np.asarray(pred_mask[b], dtype=bool)] if pred_mask is not None else truncate_at_closure(pred[b])
        # Only the first n positions are points; anything else points at padding.
        scores.append(hull_area_coverage(x[b, :n], row, target[b][target_mask[b]]))
    return float(np.mean(scores))


# --------------------------------------------------------------------------- decoding


def mask_chosen(mask, chosen_index) -> np.ndarray:
    """Numpy reference for greedy pointer decoding: switch off the positions just chosen.

    ``mask`` bool[batch, n] (or [n]) says which positions may still be pointed
    to; ``chosen_index`` int[batch] (or a scalar) the position chosen this
    step.  Returns a new mask (the input is not modified).  For the hull, the
    decoder must still be able to close the polygon: re-allow the start with
    ``new_mask | (np.arange(n) == start[:, None])`` after the first step.
    """
    mask = np.asarray(mask, dtype=bool)
    chosen = np.asarray(chosen_index)
    return mask & (np.arange(mask.shape[-1]) != chosen[..., None])


# --------------------------------------------------------------------------- global workspace a + b


def _pairs(a, b) -> dict[str, np.ndarray]:
    a = np.asarray(a, dtype=np.int32)
    b = np.asarray(b, dtype=np.int32)
    return {"a": a, "b": b, "sum": (a + b).astype(np.int32), "steps": b.copy()}


def _covers(pairs: list[tuple[int, int]], max_digit: int, max_train_b: int) -> bool:
    """Training pairs show every a, every b, every sum and every increment k -> k+1 used."""
    max_sum = max_digit + max_train_b
    a_seen = {a for a, _ in pairs}
    b_seen = {b for _, b in pairs}
    sums = {a + b for a, b in pairs}
    steps = {k for a, b in pairs for k in range(a, a + b)}
    return (
        a_seen == set(range(max_digit + 1))
        and b_seen == set(range(max_train_b + 1))
        and sums == set(range(max_sum + 1))
        and steps == set(range(max_sum))
    )


def workspace_split(
    max_digit: int = 9,
    heldout_frac: float = 0.2,
    extrap_b: Sequence[int] = (7, 8, 9),
    seed: int = 0,
) -> dict[str, Any]:
    """Train / held-out / extrapolation pairs for a + b through a global workspace.

    The model adds by starting at a and applying Increment b times, so
    ``steps`` = b.  Numbers live in 0..N-1 with ``n_numbers`` N = 2*max_digit+1,
    one more than the largest sum.

    - Pairs with b < min(extrap_b) (b <= 6 by default) form the interpolation
      pool; ``heldout_frac`` of them (rounded) are held out, chosen at random
      from ``seed`` but never a pair whose removal would leave training
      without some a, some b, some sum, or some increment k -> k+1 that
      another pair needs.  So ``train`` covers a = 0..9, b = 0..6, sums 0..15
      and every increment 0->1 .. 14->15, and ``heldout`` (interpolation)
      asks for new combinations of things seen.
    - ``extrap``: pairs with b in extrap_b, larger than every training b, so
      more steps than ever trained, restricted to a + b <= the largest
      training sum so that every single increment on the way was trained.
      ``extrap_full`` has all pairs with b in extrap_b; its sums above 15 need
      increments training never showed (fine for hand-designed modules, not a
      fair test of learned ones).

    Each split is a dict of int32 arrays ``a``, ``b``, ``sum``, ``steps``.
    """
    extrap_b = sorted({int(b) for b in extrap_b})
    if not extrap_b or extrap_b[0] < 1 or extrap_b[-1] > max_digit:
        raise ValueError(f"extrap_b must be values in 1..{max_digit}, got {extrap_b}")
    if not 0 <= heldout_frac < 1:
        raise ValueError(f"heldout_frac must be in [0, 1), got {heldout_frac}")
    max_train_b = extrap_b[0] - 1
    pool = [(a, b) for a in range(max_digit + 1) for b in range(max_train_b + 1)]
    n_heldout = int(round(heldout_frac * len(pool)))
    rng = np.random.default_rng(seed)
    train = list(pool)
    heldout: list[tuple[int, int]] = []
    for i in rng.permutation(len(pool)):
        if len(heldout) == n_heldout:
            break
        candidate = [p for p in train if p != pool[i]]
        if _covers(candidate, max_digit, max_train_b):
            train = candidate
            heldout.append(pool[i])
    if len(heldout) < n_heldout:
        raise ValueError(f"cannot hold out {n_heldout} pairs and still cover every a, b, sum and step")
    heldout.sort()
    max_sum = max_digit + max_train_b
    extrap_full = [(a, b) for a in range(max_digit + 1) for b in extrap_b]
    extrap = [(a, b) for a, b in extrap_full if a + b <= max_sum]

    def arrays(pairs):
        return _pairs([a for a, _ in pairs], [b for _, b in pairs])

    return {
        "train": arrays(train),
        "heldout": arrays(heldout),
        "extrap": arrays(extrap),
        "extrap_full": arrays(extrap_full),
        "n_numbers": 2 * max_digit + 1,
        "max_train_b": max_train_b,
    }


def load_digit_images() -> dict[str, np.ndarray]:
    """scikit-learn's bundled 8x8 handwritten digits: shipped inside the package, never downloaded.

    Returns ``images`` float32[1797, 8, 8] scaled from 0..16 to [0, 1] and
    ``labels`` int32[1797].
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - depends on the environment
        from ..errors import MissingDependency

        raise MissingDependency("the digit images come from scikit-learn's bundled 8x8 digits, and scikit-learn "
                                "is not installed; install it with: python3 -m pip install scikit-learn") from None
    d = load_digits()
    return {
        "images": (np.asarray(d.images, dtype=np.float32) / 16.0),
        "labels": np.asarray(d.target, dtype=np.int32),
    }


def split_digit_images(digits: dict[str, np.ndarray], seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Split each class's images 50/50 into a train pool and a test pool (fixed seed).

    Test pairs then show images never seen in training, so held-out accuracy
    measures generalisation over handwriting as well as over pairs.  Each pool
    has ``images``, ``labels`` and ``index`` (row in the full set).
    """
    labels = np.asarray(digits["labels"])
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in np.unique(labels):
        rows = rng.permutation(np.nonzero(labels == c)[0])
        half = len(rows) // 2
        train_idx.append(rows[:half])
        test_idx.append(rows[half:])
    pools = {}
    for name, idx in (("train", train_idx), ("test", test_idx)):
        idx = np.sort(np.concatenate(idx))
        pools[name] = {"images": digits["images"][idx], "labels": labels[idx], "index": idx}
    return pools


def digit_image_batch(rng, digits: dict[str, np.ndarray], labels) -> np.ndarray:
    """For each requested label, a random image of that digit from the pool ``digits``.

    ``labels`` int of any shape; returns float32[*labels.shape, 8, 8].  Use
    the ``train`` pool of ``split_digit_images`` for training batches and the
    ``test`` pool for evaluation.
    """
    rng = _rng(rng)
    labels = np.asarray(labels, dtype=np.int64)
    pool_labels = np.asarray(digits["labels"])
    order = np.argsort(pool_labels, kind="stable")
    n_classes = int(pool_labels.max()) + 1
    counts = np.bincount(pool_labels, minlength=n_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes or np.any(counts[labels] == 0)):
        raise ValueError("a requested label has no image in this pool")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pick = starts[labels] + rng.integers(0, counts[labels])
    return np.asarray(digits["images"])[order[pick]].astype(np.float32)
