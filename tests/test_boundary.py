"""BSDS boundary metrics: thinning, one-to-one matching, odsF / oisF / AP, process sync."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy import ndimage
from scipy.sparse import csr_array
from scipy.sparse.csgraph import maximum_bipartite_matching

from mtcp.errors import MtcpError
from mtcp.metrics import to_floats
from mtcp.metrics.boundary import BoundaryF
from mtcp.metrics.functional import boundary_counts, bsds_scores, bsds_thresholds, match_count, thin


def _lines(h: int = 64, w: int = 96) -> np.ndarray:
    """Thin (thinning-stable) target: two straight lines and a diagonal."""
    t = np.zeros((h, w), dtype=np.uint8)
    t[10, 5:80] = 1
    t[20:60, 30] = 1
    idx = np.arange(25, 55)
    t[idx, idx + 20] = 1
    return t


def _score(pred: np.ndarray, target: np.ndarray, **kwargs) -> dict[str, float]:
    m = BoundaryF(**kwargs)
    m.update(torch.as_tensor(pred, dtype=torch.float32)[None, None], torch.as_tensor(target)[None])
    return m.compute()


def test_thinning_makes_lines_one_pixel_wide_and_keeps_thin_lines() -> None:
    bar = np.zeros((20, 40), dtype=bool)
    bar[8:11, 5:35] = True  # 3 px wide
    out = thin(bar)
    assert out.sum() > 0 and (out.sum(0)[8:32] == 1).all()  # one pixel per column inside
    assert (out <= bar).all()
    line = _lines().astype(bool)
    assert (thin(line) == line).all()


def _reference_thin(mask: np.ndarray) -> np.ndarray:
    """Guo–Hall thinning written directly from its conditions, one whole-image pass at a time."""
    x = np.pad(np.asarray(mask, bool), 1)
    changed = True
    while changed:
        changed = False
        for sub in (0, 1):
            nb = [np.roll(x, (-dy, -dx), (0, 1)) for dy, dx in _NEIGHBOURS]
            n = [None, *nb, nb[0]]  # n[1..9], x9 = x1
            x_h = sum((~n[2 * i - 1] & (n[2 * i] | n[2 * i + 1])).astype(int) for i in range(1, 5))
            n1 = sum((n[2 * k - 1] | n[2 * k]).astype(int) for k in range(1, 5))
            n2 = sum((n[2 * k] | n[2 * k + 1]).astype(int) for k in range(1, 5))
            a, b, c, d = (n[2], n[3], n[8], n[1]) if sub == 0 else (n[6], n[7], n[4], n[5])
            g3 = ~((a | b | ~c) & d)
            delete = x & (x_h == 1) & (np.minimum(n1, n2) >= 2) & (np.minimum(n1, n2) <= 3) & g3
            changed |= bool(delete.any())
            x &= ~delete
    return x[1:-1, 1:-1]


_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def test_thinning_equals_reference_implementation() -> None:
    rng = np.random.default_rng(0)
    for i in range(12):
        if i % 3 == 0:
            mask = rng.random((30, 40)) < 0.5
        else:
            smooth = ndimage.gaussian_filter(rng.random((30, 40)), rng.uniform(0.7, 3))
            mask = smooth > np.quantile(smooth, rng.uniform(0.2, 0.7))
        assert (thin(mask) == _reference_thin(mask)).all()


def test_thinning_equals_skimage_thin() -> None:
    """scikit-image's ``thin`` (the same Guo-Hall / Lam-Lee-Suen rules) as an independent oracle."""
    from skimage.morphology import thin as skimage_thin

    rng = np.random.default_rng(7)
    masks = [np.ones((9, 13), bool), np.zeros((5, 5), bool), np.eye(12, dtype=bool)]
    for i in range(20):
        shape = (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
        if i % 4 == 0:
            masks.append(rng.random(shape) < rng.uniform(0.2, 0.8))
        else:
            smooth = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.7, 3))
            masks.append(smooth > np.quantile(smooth, rng.uniform(0.2, 0.7)))
    for mask in masks:
        assert (thin(mask) == skimage_thin(mask)).all(), mask.shape


def _brute_matches(a: np.ndarray, b: np.ndarray, radius: float) -> int:
    pa, pb = np.argwhere(a), np.argwhere(b)
    if not (len(pa) and len(pb)):
        return 0
    near = np.hypot(*(pa[:, None] - pb[None]).transpose(2, 0, 1)) <= radius
    return int((maximum_bipartite_matching(csr_array(near.astype(np.int8))) >= 0).sum())


