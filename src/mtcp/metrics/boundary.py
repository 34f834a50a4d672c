"""Boundary (edge) detection metrics in the BSDS sense, without MATLAB (SPEC §6).

For every image and every threshold ``t_k`` of ``thresholds = linspace(1/(K+1), 1 - 1/(K+1), K)``
(``K = 99``: 0.01, 0.02, …, 0.99, as in the BSDS / edges-toolbox benchmark):

1. binarise the edge probability: a pixel is predicted when ``prob >= t_k``;
2. optionally thin the binary map to one-pixel-wide lines (:func:`thin`);
3. drop predicted and target pixels whose target is ``ignore_index`` (255);
4. match predicted boundary pixels one-to-one to target boundary pixels at Euclidean distance
   ``<= max_dist * sqrt(H² + W²)`` pixels (maximum-cardinality matching, see
   :mod:`mtcp.metrics._matching`);
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

Speed: the 99 binarisations are nested, so all distinct ones are thinned together in one
vectorised pass that only visits border pixels (cost ∝ total predicted area over thresholds);
identical binarisations are thinned once; a threshold whose count is pinned by the previous
one (identical pixels near the targets, or all matched and none added) skips the matching; the
candidate pairs are built once per image for the union of all thinned pixels within tolerance of
a target. ``benchmarks/bench_boundary.py`` measures it: about 1.2 s of CPU per 480x640 image
with thinning (one core, realistic soft predictions), split about evenly between thinning and
matching.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from mtcp.errors import MtcpError
from mtcp.metrics._matching import max_matching_size, pair_graph
from mtcp.tasks import IGNORE_INDEX

# Neighbours x1..x8 of the thinning rules as (dy, dx): E, NE, N, NW, W, SW, S, SE.
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))
_FG = np.uint16(0x8000)  # thinning state: bit 15 foreground, bits 8-14 queue stamp, 0-7 code
_STAMP_BITS = np.uint16(0x7F00)
_VOXEL_BUDGET = 1 << 23  # thinning works on at most this many pixels x thresholds at once


def bsds_thresholds(n: int = 99) -> np.ndarray:
    """The ``n`` BSDS thresholds ``linspace(1/(n+1), 1 - 1/(n+1), n)`` (float64)."""
    return np.linspace(1.0 / (n + 1), 1.0 - 1.0 / (n + 1), n)


def _thinning_luts() -> np.ndarray:
    """Deletion tables ``[2, 256]`` of the two sub-iterations, indexed by the neighbour code.

    Bit ``i`` of the code is neighbour ``x_{i+1}``. A pixel is deleted when
    G1: ``X_H = 1`` with ``X_H = #{i ≤ 4 : x_{2i-1} = 0 and (x_{2i} or x_{2i+1})}``;
    G2: ``2 <= min(n1, n2) <= 3`` with ``n1 = Σ_k (x_{2k-1} or x_{2k})``,
    ``n2 = Σ_k (x_{2k} or x_{2k+1})`` (``x9 = x1``); and G3 ``(x2 or x3 or not x8) and x1 == 0``
    in the first sub-iteration, G3' ``(x6 or x7 or not x4) and x5 == 0`` in the second.
    """
    luts = np.zeros((2, 256), dtype=bool)
    for code in range(256):
        x = [0, *((code >> i) & 1 for i in range(8)), code & 1]  # x[1..9], x9 = x1
        x_h = sum(1 for i in range(1, 5) if not x[2 * i - 1] and (x[2 * i] or x[2 * i + 1]))
        n1 = sum(1 for k in range(1, 5) if x[2 * k - 1] or x[2 * k])
        n2 = sum(1 for k in range(1, 5) if x[2 * k] or x[2 * k + 1])
        if x_h == 1 and 2 <= min(n1, n2) <= 3:
            luts[0, code] = not ((x[2] or x[3] or not x[8]) and x[1])
            luts[1, code] = not ((x[6] or x[7] or not x[4]) and x[5])
    return luts


# Indexed by the whole 16-bit state: deletable code and foreground.
_DELETE = np.tile(_thinning_luts(), (1, 256)) & (np.arange(1 << 16) >= 0x8000)


def _thin_levels(levels: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Thin the nested binary maps ``levels >= k`` for every ``k`` of ``ks`` at once.

    Args:
        levels: int ``[H, W]``.
        ks: ascending ints ``[n]``.

    Returns:
        bool ``[n, H, W]``: the thinned maps.

    Each sub-iteration only tests pixels whose neighbourhood changed during the two previous
    sub-iterations (initially: foreground pixels with a background 8-neighbour), so the cost
    is proportional to the pixels removed, not to the image size times the iterations.
    """
    h, w = levels.shape
    w2 = w + 2
    size = (h + 2) * w2
    padded = np.pad(levels, 1)
    state = (padded[None] >= ks[:, None, None]).astype(np.uint16).ravel()
    state *= np.uint16(0x80FF)  # foreground with all 8 neighbours set
    # Border pixels of map j are those with levels >= ks[j] > min over the 3x3 window.
    low = ndimage.minimum_filter(padded, size=3, mode="constant", cval=0).ravel()
    lo = np.searchsorted(ks, low, "right")
    cnt = np.searchsorted(ks, padded.ravel(), "right") - lo
    pix = np.flatnonzero(cnt > 0)
    cnt = cnt[pix]
    first = np.repeat(np.cumsum(cnt) - cnt, cnt)
    layer = np.repeat(lo[pix], cnt) + np.arange(first.size) - first
    border = layer * size + np.repeat(pix, cnt)
    offsets = [dy * w2 + dx for dy, dx in _NEIGHBOURS]
    code = np.zeros(border.size, dtype=np.uint16)
    for i, off in enumerate(offsets):
        code |= (state[border + off] >> np.uint16(15)) << np.uint16(i)
    state[border] = code | _FG
    clear = [np.uint16(0x80FF ^ (1 << i)) for i in range(8)]

    cand, prev, sub, step = border, border, 0, 0
    while cand.size:
        step += 1
        if step % 127 == 0:
            state &= np.uint16(0x80FF)  # stamps are about to wrap around: forget old ones
        mark = np.uint16((step % 127 + 1) << 8)
        dead = cand[_DELETE[sub][state[cand]]]
        state[dead] = 0
        touched = []
        for i, off in enumerate(offsets):
            p = dead - off  # pixels whose neighbour i was just removed
            s = state[p]
            alive = s >= _FG
            p, s = p[alive], s[alive]
            state[p] = (s & clear[i]) | mark
            touched.append(p[(s & _STAMP_BITS) != mark])
        new = np.concatenate(touched)
        s = state[prev]
        prev = prev[(s >= _FG) & ((s & _STAMP_BITS) != mark)]
        cand = np.concatenate([new, prev])
        prev = new
        sub ^= 1
    return (state >= _FG).reshape(len(ks), h + 2, w2)[:, 1:-1, 1:-1]


