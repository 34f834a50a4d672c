"""Evaluation metrics (SPEC §6–7): torchmetrics objects whose state pools exactly what each
protocol pools, the multi-task collection, Δm and the better direction of every reported key.

Typical use::

    metrics = build_metrics({"semseg": 40, "depth": 1, "normals": 3}, protocol="mtinet")
    for batch in loader:
        metrics.update(model(batch["image"]), batch)
    results = metrics.compute()          # {task: {metric: 0-d tensor}}; to_floats(results)
    print(metrics.describe(), delta_m(results, load_references("single_task.json")))
    higher_is_better("val/coherence/depth_normal_mean")   # False: degrees

The pure functions (BSDS counts and scores, coherence, thresholds) are in
:mod:`mtcp.metrics.functional`; the classes here accumulate them.
"""

from mtcp.metrics.boundary import BoundaryF
from mtcp.metrics.coherence import BoundaryCoherence, DepthNormalCoherence
from mtcp.metrics.collection import MultiTaskMetrics, build_metrics, flatten
from mtcp.metrics.depth import DepthMetrics
from mtcp.metrics.directions import direction, higher_is_better, scored_keys
from mtcp.metrics.inputs import to_floats
from mtcp.metrics.multitask import (
    DELTA_M_METRICS,
    delta_m,
    delta_m_terms,
    gm_error,
    load_references,
)
from mtcp.metrics.normals import NormalsMetrics
from mtcp.metrics.protocol import EDGE_MAX_DIST, PROTOCOLS, Protocol, get_protocol
from mtcp.metrics.registry import COHERENCE_METRICS, TASK_METRICS, coherence_metrics, task_metric
from mtcp.metrics.saliency import SaliencyMetrics
from mtcp.metrics.segmentation import SegmentationMetrics

__all__ = [
    "COHERENCE_METRICS",
    "DELTA_M_METRICS",
    "EDGE_MAX_DIST",
    "PROTOCOLS",
    "TASK_METRICS",
    "BoundaryCoherence",
    "BoundaryF",
    "DepthMetrics",
    "DepthNormalCoherence",
    "MultiTaskMetrics",
    "NormalsMetrics",
    "Protocol",
    "SaliencyMetrics",
    "SegmentationMetrics",
    "build_metrics",
    "coherence_metrics",
    "delta_m",
    "delta_m_terms",
    "direction",
    "flatten",
    "get_protocol",
    "gm_error",
    "higher_is_better",
    "load_references",
    "scored_keys",
    "task_metric",
    "to_floats",
]
