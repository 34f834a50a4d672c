"""Boundary (edge) detection scores in the BSDS sense, without MATLAB (SPEC §6): the counting
kernel (:func:`boundary_counts`) and the scores from counts (:func:`bsds_scores`).

For every image and every threshold ``t_k = k / (K+1)``, ``k = 1..K`` (``K = 99``: 0.01, 0.02,
…, 0.99, as in the BSDS / edges-toolbox benchmark):

1. binarise the edge probability: a pixel is predicted when ``prob >= t_k``, compared in the
   map's own precision against the exact rational (a float64 map valued ``k / 100`` reaches
   ``t_k``: :mod:`mtcp.metrics.functional.thresholds`);
2. optionally thin the binary map to one-pixel-wide lines
   (:func:`mtcp.metrics.functional.thinning.thin`);
3. drop predicted and target pixels whose target is ``ignore_index`` (255);
4. match predicted boundary pixels one-to-one to target boundary pixels at Euclidean distance
   ``<= max_dist * sqrt(H² + W²)`` pixels (maximum-cardinality matching, see
   :mod:`mtcp.metrics.functional.matching`);
5. count ``cntR`` = matched target pixels, ``sumR`` = target pixels, ``cntP`` = matched predicted
   pixels, ``sumP`` = predicted pixels (with one target map per image ``cntR == cntP``).

From counts, ``R = cntR / sumR`` (recall), ``P = cntP / sumP`` (precision) and
``F = 2PR / (P + R)`` (0 when a denominator is 0), all fractions in ``[0, 1]``:

* ``odsF`` (optimal dataset scale): counts summed over all images per threshold, the best ``F``
  over thresholds. With ``interpolate=True`` (the BSDS / edges-toolbox rule) ``R`` and ``P`` are
  also linearly interpolated at 100 points between adjacent thresholds and the best of those is
  taken; ``odsT`` is the threshold where it is reached.
* ``oisF`` (optimal image scale): for each image the threshold with its best ``F`` (first one on
  ties, no interpolation), then that image's counts at that threshold are summed over images.
* ``AP``: area under the precision–recall curve of the pooled counts: keep one point per distinct
  recall (for equal recalls the lowest threshold, as MATLAB's ``unique`` does), interpolate
  ``P`` linearly in ``R`` at ``R = 0, 0.01, …, 1``, drop the points outside the measured recall
  range and take ``sum / 100``; 0 when fewer than two distinct recalls exist.

No non-maximum suppression is applied: the BSDS benchmark does not do it, and edge networks
that rely on it (HED / RCF style evaluations) apply it to their maps before the benchmark; pass
such maps if you want that protocol.

Speed: one numba kernel per image (:func:`boundary_counts`, GIL released, so
:class:`mtcp.metrics.BoundaryF` scores the images of a batch on ``num_workers`` threads). It
visits the distinct binarisations from the lowest threshold up (identical ones are done once);
each is thinned with a queue that only tests pixels whose neighbourhood just changed (cost ∝ the
pixels removed), and the maximum matching of one threshold, restricted to the pixels still
predicted, is the starting point of the next (:func:`~mtcp.metrics.functional.matching.augment`);
a threshold whose match count is pinned by the previous one skips the matching.
``benchmarks/bench_boundary.py`` measures it on 480x640 maps, one core: about 0.35 s of CPU
per image when nearly every pixel exceeds the low thresholds and 0.2 s for a trained-model-like
map (≈1.3 s before numba). The first call compiles the kernels (≈10 s); numba caches them on
disk (``__pycache__`` next to their files, else the user's cache directory, else not at all).
"""

from __future__ import annotations

import numpy as np

from mtcp.errors import MtcpError
from mtcp.metrics.functional.matching import augment, build_graph, disc_offsets, njit, pad_for
from mtcp.metrics.functional.thinning import LUTS, neighbour_offsets, thin_map
from mtcp.metrics.functional.thresholds import rational_thresholds, threshold_levels
from mtcp.tasks import IGNORE_INDEX


def bsds_thresholds(n: int = 99) -> np.ndarray:
    """The ``n`` BSDS thresholds ``k / (n + 1)``, ``k = 1..n`` (float64, each the nearest to the
    rational: :func:`mtcp.metrics.functional.thresholds.rational_thresholds`)."""
    return np.array(rational_thresholds(1, n, n + 1))


@njit
def _rank_order(rank, n_ranks, select):
    """Pixels with ``rank > 0`` and ``select`` by decreasing rank: those of rank ``>= j`` are
    ``order[:n_ge[j]]`` (int64 ``order``, ``n_ge`` ``[n_ranks + 2]``)."""
    n_ge = np.zeros(n_ranks + 2, dtype=np.int64)
    for p in range(rank.size):
        if select[p]:
            n_ge[rank[p]] += 1
    for j in range(n_ranks, -1, -1):
        n_ge[j] += n_ge[j + 1]
    fill = n_ge[1:].copy()  # next slot of rank r is fill[r], filled from n_ge[r + 1]
    order = np.empty(n_ge[1], dtype=np.int64)
    for p in range(rank.size):
        r = rank[p]
        if r > 0 and select[p]:
            order[fill[r]] = p
            fill[r] += 1
    return order, n_ge


