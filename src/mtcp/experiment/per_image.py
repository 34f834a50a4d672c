"""Per-image values of a study run: what the claim statistics resample (:mod:`.stats`).

For every test image, in test-set order (NaN where a value is undefined for that image), the
value of each task's main metric on that image — ``1 − e`` or ``e`` for the per-image task
error ``e`` of :func:`mtcp.metrics.per_image.per_image_errors` (the review's errors, one home):

===============================  =============================================================
key                              per-image value
===============================  =============================================================
``semseg/mIoU``                  mean IoU over the classes present in the image's target or
                                 prediction
``depth/rmse``                   RMSE in metres over the image's valid pixels
``normals/mean``                 mean angle in degrees over the image's valid pixels
``edge/odsF``                    BSDS F of the image at its own best threshold (its oisF: a
                                 single image has no dataset-wide threshold)
``coherence/depth_normal_mean``  mean depth–normal angle in degrees (SPEC §7)
``coherence/boundary_F``         boundary-coherence F of the image (SPEC §7)
===============================  =============================================================

The image mean of a key is the claim statistics' version of the metric; it differs from the
pooled test metric (pixels pooled over images, dataset-wide class IoU and edge threshold) by
weighting each image equally.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mtcp.metrics.per_image import per_image_errors
from mtcp.tasks import get_task

#: the coherence keys with per-image values, and the metric of the collection they come from
COHERENCE_KEYS = {"coherence/depth_normal_mean": "depth_normal", "coherence/boundary_F": "boundary"}


def per_image_keys(tasks: list[str]) -> list[str]:
    """Keys with per-image values for a study with ``tasks`` (the main metric of each task)."""
    keys = [f"{t}/{get_task(t).main_metric}" for t in tasks]
    return [*keys, *COHERENCE_KEYS]


class PerImageValues:
    """Accumulates per-image values during an evaluation loop over the test set.

    ``update(outputs, batch)`` next to ``metrics.update``; ``values(metrics)`` after the loop
    adds the coherence values kept by the metric collection ``metrics``
    (:func:`mtcp.metrics.build_metrics`) and returns ``{key: [value per image]}``.
    """

    def __init__(self, tasks: Mapping[str, int], protocol: str = "mtinet") -> None:
        self.tasks = dict(tasks)
        self.protocol = protocol
        self._values: dict[str, list[float]] = {}

    @torch.no_grad()
    def update(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> None:
        """Add the per-image values of one batch (model units, at target size)."""
        mine = {t: outputs[t] for t in self.tasks}
        errors = per_image_errors(mine, batch, self.tasks, self.protocol, dataset="nyud")
        for task, error in errors.items():
            spec = get_task(task)
            value = 1.0 - error if spec.higher_is_better else error
            key = f"{task}/{spec.main_metric}"
            self._values.setdefault(key, []).extend(float(v) for v in value)

    def values(self, metrics: Any) -> dict[str, list[float]]:
        """``{key: per-image values}`` (see the module docstring)."""
        out = dict(self._values)
        for key, name in COHERENCE_KEYS.items():
            if name in metrics.extra_metrics:
                out[key] = [float(v) for v in metrics.extra_metrics[name].per_image().tolist()]
        return out


__all__ = ["COHERENCE_KEYS", "PerImageValues", "per_image_keys"]
