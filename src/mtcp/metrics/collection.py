"""Evaluation protocols and the multi-task metric collection (SPEC §6).

A :class:`Protocol` names every quirk in which the two published evaluation protocols differ:

============================  ============================  ================================
parameter                     ``"mtinet"`` (MT-CP release)  ``"atrc"`` (ATRC / InvPT tables)
============================  ============================  ================================
``depth_max``                 6.5535 m (release cap)        None (every ``d > 0``)
``depth_min_pred``            1e-9                          1e-9
``normals_angle``             ``"arccos"``                  ``"atan2"``
``normals_png_roundtrip``     False (release: True)         False
``sal_pooling``               ``"image"``                   ``"pixel"``
``sal_thresholds``            linspace(0.2, 0.9, 15)        0.05, 0.10, …, 0.95
``sal_beta2``                 1.0                           0.3
``sal_png_roundtrip``         False (release: True)         False
``human_parts_skip_uniform``  True                          True
============================  ============================  ================================

The original MTI-Net code has no depth cap: ``build_metrics(..., depth_max=None)``.

The ATRC protocol also pads NYUD images to 448×576; that is a data transform, not done here.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric

from mtcp.errors import MtcpError
from mtcp.metrics.depth import RELEASE_MAX_DEPTH, DepthMetrics
from mtcp.metrics.normals import NormalsMetrics
from mtcp.metrics.saliency import ATRC_THRESHOLDS, MTINET_THRESHOLDS, SaliencyMetrics
from mtcp.metrics.segmentation import SegmentationMetrics
from mtcp.tasks import get_task, resolve_tasks

log = logging.getLogger(__name__)

# Boundary matching tolerance, fraction of the image diagonal (BSDS maxDist).
EDGE_MAX_DIST = {"nyud": 0.011, "pascal": 0.0075}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The evaluation quirks of one protocol; see the module docstring for their values."""

    name: str
    depth_max: float | None
    normals_angle: str
    sal_pooling: str
    sal_thresholds: tuple[float, ...]
    sal_beta2: float
    depth_min_pred: float = 1e-9
    normals_png_roundtrip: bool = False
    sal_png_roundtrip: bool = False
    human_parts_skip_uniform: bool = True

    def describe(self) -> str:
        """One line naming every setting, for logs and reports."""
        cap = "none" if self.depth_max is None else f"{self.depth_max:g} m"
        return (
            f"protocol {self.name}: depth cap {cap}, predictions <= 0 -> {self.depth_min_pred:g}; "
            f"normals angle {self.normals_angle}, 8-bit PNG round trip "
            f"{self.normals_png_roundtrip}; saliency pooled per {self.sal_pooling}, "
            f"{len(self.sal_thresholds)} thresholds {self.sal_thresholds[0]:g}-"
            f"{self.sal_thresholds[-1]:g}, beta^2 {self.sal_beta2:g}, 8-bit "
            f"{self.sal_png_roundtrip}; human parts skip uniform images "
            f"{self.human_parts_skip_uniform}"
        )


PROTOCOLS: dict[str, Protocol] = {
    "mtinet": Protocol(
        name="mtinet",
        depth_max=RELEASE_MAX_DEPTH,
        normals_angle="arccos",
        sal_pooling="image",
        sal_thresholds=MTINET_THRESHOLDS,
        sal_beta2=1.0,
    ),
    "atrc": Protocol(
        name="atrc",
        depth_max=None,
        normals_angle="atan2",
        sal_pooling="pixel",
        sal_thresholds=ATRC_THRESHOLDS,
        sal_beta2=0.3,
    ),
}


