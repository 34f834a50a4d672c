"""Pure metric functions of ``mtcp.metrics.functional``."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from mtcp.errors import MtcpError
from mtcp.metrics.functional import rational_thresholds, threshold_levels


def test_rational_thresholds_are_the_nearest_doubles() -> None:
    t = rational_thresholds(1, 99, 100)
    assert len(t) == 99 and t[59] == 0.6 and t[6] == 0.07
    for k, v in enumerate(t, 1):  # no other double is nearer to k/100
        err = abs(Fraction(v) - Fraction(k, 100))
        assert err <= abs(Fraction(np.nextafter(v, 0)) - Fraction(k, 100))
        assert err <= abs(Fraction(np.nextafter(v, 1)) - Fraction(k, 100))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_threshold_levels_compare_in_the_scores_precision(dtype) -> None:
    t = rational_thresholds(1, 19, 20)
    k = np.arange(21)
    scores = (k / 20).astype(dtype)  # exactly on every threshold, in the scores' dtype
    expected = np.minimum(k, 19)
    assert threshold_levels(scores, t).tolist() == expected.tolist()
    torch_levels = threshold_levels(torch.from_numpy(scores), t)
    assert isinstance(torch_levels, torch.Tensor) and torch_levels.tolist() == expected.tolist()
    below = np.nextafter(scores[1:20], dtype(0))  # one ulp below a threshold: not reached
    assert threshold_levels(below, t).tolist() == list(range(19))


def test_threshold_levels_nan_and_bad_thresholds() -> None:
    assert threshold_levels(np.array([np.nan, 0.5]), (0.25, 0.5)).tolist() == [0, 2]
    assert threshold_levels(torch.tensor([float("nan")]), (0.5,)).tolist() == [0]
    with pytest.raises(MtcpError, match="ascending"):
        threshold_levels(np.zeros(2), (0.5, 0.25), "sal")
    with pytest.raises(MtcpError, match="collide in float16"):
        threshold_levels(np.zeros(2, np.float16), (0.5, 0.5 + 1e-6), "sal")
