"""Per-image task errors: how wrong the model is on each image, on each task's main metric.

The per-image analogue of ``val/gm_error`` (:mod:`mtcp.engine.module`): for image ``i`` and
task ``t`` the *error* ``e_t(i)`` (higher = worse) is

* ``semseg`` / ``human_parts``: ``1 − mIoU`` over the classes present in that image's label
  *or* prediction (``TP + FP + FN > 0`` on its counted pixels), a fraction in ``[0, 1]``;
* ``depth``: RMSE over the image's valid pixels, metres;
* ``normals``: mean angular error over the image's valid pixels, degrees;
* ``edge``: ``1 − F`` at the best threshold for that image (its BSDS ``oisF``), in ``[0, 1]``;
* ``sal``: ``1 − maxF`` of that image, in ``[0, 1]``.

Each error is computed by the task's own metric class of :func:`mtcp.metrics.build_metrics`
(same protocol, valid-pixel rules, depth cap and boundary tolerance) reset and fed one image at
a time, so a per-image value never disagrees with what the pooled metric counts. An image
without a label for a task (``labelled[task]`` False, or no counted pixel, e.g. a PASCAL image
without a person for ``human_parts``) gets NaN for that task.

``per_image_gm_error`` is the geometric mean over tasks of ``max(e_t, 1e-6)``, over the tasks
whose error is defined for that image (NaN when none is); because it is a geometric mean, the
ranking of images does not depend on the tasks' units.

Per-image *values* (:class:`PerImageValues`, ``mtcp.evaluate(..., per_image=True)``; what the
study's claim statistics resample, :mod:`mtcp.experiment.stats`): for every image, in
evaluation order (NaN where a value is undefined for that image), each task's main metric on
that image — ``1 − e`` or ``e`` for its error ``e`` above, by the key's direction
(:func:`mtcp.metrics.higher_is_better`) — and the coherence scores of the image:

===============================  =============================================================
key                              per-image value
===============================  =============================================================
``semseg/mIoU``                  mean IoU over the classes present in the image's target or
                                 prediction
``depth/rmse``                   RMSE in metres over the image's valid pixels
``normals/mean``                 mean angle in degrees over the image's valid pixels
``edge/odsF``                    BSDS F of the image at its own best threshold (its oisF: a
                                 single image has no dataset-wide threshold)
``sal/maxF``                     maxF of the image
``coherence/depth_normal_mean``  mean depth–normal angle in degrees (SPEC §7)
``coherence/boundary_F``         boundary-coherence F of the image (SPEC §7)
===============================  =============================================================

The image mean of a key differs from the pooled metric (pixels pooled over images,
dataset-wide class IoU and edge threshold) by weighting each image equally.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torchmetrics import Metric

from mtcp.metrics.collection import build_metrics
from mtcp.metrics.directions import higher_is_better
from mtcp.metrics.segmentation import SegmentationMetrics
from mtcp.tasks import get_task, resolve_tasks

#: floor of an error before its logarithm (the same as ``gm_error``'s)
ERROR_FLOOR = 1e-6


def _present_miou(metric: SegmentationMetrics) -> float:
    tp, fp, fn = metric._parts()
    present = (tp + fp + fn) > 0
    if not present.any():
        return math.nan
    return float((tp / (tp + fp + fn).clamp_min(1e-8))[present].mean())


def _slice(value: Any, i: int, n: int) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
        return value[i : i + 1]
    if isinstance(value, Mapping):
        return {k: _slice(v, i, n) for k, v in value.items()}
    if isinstance(value, list | tuple) and len(value) == n:
        return value[i : i + 1]
    return value


def _error(task: str, metric: Any, results: Mapping[str, Any]) -> float:
    if isinstance(metric, SegmentationMetrics):
        return 1.0 - _present_miou(metric)
    value = float(results.get("oisF" if task == "edge" else get_task(task).main_metric, math.nan))
    return 1.0 - value if get_task(task).higher_is_better else value


@torch.no_grad()
def per_image_errors(
    outputs: Mapping[str, torch.Tensor],
    batch: Mapping[str, Any],
    tasks: Iterable[str] | Mapping[str, int],
    protocol: str = "mtinet",
    dataset: str = "nyud",
) -> dict[str, torch.Tensor]:
    """Per-image error on each task's main metric (module docstring), higher = worse.

    Args:
        outputs: model outputs in model units (logits ``[B, C, H, W]``, metres ``[B, 1, H, W]``,
            vectors ``[B, 3, H, W]``, logits ``[B, 1, H, W]``) at the targets' size.
        batch: the tensor batch with the targets (:mod:`mtcp.tasks` conventions).
        tasks: task names or ``{task: channels}``; channels default to the logits' count.
        protocol: metric protocol (``"mtinet"`` or ``"atrc"``).
        dataset: ``"nyud"`` or ``"pascal"`` (boundary tolerance).

    Returns:
        ``{task: float64 [B]}``, NaN where the image has no label for the task.
    """
    if isinstance(tasks, Mapping):
        channels = resolve_tasks(tasks)
    else:
        names = list(tasks)
        channels = resolve_tasks(
            {t: outputs[t].shape[1] if get_task(t).kind == "classes" else None for t in names}
        )
    metrics = build_metrics(channels, protocol, dataset=dataset, coherence=False)
    for metric in metrics.modules():  # one image's own values: never gathered across processes
        if isinstance(metric, Metric):
            metric.sync_on_compute = False
            metric._to_sync = False
    n = next(iter(outputs[t] for t in channels)).shape[0]
    errors = {t: torch.full((n,), math.nan, dtype=torch.float64) for t in channels}
    for i in range(n):
        metrics.reset()
        metrics.update(
            {t: outputs[t][i : i + 1] for t in channels},
            {k: _slice(v, i, n) for k, v in batch.items()},
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*called before the ``update``")
            for task, metric in metrics.task_metrics.items():
                errors[task][i] = _error(task, metric, metric.compute())
    return errors


def per_image_gm_error(errors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Geometric mean over tasks of the per-image errors ``{task: [B]}`` → float64 ``[B]``.

    Tasks whose error is NaN for an image are left out of that image's mean; NaN when no task
    is defined for it.
    """
    stacked = torch.stack([torch.as_tensor(e, dtype=torch.float64) for e in errors.values()])
    defined = ~stacked.isnan()
    logs = torch.where(defined, stacked.clamp_min(ERROR_FLOOR).log(), torch.zeros_like(stacked))
    count = defined.sum(0)
    return torch.where(count > 0, (logs.sum(0) / count.clamp_min(1)).exp(), math.nan)