def get_protocol(protocol: str | Protocol = "mtinet", **overrides: Any) -> Protocol:
    """The named protocol, with any field replaced by ``overrides`` (e.g. ``depth_max=None``)."""
    if isinstance(protocol, str):
        if protocol not in PROTOCOLS:
            raise MtcpError(f"unknown metric protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
        protocol = PROTOCOLS[protocol]
    fields = {f.name for f in dataclasses.fields(Protocol)}
    unknown = set(overrides) - fields
    if unknown:
        raise MtcpError(f"unknown protocol setting(s) {sorted(unknown)}; known: {sorted(fields)}")
    return dataclasses.replace(protocol, **overrides)


def _task_metric(task: str, channels: int, p: Protocol) -> Metric:
    kind = get_task(task).kind
    if kind == "classes":
        skip = p.human_parts_skip_uniform and task == "human_parts"
        return SegmentationMetrics(channels, skip_uniform_images=skip, task=task)
    if kind == "depth":
        return DepthMetrics(max_depth=p.depth_max, min_pred=p.depth_min_pred)
    if kind == "normals":
        return NormalsMetrics(angle=p.normals_angle, png_roundtrip=p.normals_png_roundtrip)
    if task == "sal":
        return SaliencyMetrics(
            p.sal_thresholds, p.sal_pooling, p.sal_beta2, png_roundtrip=p.sal_png_roundtrip
        )
    raise MtcpError(f"no metric for task {task!r}")


def _optional(module: str, name: str, what: str, flag: str) -> type:
    try:
        return getattr(importlib.import_module(f"mtcp.metrics.{module}"), name)
    except (ImportError, AttributeError) as err:
        raise MtcpError(
            f"{what} needs mtcp.metrics.{module}.{name}, which is not available ({err}); "
            f"pass {flag}=False to evaluate without it"
        ) from err


class MultiTaskMetrics(nn.Module):
    """All metrics of a multi-task evaluation behind one ``update / compute / reset``.

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

    @staticmethod
    def _prediction(task: str, output: torch.Tensor) -> torch.Tensor:
        # Model units (tasks.py) -> metric inputs: binary tasks are scored as probabilities.
        return output.float().sigmoid() if get_task(task).kind == "binary" else output

    @torch.no_grad()
    def update(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> None:
        """Accumulate one batch.

        Args:
            outputs: model outputs in model units (logits, metres, vectors), at target size;
                only the keys named after tasks are read.
            batch: tensor batch (tasks.py conventions); samples whose ``labelled[task]`` is
                False are left out of that task's metric.
        """
        labelled = batch.get("labelled") or {}
        for task, metric in self.task_metrics.items():
            if task not in outputs:
                raise MtcpError(f"model outputs have no {task!r} (got: {', '.join(outputs)})")
            if task not in batch:
                raise MtcpError(f"batch has no {task!r} target (got: {', '.join(batch)})")
            pred, target = outputs[task].detach(), batch[task]
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
            metric.update(self._prediction(task, pred), target.to(pred.device))
        for metric in self.extra_metrics.values():
            metric.update(outputs, batch)

    def compute(self) -> dict[str, dict[str, float]]:
        """``{task: {metric: value}}``, plus ``"coherence"`` when coherence metrics are on."""
        with warnings.catch_warnings():
            # A task without any labelled sample is legitimately never updated: NaN results.
            warnings.filterwarnings("ignore", message=".*called before the ``update``")
            out = {task: _as_floats(m.compute()) for task, m in self.task_metrics.items()}
            extra = {name: m.compute() for name, m in self.extra_metrics.items()}
        coherence: dict[str, float] = {}
        for name, value in extra.items():
            if isinstance(value, Mapping):
                coherence.update({f"{name}_{k}": v for k, v in _as_floats(value).items()})
            else:
                coherence[name] = float(value)
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
        for metric in [*self.task_metrics.values(), *self.extra_metrics.values()]:
            metric.reset()

    def describe(self) -> str:
        """The protocol settings in one line (print it next to the results)."""
        return self.protocol.describe() if self.protocol else "custom metrics"


def _as_floats(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()}


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
    metrics: dict[str, Metric] = {}
    for task, channels in tasks.items():
        if task == "edge":
            if boundary:
                boundary_f = _optional("boundary", "BoundaryF", "edge evaluation", "boundary")
                metrics[task] = boundary_f(
                    max_dist=EDGE_MAX_DIST[dataset], n_thresholds=99, thin=True
                )
        else:
            metrics[task] = _task_metric(task, channels, p)
    extra: dict[str, Metric] = {}
    if coherence:
        if "depth" in tasks and "normals" in tasks:
            cls = _optional("coherence", "DepthNormalCoherence", "coherence", "coherence")
            extra["depth_normal"] = cls()
        # depth decides which pixel of a boundary pair is marked: no boundary coherence without
        if "semseg" in tasks and "depth" in tasks:
            cls = _optional("coherence", "BoundaryCoherence", "coherence", "coherence")
            extra["boundary"] = cls()
    return MultiTaskMetrics(metrics, extra, p)
