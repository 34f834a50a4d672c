"""Training losses: per-task losses with deep supervision, and loss-weighting schemes.

>>> from mtcp.losses import MultiTaskLoss, create_weighting
>>> loss_fn = MultiTaskLoss(["semseg", "depth"])          # (outputs, batch) -> {task: L_t}
>>> scheme = create_weighting("lps", ["semseg", "depth"])  # {task: L_t} -> total
"""

from __future__ import annotations

from mtcp.losses.task_losses import (
    MultiTaskLoss,
    balanced_bce_loss,
    cross_entropy_loss,
    depth_l1_loss,
    normals_loss,
    task_loss,
)
from mtcp.losses.weighting import (
    WEIGHTINGS,
    DWAWeighting,
    EqualWeighting,
    FixedWeighting,
    LogSumWeighting,
    LPSWeighting,
    UncertaintyWeighting,
    WeightingScheme,
    create_weighting,
)

__all__ = [
    "WEIGHTINGS",
    "DWAWeighting",
    "EqualWeighting",
    "FixedWeighting",
    "LPSWeighting",
    "LogSumWeighting",
    "MultiTaskLoss",
    "UncertaintyWeighting",
    "WeightingScheme",
    "balanced_bce_loss",
    "create_weighting",
    "cross_entropy_loss",
    "depth_l1_loss",
    "normals_loss",
    "task_loss",
]
