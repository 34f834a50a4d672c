"""The BSDS boundary metric class: per-image counts accumulated for ``odsF``, ``oisF``, ``AP``.

The protocol, the counting kernel and the scores are in :mod:`mtcp.metrics.functional.boundary`
(thinning: :mod:`mtcp.metrics.functional.thinning`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from mtcp.errors import MtcpError
from mtcp.metrics.functional.boundary import boundary_counts, bsds_scores, bsds_thresholds
from mtcp.metrics.inputs import as_result, as_tensor
from mtcp.tasks import IGNORE_INDEX


def default_workers() -> int:
    """CPUs this process may use, at most 8 (default thread count of :class:`BoundaryF`)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


class BoundaryF(Metric):
    """BSDS boundary metrics ``odsF``, ``oisF``, ``AP`` (fractions) and ``odsT`` (threshold).

    Args:
        max_dist: matching tolerance as a fraction of the image diagonal (0.011 NYUD,
            0.0075 PASCAL).
        n_thresholds: number of thresholds ``K`` (:func:`bsds_thresholds`).
        thin: thin each binarised prediction before matching (BSDS default).
        from_logits: apply a sigmoid to the predictions first (model outputs are logits).
        interpolate: BSDS interpolation between thresholds for ``odsF``.
        ignore_index: target value excluded from every count.
        num_workers: threads scoring the images of one ``update`` batch in parallel (the
            kernels release the GIL); default ``min(available CPUs, 8)``. Results do not depend
            on it.

    State: one ``[K, 4]`` count array per image (``cntR, sumR, cntP, sumP``), concatenated across
    processes, since ``oisF`` needs each image's best threshold. ``per_image_counts()`` returns
    them ``[N, K, 4]`` (process order after a sync).
    """

    is_differentiable = False
    higher_is_better = True
    #: better direction of every key of :meth:`compute` (None: not a score, e.g. a threshold)
    directions: ClassVar[dict[str, bool | None]] = {
        "odsF": True,
        "odsT": None,
        "oisF": True,
        "AP": True,
    }
    full_state_update = False

    def __init__(
        self,
        max_dist: float = 0.011,
        n_thresholds: int = 99,
        thin: bool = True,
        from_logits: bool = False,
        interpolate: bool = True,
        ignore_index: int = IGNORE_INDEX,
        num_workers: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.max_dist = float(max_dist)
        self.thresholds = bsds_thresholds(int(n_thresholds))
        self.thin = bool(thin)
        self.from_logits = bool(from_logits)
        self.interpolate = bool(interpolate)
        self.ignore_index = int(ignore_index)
        self.num_workers = default_workers() if num_workers is None else max(1, int(num_workers))
        self.add_state("counts", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch.

        Args:
            preds: ``[B, 1, H, W]`` (or ``[B, H, W]``) edge probabilities in ``[0, 1]``, or
                logits when ``from_logits=True``.
            target: same shape, 1 boundary, 0 not, ``ignore_index`` ignored.
        """
        preds, target = as_tensor(preds, "edge: predictions"), as_tensor(target, "edge: target")
        if preds.dim() == 4:
            preds = preds[:, 0]
        if target.dim() == 4:
            target = target[:, 0]
        if preds.dim() != 3 or preds.shape != target.shape:
            raise MtcpError(
                f"edge: expected predictions and targets [B, 1, H, W] of the same shape, got "
                f"{tuple(preds.shape)} and {tuple(target.shape)}"
            )
        probs = preds.detach()
        # Scored in their own precision; numpy has no bfloat16 (float32 holds it exactly).
        probs = probs.float() if probs.dtype == torch.bfloat16 else probs
        probs = probs if probs.is_floating_point() else probs.double()
        probs = probs.sigmoid() if self.from_logits else probs
        probs, target = probs.cpu().numpy(), target.detach().cpu().numpy()
        args = (self.max_dist, self.thresholds, self.thin, self.ignore_index)
        workers = min(self.num_workers, len(probs))
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                counts = list(pool.map(lambda pt: boundary_counts(*pt, *args), zip(probs, target)))
        else:
            counts = [boundary_counts(p, t, *args) for p, t in zip(probs, target)]
        self.counts.extend(torch.from_numpy(c)[None].to(self.device) for c in counts)

    def per_image_counts(self) -> np.ndarray:
        """int64 ``[N, K, 4]``: ``cntR, sumR, cntP, sumP`` of every image seen so far."""
        if isinstance(self.counts, list) and not self.counts:
            return np.zeros((0, len(self.thresholds), 4), dtype=np.int64)
        return dim_zero_cat(self.counts).cpu().numpy()

    def compute(self) -> dict[str, torch.Tensor]:
        """``{"odsF", "odsT", "oisF", "AP"}`` (:func:`~mtcp.metrics.functional.bsds_scores`;
        0-d float64 tensors)."""
        scores = bsds_scores(self.per_image_counts(), self.thresholds, self.interpolate)
        return as_result(scores, self.device)
