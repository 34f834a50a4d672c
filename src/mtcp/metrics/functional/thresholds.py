"""Score thresholds that mean what they say: ``k / n`` exactly, compared in the scores' precision.

A protocol's thresholds are rationals (the BSDS ``k / 100``, the saliency ``k / 20``). They are
kept as the float64 nearest to each rational (:func:`rational_thresholds`; ``linspace`` misses
some of them by one ulp: ``0.6000000000000001``), and a score ``s`` reaches threshold ``t`` when
``s >= t`` *in the precision of the scores*: the thresholds are rounded to the scores' dtype and
compared there (:func:`threshold_levels`). So a value that is exactly on a threshold in its own
precision, such as an 8-bit PNG value 153 read back as ``153 / 255 = 0.6`` in float32 or
float64, counts as positive at 0.6, whatever the dtype; no map is cast to another precision
before it is compared. NaN scores reach no threshold.
"""

from __future__ import annotations

import numpy as np
import torch

from mtcp.errors import MtcpError


def rational_thresholds(first: int, last: int, denominator: int) -> tuple[float, ...]:
    """``first / d, (first + 1) / d, …, last / d``, each the float64 nearest to the rational.

    IEEE division is correctly rounded, so ``k / d`` is the nearest double to ``k/d`` exactly.
    """
    return tuple(k / denominator for k in range(first, last + 1))


def _ascending(t: np.ndarray, what: str) -> None:
    if t.ndim != 1 or (t.size > 1 and not (np.diff(t) > 0).all()):
        raise MtcpError(f"{what}: thresholds must be a strictly ascending list, got {t.tolist()}")


def threshold_levels(scores, thresholds, what: str = "metric"):
    """Number of ``thresholds`` each score reaches (``score >= t``), in the scores' precision.

    Args:
        scores: a float tensor or numpy array of any shape (integers are compared as float64).
        thresholds: strictly ascending float64 values ``[K]`` (:func:`rational_thresholds`);
            they are rounded to the scores' dtype before comparing.
        what: the task named in errors.

    Returns:
        int64 of the scores' shape and kind (tensor or array), in ``[0, K]``: a score with
        level ``k`` is positive at the first ``k`` thresholds; NaN scores have level 0.
    """
    t64 = np.asarray(thresholds, dtype=np.float64)
    _ascending(t64, what)
    if isinstance(scores, torch.Tensor):
        s = scores.detach() if scores.is_floating_point() else scores.detach().double()
        t = torch.from_numpy(t64).to(device=s.device, dtype=s.dtype)
        if (t[1:] <= t[:-1]).any():
            raise MtcpError(f"{what}: thresholds {t64.tolist()} collide in {s.dtype}")
        levels = torch.searchsorted(t, s.contiguous(), right=True)
        return levels.masked_fill_(s.isnan(), 0)
    s = np.asarray(scores)
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    t = t64.astype(s.dtype)
    if t.size > 1 and not (np.diff(t) > 0).all():
        raise MtcpError(f"{what}: thresholds {t64.tolist()} collide in {s.dtype}")
    levels = np.searchsorted(t, s, side="right").astype(np.int64)
    levels[np.isnan(s)] = 0
    return levels
