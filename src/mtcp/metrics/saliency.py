"""Saliency metrics (SPEC §6): maxF and mIoU over a set of thresholds.

Inputs are probabilities ``s ∈ [0, 1]``; target pixels are positive when ``> 0.5``; pixels equal
to ``ignore_value`` (255) are not counted. At threshold ``t`` a pixel is predicted positive when
``s ≥ t`` (exactly on the threshold counts as positive: thresholds are the exact rationals
``k / 20`` compared in the predictions' precision, :mod:`mtcp.metrics.functional.thresholds`, so
a PNG value 153 = 0.6 is positive at 0.6). Per threshold, TP / FP / FN are pixel counts. Two
poolings, selected by ``pooling``:

``pooling="image"`` (MTI-Net; thresholds ``linspace(0.2, 0.9, 15)``, ``beta2 = 1``)
    Per image: ``P = TP/(TP+FP)`` (0 when nothing is predicted), ``R = TP/(TP+FN)`` (0 when the
    target is empty), ``J = TP/(TP+FP+FN)`` (1 when target and prediction are both empty).
    ``P``, ``R``, ``J`` are averaged over images; ``F = (1+β²)·P̄·R̄/(β²·P̄ + R̄)`` from those
    means. ``maxF = max_t F``, ``mIoU = max_t J̄``. An image with an empty target adds
    ``P = R = 0`` even when predicted perfectly.

``pooling="pixel"`` (ATRC; thresholds every 0.05, ``beta2 = 0.3``)
    TP / FP / FN summed over all pixels of all images, then ``P``, ``R``, ``F`` as above from the
    totals; ``mIoU = max_t TP/(TP+FP+FN)`` of the totals (ATRC reports maxF only; this pooled IoU
    is mtcp's addition so that Δm can be formed under either protocol).

A ratio whose denominator is 0 is 0 (except the per-image J above). Images with no counted pixel
(an unlabelled, all-ignore target) are skipped. All results are fractions in ``[0, 1]``.

``png_roundtrip=True`` emulates the release scoring 8-bit PNGs: ``s ← trunc(255 s) / 255``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torchmetrics import Metric

from mtcp.errors import MtcpError
from mtcp.metrics.functional.thresholds import rational_thresholds, threshold_levels
from mtcp.metrics.inputs import as_result, as_tensor
from mtcp.tasks import IGNORE_INDEX

MTINET_THRESHOLDS = rational_thresholds(4, 18, 20)  # 0.20, 0.25, …, 0.90: linspace(0.2, 0.9, 15)
ATRC_THRESHOLDS = rational_thresholds(1, 19, 20)  # 0.05 … 0.95


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


class SaliencyMetrics(Metric):
    """maxF and mIoU of saliency maps over thresholds, per-image or pixel pooling.

    Args:
        thresholds: probability thresholds ``t`` (positive when ``s ≥ t``).
        pooling: ``"image"`` (MTI-Net: per-image P/R/J averaged over images) or ``"pixel"``
            (ATRC: TP/FP/FN pooled over all pixels).
        beta2: ``β²`` of the F-measure (1 for MTI-Net, 0.3 for ATRC).
        png_roundtrip: truncate predictions to 8 bits as the release's saved PNGs do.
        ignore_value: target value marking ignored pixels.
    """

    is_differentiable = False
    higher_is_better = True
    #: better direction of every key of :meth:`compute`
    directions: ClassVar[dict[str, bool | None]] = {"maxF": True, "mIoU": True}
    full_state_update = False

    def __init__(
        self,
        thresholds: Sequence[float] = MTINET_THRESHOLDS,
        pooling: str = "image",
        beta2: float = 1.0,
        png_roundtrip: bool = False,
        ignore_value: float = float(IGNORE_INDEX),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if pooling not in ("image", "pixel"):
            raise MtcpError(f"sal: unknown pooling {pooling!r}, expected 'image' or 'pixel'")
        self.pooling = pooling
        self.beta2 = float(beta2)
        self.png_roundtrip = bool(png_roundtrip)
        self.ignore_value = float(ignore_value)
        self.register_buffer(
            "thresholds", torch.tensor(list(thresholds), dtype=torch.float64), persistent=False
        )
        n = len(thresholds)
        for name in ("sum_p", "sum_r", "sum_j", "tp", "fp", "fn"):
            self.add_state(name, torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Accumulate one batch: probabilities and targets ``[B, 1, H, W]`` in ``[0, 1]``."""
        preds, target = as_tensor(preds, "sal: predictions"), as_tensor(target, "sal: target")
        if preds.shape != target.shape:
            raise MtcpError(
                f"sal: prediction {tuple(preds.shape)} and target {tuple(target.shape)} "
                "differ in size"
            )
        s = preds.flatten(1)
        g = target.flatten(1)
        if self.png_roundtrip:
            s = torch.floor(s.double() * 255.0) / 255.0
        valid = g != self.ignore_value
        keep = valid.any(1)
        s, g, valid = s[keep], g[keep], valid[keep]
        pos = ((g > 0.5) & valid)[:, None]  # [B, 1, P]
        levels = threshold_levels(s, self.thresholds.cpu().numpy(), "sal")  # [B, P]
        steps = torch.arange(len(self.thresholds), device=levels.device)
        pred = (levels[:, None] > steps[None, :, None]) & valid[:, None]  # [B, T, P]
        tp = (pred & pos).sum(2).double()
        fp = (pred & ~pos).sum(2).double()
        fn = (~pred & pos).sum(2).double()
        union = tp + fp + fn
        self.sum_p += _ratio(tp, tp + fp).sum(0)
        self.sum_r += _ratio(tp, tp + fn).sum(0)
        self.sum_j += torch.where(union > 0, _ratio(tp, union), torch.ones_like(tp)).sum(0)
        self.tp += tp.sum(0)
        self.fp += fp.sum(0)
        self.fn += fn.sum(0)
        self.n_images += s.shape[0]

    def curves(self) -> dict[str, torch.Tensor]:
        """Precision, recall, F and IoU per threshold under the configured pooling."""
        if self.pooling == "image":
            n = self.n_images.double()
            p, r, iou = self.sum_p / n, self.sum_r / n, self.sum_j / n
        else:
            p = _ratio(self.tp, self.tp + self.fp)
            r = _ratio(self.tp, self.tp + self.fn)
            iou = _ratio(self.tp, self.tp + self.fp + self.fn)
        f = _ratio((1 + self.beta2) * p * r, self.beta2 * p + r)
        return {"thresholds": self.thresholds, "precision": p, "recall": r, "F": f, "IoU": iou}

    def compute(self) -> dict[str, torch.Tensor]:
        """``{"maxF", "mIoU"}`` (0-d float64 tensors); NaN when no image was counted."""
        if self.n_images == 0:
            return as_result({"maxF": float("nan"), "mIoU": float("nan")}, self.device)
        c = self.curves()
        return as_result({"maxF": c["F"].max(), "mIoU": c["IoU"].max()}, self.device)