@njit
def _rank_counts(rank, n_ranks, valid, targets, do_thin, nbr, disc, luts):
    """Predicted and matched pixels of the maps ``rank >= j``, ``j = 1..n_ranks``.

    Args:
        rank: int64 ``[N]`` flattened padded image (padding 0, so background).
        valid: bool ``[N]``: pixels that count; targets: int32 flat target pixels.
        do_thin: thin each map first. nbr: the 8 neighbour offsets; disc: the tolerance disc
            offsets (:func:`mtcp.metrics._matching.disc_offsets`); luts: thinning tables.

    Returns:
        int64 ``sum_p`` and ``matched``, ``[n_ranks + 1]`` (index 0: no prediction).

    The maximum matching of map ``j - 1`` restricted to the pixels still predicted is a valid
    matching of map ``j``: it is only augmented, and not at all when the number of matches is
    pinned (no match lost and nothing added, or everything matched).
    """
    n = rank.size
    ptr, adj, rptr, radj = build_graph(targets, valid, disc)
    near = ptr[1:] > ptr[:-1]  # valid pixels within tolerance of a target
    order, n_ge = _rank_order(rank, n_ranks, np.ones(n, dtype=np.bool_))
    near_order, near_ge = _rank_order(rank, n_ranks, near)
    _, valid_ge = _rank_order(rank, n_ranks, valid)
    low = np.empty(n, dtype=np.int32)  # smallest rank among the 8 neighbours
    fg = np.zeros(n, dtype=np.uint8)
    for p in order:
        fg[p] = 1
        m = rank[p]
        for o in nbr:
            m = min(m, rank[p + o])
        low[p] = m
    stamp = np.zeros(n, dtype=np.int32)
    bufs = np.empty((4, n), dtype=np.int32)
    removed = np.empty(n, dtype=np.int32)
    mate = np.full(n, -1, dtype=np.int32)
    tmate = np.full(targets.size, -1, dtype=np.int32)
    seen_at = np.full(n, -1, dtype=np.int32)  # last map j where the pixel was present
    present = np.empty(near_order.size, dtype=np.int32)
    before = np.empty(near_order.size, dtype=np.int32)
    work = np.zeros((5, n), dtype=np.int32)
    every_target = np.arange(targets.size, dtype=np.int32)
    usable = np.zeros(targets.size, dtype=np.int32)  # every target is always usable
    sum_p = np.zeros(n_ranks + 1, dtype=np.int64)
    matched = np.zeros(n_ranks + 1, dtype=np.int64)
    # Counters start as np.int64, not literal 0s, which numba would compile callees for.
    n_present = m = step = phase = np.int64(0)
    for j in range(1, n_ranks + 1):  # fg is the map rank >= j
        n_removed = 0
        if do_thin:
            n_border = np.int64(0)
            for i in range(n_ge[j]):
                p = order[i]
                if low[p] < j:
                    bufs[0, n_border] = p
                    n_border += 1
            step, n_removed = thin_map(fg, n_border, nbr, luts, stamp, step, bufs, removed)
        count = valid_ge[j]
        for i in range(n_removed):
            count -= valid[removed[i]]
        sum_p[j] = count
        present, before = before, present
        n_before, n_present, added = n_present, np.int64(0), 0
        for i in range(near_ge[j]):
            p = near_order[i]
            if fg[p]:
                added += seen_at[p] != j - 1
                seen_at[p] = j
                present[n_present] = p
                n_present += 1
        high = min(m + added, n_present, targets.size)
        for i in range(n_before):  # keep the matches of pixels still present
            p = before[i]
            if seen_at[p] != j and mate[p] >= 0:
                tmate[mate[p]] = -1
                mate[p] = -1
                m -= 1
        if m < high:  # grow from the side whose free vertices have fewer edges
            if (n_present - m) * targets.size <= (targets.size - m) * near_order.size:
                found, phase = augment(
                    present, n_present, adj, ptr, mate, tmate, usable, np.int64(0), work, phase
                )
            else:
                found, phase = augment(
                    every_target, targets.size, radj, rptr, tmate, mate, seen_at, j, work, phase
                )
            m += found
        matched[j] = m
        for i in range(n_removed):  # back to a plain map for rank >= j + 1
            p = removed[i]
            fg[p] = rank[p] > j
        for i in range(n_ge[j + 1], n_ge[j]):
            fg[order[i]] = 0
    return sum_p, matched


