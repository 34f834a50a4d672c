"""Claim statistics: the paired hierarchical bootstrap on planted result sets."""

from __future__ import annotations

import numpy as np
import pytest

from mtcp.experiment import stats

SEEDS, IMAGES = 3, 60


def _scores(shift: float, seed: int, n_tasks: int = 1, base: float = 1.0) -> np.ndarray:
    """Per-image values ``[S, N, T]`` plus ``shift``: seed and image effects shared by every
    configuration (same seed = same data, same test image = same difficulty), a small seed
    effect of its own and per-image noise."""
    rng = np.random.default_rng(seed)
    shared = np.random.default_rng(99)
    seed_effect = shared.normal(0, 0.2, (SEEDS, 1, 1)) + rng.normal(0, 0.01, (SEEDS, 1, 1))
    image_effect = shared.normal(0, 0.3, (1, IMAGES, n_tasks))
    noise = rng.normal(0, 0.05, (SEEDS, IMAGES, n_tasks))
    return base + shift + seed_effect + image_effect + noise


def test_planted_difference_holds_reversed_does_not_identical_is_inconclusive() -> None:
    a, b = _scores(0.2, seed=1), _scores(0.0, seed=2)
    holds = stats.compare("semseg/mIoU", a, b, [True])
    assert holds.outcome == stats.HOLDS
    assert 0 < holds.low < 0.2 < holds.high  # the planted 0.2 lies inside the interval
    assert holds.effect == pytest.approx(0.2, abs=0.1)
    assert (holds.seeds, holds.images) == (SEEDS, IMAGES)
    assert holds.relative == pytest.approx(100 * holds.effect / abs(holds.than_mean))
    reversed_ = stats.compare("semseg/mIoU", b, a, [True])
    assert reversed_.outcome == stats.FAILS and reversed_.high < 0
    assert reversed_.effect == pytest.approx(-holds.effect)
    same = stats.compare("semseg/mIoU", a, a.copy(), [True])
    assert same.outcome == stats.INCONCLUSIVE and same.effect == 0.0
    assert same.low == 0.0 == same.high  # paired: identical sets differ in no resample
    # a lower-is-better metric: the same numbers now favour b
    assert stats.compare("depth/rmse", a, b, [False]).outcome == stats.FAILS


def test_small_difference_within_noise_is_inconclusive_and_one_seed_never_decides() -> None:
    a, b = _scores(0.0, seed=1), _scores(0.0, seed=2)
    close = stats.compare("semseg/mIoU", a, b, [True])
    assert close.outcome == stats.INCONCLUSIVE and close.low < 0 < close.high
    one = stats.compare("semseg/mIoU", a[:1] + 1.0, b[:1], [True])
    assert one.outcome == stats.INCONCLUSIVE and one.effect > 0.5 and one.low > 0


def test_seed_spread_widens_the_interval() -> None:
    """Resampling seeds: a difference that varies a lot from seed to seed is not decided."""
    a, b = _scores(0.0, seed=1), _scores(0.0, seed=2)
    a = a + np.array([0.6, -0.3, 0.0]).reshape(SEEDS, 1, 1)  # mean +0.1, seed spread ±0.45
    result = stats.compare("semseg/mIoU", a, b, [True])
    assert result.effect > 0.05 and result.outcome == stats.INCONCLUSIVE


def test_delta_m_and_worst_task_against_the_reference() -> None:
    ref = _scores(0.0, seed=3, n_tasks=2, base=10.0)
    a = ref * np.array([1.10, 1.00])  # +10 % on task 0 (higher is better), task 1 equal
    b = ref * np.array([1.00, 1.02])  # task 1 (lower is better) 2 % worse
    both = [True, False]
    dm = stats.compare("delta_m", a, b, both, reference=ref)
    assert dm.better_mean == pytest.approx(5.0, abs=1e-9)  # (10 + 0) / 2
    assert dm.than_mean == pytest.approx(-1.0, abs=1e-9)  # (0 - 2) / 2
    assert dm.effect == pytest.approx(6.0, abs=1e-9) and dm.outcome == stats.HOLDS
    assert dm.relative is None
    worst = stats.compare("delta_m_worst", a, b, both, reference=ref)
    assert worst.effect == pytest.approx(0 - (-2.0), abs=1e-9)  # worst terms 0 vs -2
    assert worst.outcome == stats.HOLDS
    with pytest.raises(ValueError, match="reference"):
        stats.compare("delta_m", a, b, both)


def test_undefined_images_are_left_out_and_the_draws_are_reproducible() -> None:
    a, b = _scores(0.2, seed=1), _scores(0.0, seed=2)
    a[:, :5] = np.nan  # e.g. boundary F of images without any boundary
    first = stats.compare("coherence/boundary_F", a, b, [True])
    again = stats.compare("coherence/boundary_F", a, b, [True])
    assert first == again and first.outcome == stats.HOLDS
    assert np.isfinite([first.effect, first.low, first.high]).all()
