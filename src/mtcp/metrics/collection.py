"""The multi-task metric collection (SPEC §6): one ``update / compute / reset`` for every task
metric of :mod:`mtcp.metrics.registry` and the coherence metrics, under one protocol."""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric

from mtcp.errors import MtcpError
from mtcp.metrics.inputs import as_result, as_tensor
from mtcp.metrics.protocol import EDGE_MAX_DIST, Protocol, get_protocol
from mtcp.metrics.registry import coherence_metrics, task_metric
from mtcp.metrics.segmentation import SegmentationMetrics
from mtcp.tasks import resolve_tasks

log = logging.getLogger(__name__)


class MultiTaskMetrics(nn.Module):
    """All metrics of a multi-task evaluation behind one ``update / compute / reset``, used like
    torchmetrics' ``MetricCollection``: ``metrics["depth"]``, ``"depth" in metrics``,
    ``keys() / values() / items()`` (task metrics, then coherence metrics by name), ``len``,
    ``clone()``, ``.to(device)``, and ``metrics(outputs, batch)`` (update, then the results of
    that batch alone).

    An ``nn.Module`` so that ``.to(device)`` (and Lightning) moves every metric state. Across
    processes, each metric's state is summed on ``compute()`` (torchmetrics sync), so results are
    identical however the evaluation set is split.

    Args:
        task_metrics: ``{task: metric}``; each metric's ``update(pred, target)``.
        extra_metrics: ``{name: metric}`` whose ``update(outputs, batch)`` sees everything
            (coherence); their results are reported under ``"coherence"``.
        protocol: the :class:`Protocol` the metrics were built with.
    """

    def __init__(
        self,
        task_metrics: Mapping[str, Metric],
        extra_metrics: Mapping[str, Metric] | None = None,
        protocol: Protocol | None = None,
    ) -> None:
        super().__init__()
        self.task_metrics = nn.ModuleDict(dict(task_metrics))
        self.extra_metrics = nn.ModuleDict(dict(extra_metrics or {}))
        self.protocol = protocol

    # --- MetricCollection-style access ------------------------------------------------------
    def keys(self) -> list[str]:
        """Task names, then coherence metric names."""
        return [*self.task_metrics.keys(), *self.extra_metrics.keys()]

    def values(self) -> list[Metric]:
        return [self[k] for k in self.keys()]

    def items(self) -> list[tuple[str, Metric]]:
        return [(k, self[k]) for k in self.keys()]

    def __getitem__(self, name: str) -> Metric:
        if name in self.task_metrics:
            return self.task_metrics[name]
        if name in self.extra_metrics:
            return self.extra_metrics[name]
        raise KeyError(f"no metric {name!r}; known: {', '.join(self.keys())}")

    def __contains__(self, name: object) -> bool:
        return name in self.task_metrics or name in self.extra_metrics

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.task_metrics) + len(self.extra_metrics)

    def clone(self) -> MultiTaskMetrics:
        """An independent copy (states included), as ``MetricCollection.clone``."""
        return copy.deepcopy(self)

    @torch.no_grad()
    def forward(
        self, outputs: Mapping[str, Any], batch: Mapping[str, Any]
    ) -> dict[str, dict[str, torch.Tensor]]:
        """Accumulate the batch and return the results of this batch alone."""
        self.update(outputs, batch)
        single = self.clone()
        single.reset()
        single.update(outputs, batch)
        return single.compute()

    # --- accumulation -----------------------------------------------------------------------
    @torch.no_grad()
    def update(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
        """Accumulate one batch.

        Args:
            outputs: model outputs in model units (logits, metres, vectors), at target size,
                as tensors or numpy arrays; only the keys named after tasks are read.
            batch: batch in the tensor conventions of :mod:`mtcp.tasks` (tensors or numpy
                arrays); samples whose ``labelled[task]`` is False are left out of that task's
                metric.
        """
        labelled = batch.get("labelled") or {}
        for task, metric in self.task_metrics.items():
            if task not in outputs:
                raise MtcpError(f"model outputs have no {task!r} (got: {', '.join(outputs)})")
            if task not in batch:
                raise MtcpError(f"batch has no {task!r} target (got: {', '.join(batch)})")
            pred = as_tensor(outputs[task], f"{task}: model output").detach()
            target = as_tensor(batch[task], f"{task}: target")
            if pred.shape[-2:] != target.shape[-2:]:
                raise MtcpError(
                    f"{task}: output size {tuple(pred.shape[-2:])} differs from target size "
                    f"{tuple(target.shape[-2:])}; resize outputs to the target first"
                )
            if task in labelled:
                keep = torch.as_tensor(labelled[task], dtype=torch.bool, device=pred.device)
                keep = keep.reshape(-1).expand(pred.shape[0])
                if not keep.any():
                    continue
                if not keep.all():
                    pred, target = pred[keep], target[keep.to(target.device)]
            metric.update(task_metric(task).inputs(pred), target.to(pred.device))
        for metric in self.extra_metrics.values():
            metric.update(outputs, batch)

    def compute(self) -> dict[str, dict[str, torch.Tensor]]:
        """``{task: {metric: value}}``, plus ``"coherence"`` (``{<name>_<key>: value}``) when
        coherence metrics are on; values are 0-d float64 tensors (:func:`to_floats` for
        numbers)."""
        with warnings.catch_warnings():
            # A task without any labelled sample is legitimately never updated: NaN results.
            warnings.filterwarnings("ignore", message=".*called before the ``update``")
            out = {task: as_result(m.compute()) for task, m in self.task_metrics.items()}
            extra = {name: m.compute() for name, m in self.extra_metrics.items()}
        coherence: dict[str, torch.Tensor] = {}
        for name, value in extra.items():
            if isinstance(value, Mapping):
                coherence.update({f"{name}_{k}": v for k, v in as_result(value).items()})
            else:
                coherence.update(as_result({name: value}))
        if coherence:
            out["coherence"] = coherence
        return out

    def details(self) -> dict[str, dict[str, Any]]:
        """Non-scalar extras: per-class IoU and absent classes of the class tasks."""
        return {
            task: {"per_class_iou": m.per_class_iou(), "absent_classes": m.absent_classes()}
            for task, m in self.task_metrics.items()
            if isinstance(m, SegmentationMetrics)
        }

    def reset(self) -> None:
        """Clear every accumulated state."""
        for metric in self.values():
            metric.reset()

    def describe(self) -> str:
        """The protocol settings in one line (print it next to the results)."""
        return self.protocol.describe() if self.protocol else "custom metrics"


def flatten(results: Mapping[str, Mapping[str, float]], sep: str = "/") -> dict[str, float]:
    """``{task: {name: v}}`` → ``{"task/name": v}`` (for loggers)."""
    return {f"{t}{sep}{k}": v for t, metrics in results.items() for k, v in metrics.items()}


def build_metrics(
    tasks: Mapping[str, int] | list[str],
    protocol: str | Protocol = "mtinet",
    dataset: str = "nyud",
    boundary: bool = True,
    coherence: bool = True,
    **overrides: Any,
) -> MultiTaskMetrics:
    """The metric collection for ``tasks`` under ``protocol``.

    Args:
        tasks: ``{task: channels}`` (or task names with default channels).
        protocol: ``"mtinet"`` or ``"atrc"`` (or a :class:`Protocol`); ``overrides`` replace
            single settings, e.g. ``depth_max=None`` for the original MTI-Net code.
        dataset: ``"nyud"`` or ``"pascal"``: sets the boundary tolerance (:data:`EDGE_MAX_DIST`).
        boundary: score ``edge`` with :class:`mtcp.metrics.boundary.BoundaryF` (odsF, oisF,
            AP); when False, ``edge`` is not scored.
        coherence: add depth–normal coherence (needs depth and normals) and boundary coherence
            (needs semseg and depth; normals, when predicted, add creases) from
            :mod:`mtcp.metrics.coherence`.
    """
    tasks = resolve_tasks(tasks)
    p = get_protocol(protocol, **overrides)
    if dataset not in EDGE_MAX_DIST:
        known = ", ".join(EDGE_MAX_DIST)
        raise MtcpError(f"unknown dataset {dataset!r} for metrics; known: {known}")
    log.info("metrics: %s", p.describe())
    metrics = {
        task: task_metric(task).build(task, channels, p, dataset)
        for task, channels in tasks.items()
        if boundary or task != "edge"
    }
    return MultiTaskMetrics(metrics, coherence_metrics(tasks) if coherence else {}, p)
