"""Per-image values of a study run: what the claim statistics resample (:mod:`.stats`).

For every test image, in test-set order (NaN where a value is undefined for that image):

===============================  =============================================================
key                              per-image value
===============================  =============================================================
``semseg/mIoU``                  mean IoU over the classes present in the image's target or
                                 prediction (ignore pixels excluded)
``depth/rmse``                   RMSE in metres over the pixels the depth metric counts
``normals/mean``                 mean angle in degrees over the valid target pixels
``edge/odsF``                    BSDS F of the image at the test set's ODS threshold (the
                                 threshold that is best pooled over all images)
``coherence/depth_normal_mean``  mean depth–normal angle in degrees (SPEC §7)
``coherence/boundary_F``         boundary-coherence F of the image (SPEC §7)
===============================  =============================================================

The image mean of a key is the claim statistics' version of the metric; it differs from the
pooled test metric (pixels pooled over images, dataset-wide class IoU) by weighting each image
equally.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mtcp.metrics.normals import angular_error
from mtcp.tasks import IGNORE_INDEX, get_task

#: the coherence keys with per-image values, and the metric of the collection they come from
COHERENCE_KEYS = {"coherence/depth_normal_mean": "depth_normal", "coherence/boundary_F": "boundary"}


def per_image_keys(tasks: list[str]) -> list[str]:
    """Keys with per-image values for a study with ``tasks`` (the main metric of each task)."""
    keys = [f"{t}/{get_task(t).main_metric}" for t in tasks]
    return [*keys, *COHERENCE_KEYS]


class PerImageValues:
    """Accumulates per-image task errors during an evaluation loop over the test set.

    ``update(outputs, batch)`` next to ``metrics.update``; ``values(metrics)`` after the loop
    adds the edge and coherence values kept by the metric collection ``metrics``
    (:func:`mtcp.metrics.build_metrics`) and returns ``{key: [value per image]}``.
    """

    def __init__(self, tasks: Mapping[str, int]) -> None:
        self.tasks = dict(tasks)
        self._values: dict[str, list[float]] = {}

    def _add(self, key: str, values: torch.Tensor) -> None:
        self._values.setdefault(key, []).extend(float(v) for v in values)

    @torch.no_grad()
    def update(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any], metrics
    ) -> None:
        """Add the per-image values of one batch (model units, at target size)."""
        for task in self.tasks:
            spec = get_task(task)
            key = f"{task}/{spec.main_metric}"
            pred, target = outputs[task].float(), batch[task]
            if spec.kind == "classes":
                self._add(key, _image_miou(pred.argmax(1), target.long()))
            elif spec.kind == "depth":
                self._add(key, _image_rmse(pred, target, metrics.task_metrics[task]))
            elif spec.kind == "normals":
                self._add(key, _image_angle(pred, target, metrics.task_metrics[task].angle))

    def values(self, metrics) -> dict[str, list[float]]:
        """``{key: per-image values}`` (see the module docstring)."""
        out = dict(self._values)
        if "edge" in metrics.task_metrics:
            out["edge/odsF"] = _image_ods_f(metrics.task_metrics["edge"].per_image_counts())
        for key, name in COHERENCE_KEYS.items():
            if name in metrics.extra_metrics:
                out[key] = metrics.extra_metrics[name].per_image().tolist()
        return {k: [float(v) for v in vals] for k, vals in out.items()}


def _image_miou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[B]`` mean IoU over the classes present in each image's target or prediction."""
    if target.dim() == 4:
        target = target[:, 0]
    out = []
    for p, t in zip(pred, target):
        valid = t != IGNORE_INDEX
        p, t = p[valid], t[valid]
        if not t.numel():
            out.append(float("nan"))
            continue
        classes = torch.unique(torch.cat([p, t]))
        inter = torch.stack([((p == c) & (t == c)).sum() for c in classes]).double()
        union = torch.stack([((p == c) | (t == c)).sum() for c in classes]).double()
        out.append(float((inter / union).mean()))
    return torch.tensor(out)


def _image_rmse(pred: torch.Tensor, target: torch.Tensor, metric) -> torch.Tensor:
    """``[B]`` RMSE (metres) over the pixels the depth metric ``metric`` counts."""
    valid = metric.valid_mask(target)
    p = torch.where(pred <= 0, torch.full_like(pred, metric.min_pred), pred).double()
    sq = torch.where(valid, (p - target.double()) ** 2, torch.zeros_like(p)).flatten(1).sum(1)
    n = valid.flatten(1).sum(1)
    return torch.where(n > 0, (sq / n.clamp(min=1)).sqrt(), float("nan"))


def _image_angle(pred: torch.Tensor, target: torch.Tensor, angle: str) -> torch.Tensor:
    """``[B]`` mean angular error (degrees) over the valid target pixels."""
    valid = (target.norm(dim=1) != 0) & (target != IGNORE_INDEX).all(1)
    deg = angular_error(pred.double(), target.double(), angle)
    total = torch.where(valid, deg, torch.zeros_like(deg)).flatten(1).sum(1)
    n = valid.flatten(1).sum(1)
    return torch.where(n > 0, total / n.clamp(min=1), float("nan"))


def _image_ods_f(counts: np.ndarray) -> list[float]:
    """Per-image F at the pooled best threshold from BSDS counts ``[N, K, 4]``."""
    c = np.asarray(counts, dtype=np.float64)
    if not c.shape[0]:
        return []
    eps = np.finfo(np.float64).eps

    def f_of(x: np.ndarray) -> np.ndarray:
        r = x[..., 0] / np.maximum(x[..., 1], eps)
        p = x[..., 2] / np.maximum(x[..., 3], eps)
        return 2 * p * r / np.maximum(p + r, eps)

    best = int(np.argmax(f_of(c.sum(0))))
    return f_of(c[:, best]).tolist()


__all__ = ["COHERENCE_KEYS", "PerImageValues", "per_image_keys"]
