"""Surface-normal metrics (SPEC §6), pooled over all valid pixels of the evaluation set.

Pixels counted (``N``): target vector ``g`` with ``‖g‖ ≠ 0`` and no component equal to
``ignore_value`` (255). Prediction ``p`` and target are both L2-normalised; the angular error in
degrees is

* ``angle="arccos"`` (MTI-Net): ``degrees(arccos(clip(⟨p, g⟩, −1, 1)))``;
* ``angle="atan2"`` (ATRC): ``degrees(2 · atan2(‖p − g‖, ‖p + g‖))`` (same value, better
  conditioned near 0° and 180°).

Reported: ``mean``, ``median``, ``rmse = √(mean angle²)`` (degrees) and ``11.25``, ``22.5``,
``30``: percent (0–100) of pixels with an angle below that many degrees.

``mean``, ``rmse`` and the percentages are exact sums. The median needs the full distribution,
which is kept as a histogram of ``bin_width``-degree bins over [0°, 180°] so that the state is a
fixed-size sum across processes: the reported median is the centre of the bin holding the middle
pixel (the mean of the two middle bins' centres for an even count), i.e. exact to
``bin_width / 2`` (0.005° by default).

``png_roundtrip=True`` reproduces the release, which scores predictions re-read from 8-bit PNGs:
``u = trunc(255 (p̂ + 1) / 2)`` per channel, then ``p = 2u / 255 − 1``, renormalised. This costs
even a perfect prediction about 0.34° of mean error. Off by default (in-memory evaluation).

With ``N = 0`` every metric is NaN.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from mtcp.errors import MtcpError
from mtcp.metrics.inputs import as_result, as_tensor
from mtcp.tasks import IGNORE_INDEX

THRESHOLDS_DEG = (11.25, 22.5, 30.0)


def emulate_png8(normals: torch.Tensor) -> torch.Tensor:
    """Unit normals ``[B, 3, H, W]`` saved as a truncating 8-bit PNG and read back."""
    u = torch.floor((normals + 1.0) * 255.0 / 2.0).clamp(0, 255)
    return 2.0 * u / 255.0 - 1.0


def angular_error(pred: torch.Tensor, target: torch.Tensor, angle: str = "arccos") -> torch.Tensor:
    """Angle in degrees between vectors along dim 1 (both L2-normalised first)."""
    p = F.normalize(pred, dim=1)
    g = F.normalize(target, dim=1)
    if angle == "arccos":
        return torch.rad2deg(torch.arccos((p * g).sum(1).clamp(-1.0, 1.0)))
    if angle == "atan2":
        return torch.rad2deg(2.0 * torch.atan2((p - g).norm(dim=1), (p + g).norm(dim=1)))
    raise MtcpError(f"normals: unknown angle formula {angle!r}, expected 'arccos' or 'atan2'")


class NormalsMetrics(Metric):
    """Angular-error statistics of surface normals, pooled over pixels.

    Args:
        angle: ``"arccos"`` (MTI-Net) or ``"atan2"`` (ATRC) angle formula.
        png_roundtrip: emulate the release's 8-bit PNG round trip of the prediction.
        bin_width: histogram resolution in degrees used for the median.
        ignore_value: target component value marking ignored pixels.
    """

    is_differentiable = False
    higher_is_better = False
    #: better direction of every key of :meth:`compute`
    directions: ClassVar[dict[str, bool | None]] = {
        "mean": False,
        "median": False,
        "rmse": False,
        **{f"{t:g}": True for t in THRESHOLDS_DEG},
    }
    full_state_update = False

    def __init__(
        self,
        angle: str = "arccos",
        png_roundtrip: bool = False,
        bin_width: float = 0.01,
        ignore_value: float = float(IGNORE_INDEX),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if angle not in ("arccos", "atan2"):
            raise MtcpError(f"normals: unknown angle formula {angle!r}, expected 'arccos'/'atan2'")
        self.angle = angle
        self.png_roundtrip = bool(png_roundtrip)
        self.bin_width = float(bin_width)
        self.n_bins = math.ceil(180.0 / self.bin_width)
        self.ignore_value = float(ignore_value)
        self.add_state("sum_deg", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sum_sq_deg", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state(
            "below", torch.zeros(len(THRESHOLDS_DEG), dtype=torch.int64), dist_reduce_fx="sum"
        )
        self.add_state(
            "histogram", torch.zeros(self.n_bins, dtype=torch.int64), dist_reduce_fx="sum"
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Accumulate one batch: ``preds`` (any length) and unit ``target``, ``[B, 3, H, W]``."""
        preds = as_tensor(preds, "normals: predictions")
        target = as_tensor(target, "normals: target")
        if preds.shape != target.shape or preds.dim() != 4 or preds.shape[1] != 3:
            raise MtcpError(
                f"normals: expected prediction and target [B, 3, H, W], got "
                f"{tuple(preds.shape)} and {tuple(target.shape)}"
            )
        valid = (target.norm(dim=1) != 0) & (target != self.ignore_value).all(1)
        # float64: arccos near 1 loses ~0.02° in float32.
        p = preds.double()
        if self.png_roundtrip:
            p = emulate_png8(F.normalize(p, dim=1))
        deg = angular_error(p, target.double(), self.angle)[valid]
        self.sum_deg += deg.sum()
        self.sum_sq_deg += (deg**2).sum()
        for i, t in enumerate(THRESHOLDS_DEG):
            self.below[i] += (deg < t).sum()
        bins = (deg / self.bin_width).long().clamp(0, self.n_bins - 1)
        self.histogram += torch.bincount(bins, minlength=self.n_bins)

    def _median(self, n: int) -> float:
        cum = self.histogram.cumsum(0)
        # 0-based ranks of the middle pixel(s) in sorted order.
        ranks = torch.tensor([(n - 1) // 2, n // 2], device=cum.device)
        idx = torch.searchsorted(cum, ranks, right=True)
        return ((idx.double() + 0.5) * self.bin_width).mean().item()

    def compute(self) -> dict[str, torch.Tensor]:
        """``{"mean", "median", "rmse", "11.25", "22.5", "30"}`` (degrees / percent, 0-d float64
        tensors)."""
        n = int(self.histogram.sum().item())
        if n == 0:
            return as_result({k: float("nan") for k in self.directions}, self.device)
        out = {
            "mean": (self.sum_deg / n).item(),
            "median": self._median(n),
            "rmse": (self.sum_sq_deg / n).sqrt().item(),
        }
        for t, count in zip(THRESHOLDS_DEG, self.below.tolist()):
            out[f"{t:g}"] = 100.0 * count / n
        return as_result(out, self.device)
