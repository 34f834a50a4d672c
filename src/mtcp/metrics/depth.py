"""Depth metrics (SPEC §6), pooled over all valid pixels of the evaluation set.

Pixels counted (``N`` of them): target ``d`` with ``0 < d``, ``d ≠ ignore_value`` (255, the
padding / ignore marker) and, when ``max_depth`` is set, ``d < max_depth``. The MT-CP release
caps at 6.5535 m (``max_depth=6.5535``); the original MTI-Net code and the ATRC protocol have no
cap (``max_depth=None``). Predictions ``d̂ ≤ 0`` are clamped to ``min_pred`` (1e-9), as in both
code bases, so one non-positive prediction inflates ``log_rmse`` strongly.

* ``rmse = √(Σ (d − d̂)² / N)`` in metres: pooled over pixels, *not* a mean of per-image RMSEs.
* ``log_rmse = √(Σ (ln d − ln d̂)² / N)`` (natural log, unitless).
* ``abs_rel = Σ |d − d̂| / d / N`` (unitless).
* ``delta1..3``: fraction of pixels with ``max(d/d̂, d̂/d) < 1.25^k`` for k = 1, 2, 3.
* ``n_pixels``: ``N``.

With ``N = 0`` (every target invalid) every metric is NaN.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torchmetrics import Metric

from mtcp.errors import MtcpError
from mtcp.metrics.inputs import as_result, as_tensor
from mtcp.tasks import IGNORE_INDEX

RELEASE_MAX_DEPTH = 6.5535  # metres: 65535 / 10000, the release's 16-bit PNG range


class DepthMetrics(Metric):
    """RMSE, log-RMSE, abs-rel and δ accuracies, pooled over pixels.

    Args:
        max_depth: targets ``≥ max_depth`` (metres) are excluded; None = no cap.
        min_pred: predictions ``≤ 0`` are replaced by this value before any metric.
        ignore_value: target value marking ignored pixels.
    """

    is_differentiable = False
    higher_is_better = False
    #: better direction of every key of :meth:`compute` (None: a count, not a score)
    directions: ClassVar[dict[str, bool | None]] = {
        "rmse": False,
        "log_rmse": False,
        "abs_rel": False,
        "delta1": True,
        "delta2": True,
        "delta3": True,
        "n_pixels": None,
    }
    full_state_update = False

    def __init__(
        self,
        max_depth: float | None = RELEASE_MAX_DEPTH,
        min_pred: float = 1e-9,
        ignore_value: float = float(IGNORE_INDEX),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.max_depth = max_depth
        self.min_pred = float(min_pred)
        self.ignore_value = float(ignore_value)
        for name in ("sq_err", "sq_log_err", "abs_rel", "delta1", "delta2", "delta3"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_pixels", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def valid_mask(self, target: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the counted pixels of ``target`` (metres)."""
        valid = (target > 0) & (target != self.ignore_value)
        if self.max_depth is not None:
            valid &= target < self.max_depth
        return valid

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Accumulate one batch: ``preds`` and ``target`` in metres, ``[B, 1, H, W]``."""
        preds, target = as_tensor(preds, "depth: predictions"), as_tensor(target, "depth: target")
        if preds.shape != target.shape:
            raise MtcpError(
                f"depth: prediction {tuple(preds.shape)} and target {tuple(target.shape)} "
                "differ in size"
            )
        valid = self.valid_mask(target)
        d = target[valid].double()
        p = preds[valid].double()
        p = torch.where(p <= 0, torch.full_like(p, self.min_pred), p)
        ratio = torch.maximum(d / p, p / d)
        self.sq_err += ((d - p) ** 2).sum()
        self.sq_log_err += ((d.log() - p.log()) ** 2).sum()
        self.abs_rel += ((d - p).abs() / d).sum()
        self.delta1 += (ratio < 1.25).sum()
        self.delta2 += (ratio < 1.25**2).sum()
        self.delta3 += (ratio < 1.25**3).sum()
        self.n_pixels += d.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        """``{"rmse", "log_rmse", "abs_rel", "delta1", "delta2", "delta3", "n_pixels"}``
        (0-d float64 tensors)."""
        n = self.n_pixels.double()
        n = torch.where(n == 0, torch.full_like(n, float("nan")), n)
        return as_result(
            {
                "rmse": (self.sq_err / n).sqrt(),
                "log_rmse": (self.sq_log_err / n).sqrt(),
                "abs_rel": self.abs_rel / n,
                "delta1": self.delta1 / n,
                "delta2": self.delta2 / n,
                "delta3": self.delta3 / n,
                "n_pixels": self.n_pixels,
            },
            self.device,
        )