#: the coherence keys with per-image values, and the metric of the collection they come from
COHERENCE_KEYS = {"coherence/depth_normal_mean": "depth_normal", "coherence/boundary_F": "boundary"}


def per_image_keys(tasks: Iterable[str]) -> list[str]:
    """Keys of :class:`PerImageValues` for ``tasks`` (each task's main metric, then coherence)."""
    return [*(f"{t}/{get_task(t).main_metric}" for t in tasks), *COHERENCE_KEYS]


class PerImageValues:
    """Accumulates per-image values (module docstring) during an evaluation loop.

    ``update(outputs, batch)`` next to ``metrics.update``; ``values(metrics)`` after the loop
    adds the coherence values kept by the collection ``metrics`` (:func:`build_metrics`) and
    returns ``{key: [value per image]}``.
    """

    def __init__(
        self, tasks: Mapping[str, int], protocol: str = "mtinet", dataset: str = "nyud"
    ) -> None:
        self.tasks = dict(tasks)
        self.protocol = protocol
        self.dataset = dataset
        self._values: dict[str, list[float]] = {}

    @torch.no_grad()
    def update(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> None:
        """Add the per-image values of one batch (model units, at the targets' size)."""
        mine = {t: outputs[t] for t in self.tasks}
        errors = per_image_errors(mine, batch, self.tasks, self.protocol, self.dataset)
        for task, error in errors.items():
            key = f"{task}/{get_task(task).main_metric}"
            value = 1.0 - error if higher_is_better(key) else error
            self._values.setdefault(key, []).extend(float(v) for v in value)

    def values(self, metrics: Any) -> dict[str, list[float]]:
        """``{key: per-image values}`` (see the module docstring)."""
        out = dict(self._values)
        for key, name in COHERENCE_KEYS.items():
            if name in metrics.extra_metrics:
                out[key] = [float(v) for v in metrics.extra_metrics[name].per_image().tolist()]
        return out
