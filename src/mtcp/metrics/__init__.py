"""Evaluation metrics (SPEC §6–7): torchmetrics objects whose state pools exactly what each
protocol pools, the multi-task collection and Δm.

Typical use::

    metrics = build_metrics({"semseg": 40, "depth": 1, "normals": 3}, protocol="mtinet")
    for batch in loader:
        metrics.update(model(batch["image"]), batch)
    results = metrics.compute()          # {task: {metric: value}}
    print(metrics.describe(), delta_m(results, load_references("single_task.json")))

Boundary (``mtcp.metrics.boundary``) and coherence (``mtcp.metrics.coherence``) metrics are
imported lazily by :func:`build_metrics`.
"""

from mtcp.metrics.collection import (
    EDGE_MAX_DIST,
    PROTOCOLS,
    MultiTaskMetrics,
    Protocol,
    build_metrics,
    flatten,
    get_protocol,
)
from mtcp.metrics.depth import DepthMetrics
from mtcp.metrics.multitask import DELTA_M_METRICS, delta_m, delta_m_terms, load_references
from mtcp.metrics.normals import NormalsMetrics
from mtcp.metrics.saliency import SaliencyMetrics
from mtcp.metrics.segmentation import SegmentationMetrics

__all__ = [
    "DELTA_M_METRICS",
    "EDGE_MAX_DIST",
    "PROTOCOLS",
    "DepthMetrics",
    "MultiTaskMetrics",
    "NormalsMetrics",
    "Protocol",
    "SaliencyMetrics",
    "SegmentationMetrics",
    "build_metrics",
    "delta_m",
    "delta_m_terms",
    "flatten",
    "get_protocol",
    "load_references",
]