def test_counts_equal_brute_force_at_every_threshold() -> None:
    """Nested thinning, reused matchings and skipped thresholds change nothing."""
    rng = np.random.default_rng(4)
    h, w, max_dist = 36, 48, 0.04
    for _ in range(2):
        t = (rng.random((h, w)) < 0.05).astype(np.uint8)
        t[rng.random((h, w)) < 0.03] = 255
        ridge = ndimage.gaussian_filter((t == 1).astype(float), 1) * 4
        prob = np.clip(ridge + 0.3 * rng.random((h, w)), 0, 1).astype(np.float32)
        valid, tmask = t != 255, t == 1
        for thin_ in (True, False):
            expected = []
            for k in bsds_thresholds():
                p = (_reference_thin(prob >= k) if thin_ else prob >= k) & valid
                m = _brute_matches(p, tmask, max_dist * np.hypot(h, w))
                expected.append((m, tmask.sum(), m, p.sum()))
            assert (boundary_counts(prob, t, max_dist, thin=thin_) == expected).all()


def test_matching_is_maximum_one_to_one() -> None:
    rng = np.random.default_rng(1)
    for _ in range(30):
        radius = rng.uniform(0.5, 4)
        a = rng.random((25, 30)) < rng.uniform(0.02, 0.5)
        b = rng.random((25, 30)) < rng.uniform(0.02, 0.5)
        assert match_count(a, b, radius) == _brute_matches(a, b, radius)
    # Two predicted pixels next to one target pixel: one match; a chain needs the maximum.
    t = np.zeros((10, 10), bool)
    t[5, 5] = True
    p = np.zeros((10, 10), bool)
    p[5, 4] = p[5, 6] = True
    assert match_count(p, t, 1.5) == 1
    t[5, 7] = True  # (5,6) can take either target, (5,4) only (5,5): both match
    assert match_count(p, t, 1.5) == 2


def test_identical_prediction_scores_one() -> None:
    t = _lines()
    for thin_ in (True, False):
        s = _score(t.astype(np.float32), t, thin=thin_)
        assert s["odsF"] == pytest.approx(1.0) and s["oisF"] == pytest.approx(1.0)


def test_shift_within_tolerance_matches_and_beyond_does_not() -> None:
    t = np.zeros((64, 96), dtype=np.uint8)
    t[10:50, 40] = 1
    radius = 0.03 * np.hypot(64, 96)  # 3.46 px
    near = np.roll(t, 3, axis=1).astype(np.float32)
    far = np.roll(t, 4 + int(radius), axis=1).astype(np.float32)
    assert _score(near, t, max_dist=0.03)["odsF"] == pytest.approx(1.0)
    assert _score(far, t, max_dist=0.03)["odsF"] == 0.0


def test_hand_computed_counts_and_scores() -> None:
    # One image: targets (5,5), (10,10); predictions (5,5), (5,6) (both near (5,5) only) and
    # (15,15) far away. r = 1.5 px: one match. R = 1/2, P = 1/3, F = 0.4 at every threshold.
    t = np.zeros((20, 20), dtype=np.uint8)
    t[5, 5] = t[10, 10] = 1
    p = np.zeros((20, 20), dtype=np.float32)
    p[5, 5] = p[5, 6] = p[15, 15] = 1.0
    max_dist = 1.5 / np.hypot(20, 20)
    counts = boundary_counts(p, t, max_dist, thin=False)
    assert (counts == [1, 2, 1, 3]).all()
    assert _score(p, t, max_dist=max_dist, thin=False)["odsF"] == pytest.approx(0.4)

    # Two images where ODS and OIS differ (thresholds 0.01 … 0.99):
    # image 1: hit at 0.905, false positive at 0.305; image 2: hit at 0.205.
    t1 = np.zeros((20, 20), dtype=np.uint8)
    t1[5, 5] = 1
    p1 = np.zeros((20, 20), dtype=np.float32)
    p1[5, 5], p1[15, 15] = 0.905, 0.305
    p2 = np.zeros((20, 20), dtype=np.float32)
    p2[5, 5] = 0.205
    counts = np.stack([boundary_counts(p, t1, 0.05, thin=False) for p in (p1, p2)])
    for interpolate in (True, False):
        s = bsds_scores(counts, bsds_thresholds(), interpolate)
        # pooled: k <= 20: R 1, P 2/3 (F 0.8); k 21-30: R .5, P .5; k 31-90: R .5, P 1; else 0
        assert s["odsF"] == pytest.approx(0.8)
        assert s["odsT"] == pytest.approx(0.01)
        assert s["oisF"] == pytest.approx(1.0)  # each image at its own best threshold
        # AP: P(R) through (0, 0), (.5, .5), (1, 2/3) sampled at R = 0, .01, …, 1, / 100
        assert s["AP"] == pytest.approx(0.42)