def thin(mask: np.ndarray) -> np.ndarray:
    """Morphological thinning of a binary ``[H, W]`` mask to 8-connected one-pixel-wide lines.

    The two-sub-iteration parallel algorithm of Guo & Hall (1989) in the formulation of Lam, Lee
    & Suen (1992) (the one MATLAB's ``bwmorph(BW, 'thin', Inf)`` applies), run until nothing
    changes; outside the image counts as background. Returns a bool mask.
    """
    mask = np.asarray(mask, dtype=bool)
    return _thin_levels(mask.astype(np.int32), np.ones(1, dtype=np.int32))[0]


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
    """
    prob = np.asarray(prob, dtype=np.float32)
    target = np.asarray(target)
    if prob.ndim != 2 or prob.shape != target.shape:
        raise MtcpError(
            f"edge: expected a probability map and a target of the same [H, W] shape, got "
            f"{prob.shape} and {target.shape}"
        )
    thresholds = bsds_thresholds() if thresholds is None else np.asarray(thresholds, np.float64)
    h, w = prob.shape
    radius = max_dist * float(np.hypot(h, w))
    valid = target != ignore_index
    tmask = valid & (target > 0.5)
    t_yx = np.argwhere(tmask)
    # Map index 0 is "no prediction"; map j >= 1 is the binarisation at level ks[j - 1].
    levels = np.searchsorted(thresholds, prob, side="right").astype(np.int32)
    ks = np.unique(levels[levels > 0])
    n_maps = ks.size + 1
    sum_p = np.zeros(n_maps, dtype=np.int64)
    near_pix: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
    near_idx = np.flatnonzero(
        ndimage.distance_transform_edt(~tmask) <= radius + 1e-6 if t_yx.size else np.zeros(0)
    )
    step = max(1, _VOXEL_BUDGET // ((h + 2) * (w + 2)))
    for lo in range(0, ks.size, step):
        chunk = ks[lo : lo + step]
        maps = _thin_levels(levels, chunk) if thin else levels[None] >= chunk[:, None, None]
        maps = maps.reshape(chunk.size, -1) & valid.reshape(1, -1)
        sum_p[1 + lo : 1 + lo + chunk.size] = maps.sum(1)
        layer, col = np.nonzero(maps[:, near_idx])
        ends = np.cumsum(np.bincount(layer, minlength=chunk.size))
        near_pix += np.split(near_idx[col], ends[:-1])
    union = np.unique(np.concatenate(near_pix))
    graph = pair_graph(np.stack(np.divmod(union, w), 1), t_yx, radius)
    matched = np.zeros(n_maps, dtype=np.int64)
    for j in range(1, n_maps):
        rows, before = near_pix[j], near_pix[j - 1]
        # Removing a pixel loses at most one match and adding one gains at most one, so the
        # previous count often pins this one down (e.g. every pixel matched, none added).
        kept = np.isin(rows, before, assume_unique=True).sum()
        low = matched[j - 1] - (before.size - kept)
        high = min(matched[j - 1] + rows.size - kept, rows.size)
        if low >= high:
            matched[j] = high
        else:
            matched[j] = max_matching_size(graph[np.searchsorted(union, rows)])
    # Threshold k (1-based) uses the first distinct level >= k, or no prediction at all.
    which = np.searchsorted(ks, np.arange(1, thresholds.size + 1), side="left") + 1
    which[which > ks.size] = 0
    counts = np.empty((thresholds.size, 4), dtype=np.int64)
    counts[:, 0] = matched[which]
    counts[:, 1] = len(t_yx)
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


class BoundaryF(Metric):
    """BSDS boundary metrics ``odsF``, ``oisF``, ``AP`` (fractions) and ``odsT`` (threshold).

    Args:
        max_dist: matching tolerance as a fraction of the image diagonal (0.011 NYUD,
            0.0075 PASCAL).
        n_thresholds: number of thresholds ``K`` (:func:`bsds_thresholds`).
        thin: thin each binarised prediction before matching (BSDS default).
        from_logits: apply a sigmoid to the predictions first (model outputs are logits).
        interpolate: BSDS interpolation between thresholds for ``odsF``.
        ignore_index: target value excluded from every count.

    State: one ``[K, 4]`` count array per image (``cntR, sumR, cntP, sumP``), concatenated across
    processes, since ``oisF`` needs each image's best threshold. ``per_image_counts()`` returns
    them ``[N, K, 4]`` (process order after a sync).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        max_dist: float = 0.011,
        n_thresholds: int = 99,
        thin: bool = True,
        from_logits: bool = False,
        interpolate: bool = True,
        ignore_index: int = IGNORE_INDEX,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.max_dist = float(max_dist)
        self.thresholds = bsds_thresholds(int(n_thresholds))
        self.thin = bool(thin)
        self.from_logits = bool(from_logits)
        self.interpolate = bool(interpolate)
        self.ignore_index = int(ignore_index)
        self.add_state("counts", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch.

        Args:
            preds: ``[B, 1, H, W]`` (or ``[B, H, W]``) edge probabilities in ``[0, 1]``, or
                logits when ``from_logits=True``.
            target: same shape, 1 boundary, 0 not, ``ignore_index`` ignored.
        """
        if preds.dim() == 4:
            preds = preds[:, 0]
        if target.dim() == 4:
            target = target[:, 0]
        if preds.dim() != 3 or preds.shape != target.shape:
            raise MtcpError(
                f"edge: expected predictions and targets [B, 1, H, W] of the same shape, got "
                f"{tuple(preds.shape)} and {tuple(target.shape)}"
            )
        probs = preds.detach().float()
        probs = probs.sigmoid() if self.from_logits else probs
        probs, target = probs.cpu().numpy(), target.detach().cpu().numpy()
        for prob, tgt in zip(probs, target):
            counts = boundary_counts(
                prob, tgt, self.max_dist, self.thresholds, self.thin, self.ignore_index
            )
            self.counts.append(torch.from_numpy(counts)[None].to(self.device))

    def per_image_counts(self) -> np.ndarray:
        """int64 ``[N, K, 4]``: ``cntR, sumR, cntP, sumP`` of every image seen so far."""
        if isinstance(self.counts, list) and not self.counts:
            return np.zeros((0, len(self.thresholds), 4), dtype=np.int64)
        return dim_zero_cat(self.counts).cpu().numpy()

    def compute(self) -> dict[str, float]:
        """``{"odsF", "odsT", "oisF", "AP"}`` (see the module docstring)."""
        return bsds_scores(self.per_image_counts(), self.thresholds, self.interpolate)
