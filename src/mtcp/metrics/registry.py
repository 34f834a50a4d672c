"""Which metric scores which task, and which coherence metrics exist: one table each.

:data:`TASK_METRICS` is keyed by the task kind of :mod:`mtcp.tasks` (``classes``, ``depth``,
``normals``); the two ``binary`` tasks are scored under different protocols (BSDS boundaries for
``edge``, thresholded saliency for ``sal``), so they have entries under their task names, which
are looked up first (:func:`task_metric`). Every entry names the metric class, the constructor
settings it takes from a :class:`~mtcp.metrics.protocol.Protocol`, and how model outputs
(:mod:`mtcp.tasks` units) become the metric's inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torchmetrics import Metric

from mtcp.errors import MtcpError
from mtcp.metrics.boundary import BoundaryF
from mtcp.metrics.coherence import BoundaryCoherence, DepthNormalCoherence
from mtcp.metrics.depth import DepthMetrics
from mtcp.metrics.normals import NormalsMetrics
from mtcp.metrics.protocol import EDGE_MAX_DIST, Protocol
from mtcp.metrics.saliency import SaliencyMetrics
from mtcp.metrics.segmentation import SegmentationMetrics
from mtcp.tasks import get_task

#: ``(task, channels, protocol, dataset) -> constructor keyword arguments``
Settings = Callable[[str, int, Protocol, str], dict[str, Any]]


def _unchanged(output: torch.Tensor) -> torch.Tensor:
    return output


def _probabilities(output: torch.Tensor) -> torch.Tensor:
    return output.float().sigmoid()  # one logit per pixel -> probability


@dataclasses.dataclass(frozen=True)
class TaskMetric:
    """How one kind of task is scored: ``cls(**settings(task, channels, protocol, dataset))``
    updated with ``(inputs(output), target)``."""

    cls: type[Metric]
    settings: Settings
    inputs: Callable[[torch.Tensor], torch.Tensor] = _unchanged

    def build(self, task: str, channels: int, protocol: Protocol, dataset: str) -> Metric:
        """The metric of ``task`` under ``protocol`` (``dataset``: boundary tolerance)."""
        return self.cls(**self.settings(task, channels, protocol, dataset))


TASK_METRICS: dict[str, TaskMetric] = {
    "classes": TaskMetric(
        SegmentationMetrics,
        lambda task, channels, p, _: {
            "num_classes": channels,
            "skip_uniform_images": p.human_parts_skip_uniform and task == "human_parts",
            "task": task,
        },
    ),
    "depth": TaskMetric(
        DepthMetrics, lambda _t, _c, p, _d: {"max_depth": p.depth_max, "min_pred": p.depth_min_pred}
    ),
    "normals": TaskMetric(
        NormalsMetrics,
        lambda _t, _c, p, _d: {"angle": p.normals_angle, "png_roundtrip": p.normals_png_roundtrip},
    ),
    "edge": TaskMetric(
        BoundaryF,
        lambda _t, _c, _p, dataset: {
            "max_dist": EDGE_MAX_DIST[dataset],
            "n_thresholds": 99,
            "thin": True,
        },
        _probabilities,
    ),
    "sal": TaskMetric(
        SaliencyMetrics,
        lambda _t, _c, p, _d: {
            "thresholds": p.sal_thresholds,
            "pooling": p.sal_pooling,
            "beta2": p.sal_beta2,
            "png_roundtrip": p.sal_png_roundtrip,
        },
        _probabilities,
    ),
}


def task_metric(task: str) -> TaskMetric:
    """The :data:`TASK_METRICS` entry of ``task`` (by name, else by kind)."""
    spec = get_task(task)
    entry = TASK_METRICS.get(task) or TASK_METRICS.get(spec.kind)
    if entry is None:
        raise MtcpError(
            f"no metric for task {task!r} (kind {spec.kind!r}); metrics exist for: "
            f"{', '.join(TASK_METRICS)}"
        )
    return entry


@dataclasses.dataclass(frozen=True)
class CoherenceMetric:
    """A cross-task metric: built when every task of ``needs`` is evaluated."""

    cls: type[Metric]
    needs: tuple[str, ...]


#: results are reported as ``coherence/<name>_<key>``; boundary coherence needs depth because it
#: decides which pixel of a boundary pair is marked.
COHERENCE_METRICS: dict[str, CoherenceMetric] = {
    "depth_normal": CoherenceMetric(DepthNormalCoherence, ("depth", "normals")),
    "boundary": CoherenceMetric(BoundaryCoherence, ("semseg", "depth")),
}


def coherence_metrics(tasks: Iterable[str], from_targets: bool = False) -> dict[str, Metric]:
    """``{name: metric}`` of every coherence metric whose tasks are all in ``tasks``; with
    ``from_targets=True`` they score the batch's targets (the attainable level, SPEC §7)."""
    tasks = set(tasks)
    settings = {"from_targets": True} if from_targets else {}
    return {
        name: entry.cls(**settings)
        for name, entry in COHERENCE_METRICS.items()
        if tasks.issuperset(entry.needs)
    }