def test_logits_equal_probabilities() -> None:
    rng = np.random.default_rng(2)
    prob = np.round(ndimage.gaussian_filter(rng.random((48, 64)), 1.5) * 3 % 1, 2) + 0.005
    t = (rng.random((48, 64)) < 0.05).astype(np.uint8)
    a = _score(prob, t)
    logits = torch.logit(torch.as_tensor(prob, dtype=torch.float64)).float().numpy()
    b = _score(logits, t, from_logits=True)
    assert a == b
    assert 0 < a["odsF"] < 1 and 0 < a["AP"] < 1


def test_ignored_pixels_are_not_counted() -> None:
    t = _lines()
    pred = t.astype(np.float32)
    pred[40:60, 70:90] = 0
    pred[50, 70:90] = 1.0  # a spurious line ...
    t_ignore = t.copy()
    t_ignore[40:60, 70:90] = 255  # ... inside an ignored region
    assert _score(pred, t_ignore)["odsF"] == pytest.approx(1.0)
    assert _score(pred, t)["odsF"] < 0.95
    t_ignore[t == 1] = 255  # ignored target pixels do not count as targets either
    counts = boundary_counts(pred, t_ignore)
    assert (counts[:, 1] == 0).all() and (counts[:, 3] == 0).all()


def test_threads_do_not_change_results() -> None:
    rng = np.random.default_rng(5)
    target = torch.as_tensor((rng.random((5, 1, 40, 56)) < 0.06).astype(np.uint8))
    blur = ndimage.gaussian_filter(target.numpy().astype(np.float32), (0, 0, 1, 1))
    preds = torch.as_tensor(np.clip(blur * 3 + 0.2 * rng.random(blur.shape), 0, 1))
    counts = []
    for workers in (1, 3):
        m = BoundaryF(max_dist=0.03, num_workers=workers)
        m.update(preds, target)
        counts.append(m.per_image_counts())
    assert counts[0].shape == (5, 99, 4) and (counts[0] == counts[1]).all()
    for i in range(5):
        one = boundary_counts(preds[i, 0].numpy(), target[i, 0].numpy(), 0.03)
        assert (counts[0][i] == one).all()


def _worker(rank: int, init: str, preds: torch.Tensor, target: torch.Tensor, out) -> None:
    torch.set_num_threads(1)  # forked child: stay out of the parent's OpenMP pool
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    m = BoundaryF(max_dist=0.02)
    m.update(preds[rank::2], target[rank::2])
    out.put((rank, to_floats(m.compute())))
    dist.barrier()
    dist.destroy_process_group()


def test_two_processes_give_the_same_result(tmp_path) -> None:
    rng = np.random.default_rng(3)
    target = torch.as_tensor((rng.random((4, 1, 32, 48)) < 0.06).astype(np.uint8))
    blur = ndimage.gaussian_filter(target.numpy().astype(np.float32), (0, 0, 1, 1))
    preds = torch.as_tensor(np.clip(blur * 3 + 0.1 * rng.random(blur.shape), 0, 1))
    single = BoundaryF(max_dist=0.02)
    single.update(preds, target)
    expected = to_floats(single.compute())
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(r, f"file://{tmp_path}/pg", preds, target, out))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    for _, res in results:
        assert res == pytest.approx(expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_on_a_threshold_count_at_it_in_their_precision(dtype) -> None:
    """A map valued exactly k/100 is predicted at the thresholds j/100 <= k/100 (each level)."""
    values = (np.arange(100) / 100).astype(dtype).reshape(10, 10)  # k/100 in the map's dtype
    target = np.zeros((10, 10), dtype=np.uint8)
    counts = boundary_counts(values, target, thin=False)
    assert counts[:, 3].tolist() == [100 - j for j in range(1, 100)]  # sumP at t_j = j/100
    assert bsds_thresholds()[59] == 0.6 and bsds_thresholds()[6] == 0.07  # exact rationals
    # The same map in float32 and float64 gives the same counts (no cast before comparing).
    other = np.float64 if dtype == np.float32 else np.float32
    same = boundary_counts((np.arange(100) / 100).astype(other).reshape(10, 10), target, thin=False)
    assert (same == counts).all()


def test_boundary_f_takes_numpy_and_returns_tensors() -> None:
    rng = np.random.default_rng(5)
    target = (rng.random((2, 1, 20, 24)) < 0.1).astype(np.uint8)
    prob = rng.random((2, 1, 20, 24)).astype(np.float32)
    a, b = BoundaryF(num_workers=1), BoundaryF(num_workers=1)
    a.update(prob, target)
    b.update(torch.from_numpy(prob), torch.from_numpy(target))
    res = a.compute()
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in res.values())
    assert to_floats(res) == to_floats(b.compute())
    with pytest.raises(MtcpError, match="edge: predictions: expected a torch tensor"):
        a.update(prob.tolist(), target)