def boundary_counts(
    prob: np.ndarray,
    target: np.ndarray,
    max_dist: float = 0.011,
    thresholds: np.ndarray | None = None,
    thin: bool = True,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """BSDS counts of one image at every threshold.

    Args:
        prob: edge probabilities ``[H, W]`` in ``[0, 1]``.
        target: ``[H, W]``: 1 (or any value > 0.5) boundary, 0 not, ``ignore_index`` ignored.
        max_dist: tolerance as a fraction of the image diagonal.
        thresholds: ascending ``[K]``; default :func:`bsds_thresholds` (99).
        thin: thin each binarised prediction (:func:`thin`) before matching.
        ignore_index: target value whose pixels are left out of every count.

    Returns:
        int64 ``[K, 4]``: columns ``cntR, sumR, cntP, sumP`` (pixel counts).

    Releases the GIL for most of its run, so threads can score several images at once.
    """
    prob = np.asarray(prob)
    target = np.asarray(target)
    if prob.ndim != 2 or prob.shape != target.shape:
        raise MtcpError(
            f"edge: expected a probability map and a target of the same [H, W] shape, got "
            f"{prob.shape} and {target.shape}"
        )
    thresholds = bsds_thresholds() if thresholds is None else np.asarray(thresholds, np.float64)
    radius = max_dist * float(np.hypot(*prob.shape))
    valid = target != ignore_index
    tmask = valid & (target > 0.5)
    # Level k: predicted at the first k thresholds. Rank j >= 1 numbers the distinct levels.
    levels = threshold_levels(prob, thresholds, "edge")  # compared in the map's own precision
    used = np.bincount(levels.ravel(), minlength=thresholds.size + 1) > 0
    used[0] = False
    ks = np.flatnonzero(used)
    pad = pad_for(radius)
    rank = np.pad(np.cumsum(used)[levels], pad).ravel()
    stride = prob.shape[1] + 2 * pad
    t_flat = np.flatnonzero(np.pad(tmask, pad)).astype(np.int32)
    sum_p, matched = _rank_counts(
        rank,
        ks.size,
        np.pad(valid, pad).ravel(),
        t_flat,
        bool(thin),
        neighbour_offsets(stride),
        disc_offsets(radius, stride),
        LUTS,
    )
    # Threshold k (1-based) uses the first distinct level >= k, or no prediction at all.
    which = np.searchsorted(ks, np.arange(1, thresholds.size + 1), side="left") + 1
    which[which > ks.size] = 0
    counts = np.empty((thresholds.size, 4), dtype=np.int64)
    counts[:, 0] = matched[which]
    counts[:, 1] = t_flat.size
    counts[:, 2] = matched[which]
    counts[:, 3] = sum_p[which]
    return counts


_EPS = np.finfo(np.float64).eps


def _fmeasure(r: np.ndarray, p: np.ndarray) -> np.ndarray:
    return 2 * p * r / np.maximum(p + r, _EPS)


def _prf(cnt_r, sum_r, cnt_p, sum_p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = cnt_r / np.maximum(sum_r, _EPS)
    p = cnt_p / np.maximum(sum_p, _EPS)
    return r, p, _fmeasure(r, p)


def bsds_scores(
    counts: np.ndarray, thresholds: np.ndarray | None = None, interpolate: bool = True
) -> dict[str, float]:
    """``odsF``, ``odsT``, ``oisF`` and ``AP`` from per-image counts ``[N, K, 4]``.

    See the module docstring for the formulas. NaN when ``N == 0``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape[0] == 0:
        return {"odsF": float("nan"), "odsT": float("nan"), "oisF": float("nan"), "AP": 0.0}
    thresholds = bsds_thresholds(counts.shape[1]) if thresholds is None else thresholds
    r, p, f = _prf(*counts.sum(0).T)
    best = int(np.argmax(f))
    ods_f, ods_t = f[best], thresholds[best]
    if interpolate and len(thresholds) > 1:
        a = np.linspace(0.0, 1.0, 100)
        r_mix, p_mix, t_mix = (v[1:, None] * a + v[:-1, None] * (1 - a) for v in (r, p, thresholds))
        f_mix = _fmeasure(r_mix, p_mix)
        j, i = np.unravel_index(int(np.argmax(f_mix)), f_mix.shape)
        if f_mix[j, i] > ods_f:
            ods_f, ods_t = f_mix[j, i], t_mix[j, i]
    _, _, f_img = _prf(*np.moveaxis(counts, 2, 0))
    per_image_best = counts[np.arange(counts.shape[0]), np.argmax(f_img, axis=1)]
    ois_f = _prf(*per_image_best.sum(0))[2]
    recall, first = np.unique(r, return_index=True)
    ap = 0.0
    if recall.size > 1:
        grid = np.linspace(0.0, 1.0, 101)
        grid = grid[(grid >= recall[0]) & (grid <= recall[-1])]
        ap = float(np.interp(grid, recall, p[first]).sum() / 100)
    return {"odsF": float(ods_f), "odsT": float(ods_t), "oisF": float(ois_f), "AP": ap}
