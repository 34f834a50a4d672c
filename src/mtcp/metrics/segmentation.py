"""Semantic segmentation and human-parts metrics (SPEC §6, MTI-Net protocol).

Pixels counted: every pixel whose target is not ``ignore_index`` (255), pooled over the whole
evaluation set through one confusion matrix (``conf[target, prediction]``, pixel counts).
For class ``c``: ``TP_c`` = diagonal, ``FN_c`` = rest of row ``c``, ``FP_c`` = rest of column ``c``.

* ``mIoU``: ``(1/C) Σ_c TP_c / max(TP_c + FP_c + FN_c, 1e-8)`` over **all** ``C`` classes, so a
  class that never appears in the targets counts 0 (or its predictions only add false positives).
* ``mIoU_present``: the same mean restricted to classes present in the targets (``TP+FN > 0``).
* ``pixel_acc``: ``Σ_c TP_c / Σ_c (TP_c + FN_c)``: fraction of counted pixels labelled correctly.
* ``n_absent``: number of classes never present in the targets; :meth:`absent_classes` lists them.

All values are fractions in ``[0, 1]`` (not percent). With no counted pixel at all, ``mIoU`` is
0 (the release's formula) and ``mIoU_present`` / ``pixel_acc`` are NaN.

Human parts (``skip_uniform_images=True``): the release skips an image only when its *whole*
target is one single value, 0 (all background) or 255 (no person annotated); such images add
nothing, not even background pixels. An image containing a person is counted in full.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torchmetrics import Metric

from mtcp.errors import MtcpError
from mtcp.metrics.inputs import as_result, as_tensor
from mtcp.tasks import IGNORE_INDEX


class SegmentationMetrics(Metric):
    """Pooled confusion-matrix metrics for per-pixel classification (semseg, human_parts).

    Args:
        num_classes: number of classes ``C``.
        ignore_index: target value excluded from every count.
        skip_uniform_images: skip images whose whole target is a single value 0 or
            ``ignore_index`` (the release's human-parts rule); False for semseg.
        task: task name used in error messages.
    """

    is_differentiable = False
    higher_is_better = True
    #: better direction of every key of :meth:`compute` (None: a count, not a score)
    directions: ClassVar[dict[str, bool | None]] = {
        "mIoU": True,
        "mIoU_present": True,
        "pixel_acc": True,
        "n_absent": None,
    }
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = IGNORE_INDEX,
        skip_uniform_images: bool = False,
        task: str = "semseg",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.skip_uniform_images = bool(skip_uniform_images)
        self.task = task
        # One extra column collects predictions outside [0, C) (never a true positive).
        c = self.num_classes
        self.add_state("confusion", torch.zeros(c, c + 1, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("n_images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Accumulate one batch.

        Args:
            preds: logits ``[B, C, H, W]`` (argmax taken) or class ids ``[B, H, W]``.
            target: class ids ``[B, H, W]`` (or ``[B, 1, H, W]``), ``ignore_index`` = ignore.
        """
        preds = as_tensor(preds, f"{self.task}: predictions")
        target = as_tensor(target, f"{self.task}: target")
        if preds.is_floating_point():
            if preds.dim() != 4 or preds.shape[1] != self.num_classes:
                raise MtcpError(
                    f"{self.task}: expected logits [B, {self.num_classes}, H, W], "
                    f"got {tuple(preds.shape)}"
                )
            preds = preds.argmax(1)
        if target.dim() == 4:
            target = target[:, 0]
        if preds.shape != target.shape:
            raise MtcpError(
                f"{self.task}: prediction {tuple(preds.shape)} and target "
                f"{tuple(target.shape)} differ in size"
            )
        target = target.long()
        preds = preds.long()
        if self.skip_uniform_images:
            flat = target.flatten(1)
            uniform = (flat == flat[:, :1]).all(1) & (
                (flat[:, 0] == 0) | (flat[:, 0] == self.ignore_index)
            )
            target, preds = target[~uniform], preds[~uniform]
        valid = target != self.ignore_index
        t, p = target[valid], preds[valid]
        if t.numel() and (t.min() < 0 or t.max() >= self.num_classes):
            bad = t[(t < 0) | (t >= self.num_classes)][0].item()
            raise MtcpError(
                f"{self.task}: target contains class {bad}, expected ids in "
                f"[0, {self.num_classes}) or {self.ignore_index} (ignore)"
            )
        c = self.num_classes
        p = torch.where((p < 0) | (p >= c), torch.full_like(p, c), p)
        counts = torch.bincount(t * (c + 1) + p, minlength=c * (c + 1))
        self.confusion += counts.view(c, c + 1)
        self.n_images += target.shape[0]

    def _parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        conf = self.confusion.double()
        tp = conf.diagonal()
        fn = conf.sum(1) - tp
        fp = conf[:, : self.num_classes].sum(0) - tp
        return tp, fp, fn

    def per_class_iou(self) -> list[float]:
        """IoU of each class (``C`` values, 0 for classes that never appear)."""
        tp, fp, fn = self._parts()
        return (tp / (tp + fp + fn).clamp_min(1e-8)).tolist()

    def absent_classes(self) -> list[int]:
        """Class ids never present in the counted targets."""
        tp, _, fn = self._parts()
        return torch.nonzero((tp + fn) == 0).flatten().tolist()

    def compute(self) -> dict[str, torch.Tensor]:
        """``{"mIoU", "mIoU_present", "pixel_acc", "n_absent"}`` (module docstring; 0-d float64
        tensors)."""
        tp, fp, fn = self._parts()
        iou = tp / (tp + fp + fn).clamp_min(1e-8)
        present = (tp + fn) > 0
        n_pixels = (tp + fn).sum()
        nan = float("nan")
        out = {
            "mIoU": iou.mean(),
            "mIoU_present": iou[present].mean() if present.any() else nan,
            "pixel_acc": tp.sum() / n_pixels if n_pixels > 0 else nan,
            "n_absent": (~present).sum(),
        }
        return as_result(out, self.device)
