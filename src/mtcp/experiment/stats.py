"""Claim statistics: a paired hierarchical bootstrap over seeds and test images.

Data of one claim: for each configuration ``x`` it compares (``better``, ``than``, and the
study's reference for Δm), per seed ``s``, the per-image values ``x[s, i, t]`` of the claim's
metric on test image ``i`` (component ``t``: one per task for Δm, else one). Every run of a
study scores the same test images in the same order, so images pair across configurations, and
seeds pair too (same seed = same initialisation, data and batch order).

Statistic ``D``: per seed, the image means ``x̄[s, t]`` of every configuration give the claim's
difference ``d_s`` signed so that positive favours the claim; ``D`` is the mean of ``d_s`` over
seeds. For a metric ``m``: ``d_s = ±(b̄ − ā)``; for ``delta_m``:
``Δm(x) = 100 / T · Σ_t σ_t (x̄_t − r̄_t) / r̄_t`` (``σ_t = +1`` when higher is better) and
``d_s = Δm(better) − Δm(than)``; for ``delta_m_worst`` the same with the lowest task term
(``min_t`` instead of the mean: how much the task falling furthest behind gains).

Interval: :data:`N_BOOT` resamples, each drawing ``S`` seeds with replacement from the ``S``
seeds and then, within each drawn seed, ``N`` images with replacement from its ``N`` images
(the same images for every configuration: paired); ``D`` of each resample; the 2.5 and 97.5
percentiles give the 95 % interval. Verdict: **holds** when the interval lies above 0, **does
not hold** when it lies below 0, **inconclusive** otherwise and always with fewer than
:data:`MIN_SEEDS` seeds. Resamples are drawn from a fixed generator seed: the same result files
give the same report.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

HOLDS, FAILS, INCONCLUSIVE, NOT_RUN = "holds", "does not hold", "inconclusive", "not run"
#: seeds a claim needs before it can be decided (one seed says nothing about seed variation)
MIN_SEEDS = 2
N_BOOT = 2000
LEVEL = 0.95
#: metrics computed from the per-task main metrics (components ``t``) instead of one value
DELTA_M_CLAIM_METRICS = ("delta_m", "delta_m_worst")


@dataclass(frozen=True)
class Comparison:
    """The outcome of one claim on paired per-image data (module docstring).

    ``effect`` is ``D`` in the metric's units (Δm points for ``delta_m``), positive in the
    claim's favour; ``low``, ``high`` its 95 % interval; ``better_mean``, ``than_mean`` the
    image-and-seed means of each side (for Δm: its Δm against the reference); ``relative`` the
    effect in % of ``|than_mean|`` (None for Δm or a zero base).
    """

    outcome: str
    effect: float
    low: float
    high: float
    better_mean: float
    than_mean: float
    relative: float | None
    seeds: int
    images: int


def delta_m_terms(x: np.ndarray, ref: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Per-task Δm terms in % ``[..., T]`` of means ``x`` against reference means ``ref``."""
    return 100.0 * signs * (x - ref) / ref


def statistic(metric: str, signs: np.ndarray) -> Callable[..., np.ndarray]:
    """``f(a, b, ref) -> d`` on image means ``[..., T]`` (see the module docstring).

    ``signs``: ``[T]`` +1 where higher is better, −1 otherwise (for a single metric, ``[1]``).
    """
    if metric == "delta_m":
        return lambda a, b, r: (
            delta_m_terms(a, r, signs).mean(-1) - delta_m_terms(b, r, signs).mean(-1)
        )
    if metric == "delta_m_worst":
        return lambda a, b, r: (
            delta_m_terms(a, r, signs).min(-1) - delta_m_terms(b, r, signs).min(-1)
        )
    return lambda a, b, r: (signs * (a - b))[..., 0]


def _side_means(metric: str, x: np.ndarray, ref: np.ndarray, signs: np.ndarray) -> float:
    """What one side scores, as reported next to the effect (image-and-seed mean, or Δm)."""
    means = np.nanmean(x, axis=1)  # [S, T]
    if metric == "delta_m":
        return float(delta_m_terms(means, np.nanmean(ref, axis=1), signs).mean(-1).mean())
    if metric == "delta_m_worst":
        return float(delta_m_terms(means, np.nanmean(ref, axis=1), signs).min(-1).mean())
    return float(means[:, 0].mean())


def compare(
    metric: str,
    better: np.ndarray,
    than: np.ndarray,
    higher_is_better: Sequence[bool],
    reference: np.ndarray | None = None,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> Comparison:
    """Judge a claim by the paired hierarchical bootstrap (module docstring).

    Args:
        metric: ``"delta_m"``, ``"delta_m_worst"`` or any single metric key.
        better, than: per-image values ``[S, N, T]`` (seeds, images, components), paired
            along ``S`` and ``N``; NaN where undefined (left out of the image means).
        higher_is_better: per component ``t``.
        reference: ``[S, N, T]`` of the Δm reference (needed for the Δm metrics).
        n_boot, level, seed: resamples, interval coverage, generator seed.
    """
    a, b = np.asarray(better, dtype=np.float64), np.asarray(than, dtype=np.float64)
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(f"expected two arrays [S, N, T] of one shape, got {a.shape}, {b.shape}")
    signs = np.where(np.asarray(higher_is_better, dtype=bool), 1.0, -1.0)
    if metric in DELTA_M_CLAIM_METRICS:
        if reference is None:
            raise ValueError(f"{metric} needs the reference configuration's values")
        r = np.asarray(reference, dtype=np.float64)
    else:
        r = b
    n_seeds, n_images, _ = a.shape
    stat = statistic(metric, signs)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN means of all-NaN slices
        point = stat(np.nanmean(a, 1), np.nanmean(b, 1), np.nanmean(r, 1))  # [S]
        effect = float(np.mean(point))
        draws = _bootstrap(stat, np.stack([a, b, r]), n_boot, seed)
        finite = draws[np.isfinite(draws)]
        tail = 100 * (1 - level) / 2
        if finite.size < 0.9 * n_boot:  # undefined in too many resamples: no interval
            low = high = math.nan
        else:
            low, high = (float(v) for v in np.percentile(finite, [tail, 100 - tail]))
        better_mean = _side_means(metric, a, r, signs)
        than_mean = _side_means(metric, b, r, signs)
    if n_seeds < MIN_SEEDS or not (math.isfinite(low) and math.isfinite(high)):
        outcome = INCONCLUSIVE
    elif low > 0:
        outcome = HOLDS
    elif high < 0:
        outcome = FAILS
    else:
        outcome = INCONCLUSIVE
    relative = None
    if metric not in DELTA_M_CLAIM_METRICS and math.isfinite(than_mean) and than_mean != 0:
        relative = 100.0 * effect / abs(than_mean)
    return Comparison(
        outcome, effect, low, high, better_mean, than_mean, relative, n_seeds, n_images
    )


def _bootstrap(stat: Callable, data: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot]`` values of ``D`` on hierarchical resamples of ``data [3, S, N, T]``."""
    _, n_seeds, n_images, _ = data.shape
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    chunk = max(1, min(n_boot, 2_000_000 // max(1, data[0].size)))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        seeds = rng.integers(0, n_seeds, size=(m, n_seeds))  # seeds first
        images = rng.integers(0, n_images, size=(m, n_seeds, n_images))  # then images
        picked = data[:, seeds[:, :, None], images]  # [3, m, S, N, T]
        means = np.nanmean(picked, axis=3)  # [3, m, S, T]
        out[start : start + m] = stat(means[0], means[1], means[2]).mean(-1)
    return out
