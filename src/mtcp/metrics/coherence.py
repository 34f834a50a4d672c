"""Cross-task coherence metric classes (SPEC §7): :class:`DepthNormalCoherence` and
:class:`BoundaryCoherence` accumulate the per-image sums and counts of
:mod:`mtcp.metrics.functional.coherence`, where both scores are defined."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from mtcp.errors import MtcpError

# The functions are re-exported for callers of ``mtcp.metrics.coherence.<function>``.
from mtcp.metrics.functional.coherence import (  # noqa: F401
    boundary_coherence,
    boundary_coherence_counts,
    boundary_coherence_f,
    coherence_sums,
    depth_normal_coherence,
)
from mtcp.metrics.inputs import as_result, as_tensor
from mtcp.tasks import IGNORE_INDEX


def _source(outputs: dict, batch: dict, from_targets: bool, key: str) -> torch.Tensor:
    src = batch if from_targets else outputs
    if key not in src:
        where = "batch" if from_targets else "model outputs"
        raise MtcpError(f"coherence: task {key!r} is missing from the {where}")
    return as_tensor(src[key], f"coherence: {key} of the {'batch' if from_targets else 'outputs'}")


def _batch_intrinsics(batch: dict, n: int, device) -> torch.Tensor:
    if "intrinsics" not in batch:
        raise MtcpError("coherence: the batch has no 'intrinsics' (fx, fy, cx, cy per image)")
    return torch.as_tensor(batch["intrinsics"]).reshape(n, 4).to(device)  # numbers, any form


class DepthNormalCoherence(Metric):
    """Depth–normal coherence in degrees (module docstring), pooled and per image.

    ``update(outputs, batch)`` reads ``depth`` and ``normals`` from the model outputs (or from
    the batch when ``from_targets=True``) and ``batch["intrinsics"]``; images with non-finite
    intrinsics are skipped. ``compute()`` returns ``mean`` (pixel-pooled), ``image_mean``,
    ``n_images`` (scored), ``n_undefined`` (scored without any counted pixel, e.g. images under
    3x3: NaN, left out of ``image_mean``) and ``n_skipped``; ``per_image()`` gives the
    per-image means.
    """

    is_differentiable = False
    higher_is_better = False
    #: better direction of every key of :meth:`compute` (None: a count, not a score)
    directions: ClassVar[dict[str, bool | None]] = {
        "mean": False,
        "image_mean": False,
        "n_images": None,
        "n_undefined": None,
        "n_skipped": None,
    }
    full_state_update = False

    def __init__(self, from_targets: bool = False, smooth_tol: float = 0.01, **kwargs) -> None:
        super().__init__(**kwargs)
        self.from_targets = bool(from_targets)
        self.smooth_tol = float(smooth_tol)
        self.add_state("angle_sum", default=[], dist_reduce_fx="cat")
        self.add_state("n_pixels", default=[], dist_reduce_fx="cat")
        self.add_state(
            "n_skipped", default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum"
        )

    def update(self, outputs: dict, batch: dict) -> None:
        """Add a batch (see the class docstring)."""
        depth = _source(outputs, batch, self.from_targets, "depth")
        normals = _source(outputs, batch, self.from_targets, "normals")
        k = _batch_intrinsics(batch, depth.shape[0], depth.device)
        ok = torch.isfinite(k).all(1)
        self.n_skipped += int((~ok).sum())
        if ok.any():
            sums, counts = coherence_sums(depth[ok], normals[ok], k[ok], self.smooth_tol)
            self.angle_sum.append(sums.to(self.device))
            self.n_pixels.append(counts.to(self.device))

    def per_image(self) -> torch.Tensor:
        """float64 ``[N]``: mean angle (degrees) of each scored image, NaN without pixels."""
        if isinstance(self.angle_sum, list) and not self.angle_sum:
            return torch.zeros(0, dtype=torch.float64)
        sums, counts = dim_zero_cat(self.angle_sum), dim_zero_cat(self.n_pixels)
        return torch.where(counts > 0, sums / counts.clamp_min(1), float("nan"))

    def compute(self) -> dict[str, torch.Tensor]:
        """``mean`` and ``image_mean`` in degrees, ``n_images``, ``n_undefined``, ``n_skipped``
        (0-d float64 tensors)."""
        per = self.per_image()
        if per.numel():
            sums, counts = dim_zero_cat(self.angle_sum), dim_zero_cat(self.n_pixels)
            mean = float(sums.sum() / counts.sum()) if counts.sum() > 0 else math.nan
        else:
            mean = math.nan
        scored = per[~per.isnan()]
        out = {
            "mean": mean,
            "image_mean": float(scored.mean()) if scored.numel() else math.nan,
            "n_images": int(per.numel()),
            "n_undefined": int(per.numel() - scored.numel()),
            "n_skipped": int(self.n_skipped),
        }
        return as_result(out, self.device)


class BoundaryCoherence(Metric):
    """Boundary coherence F-score (module docstring), pooled and per image.

    ``update(outputs, batch)`` reads ``semseg`` (logits ``[B, C, H, W]``, argmax taken; class
    ids when ``from_targets=True``), ``depth`` and, when present and ``use_normals``,
    ``normals``; without normals, finite ``batch["intrinsics"]`` give the normals implied by the
    depth, otherwise only depth discontinuities count. ``compute()`` returns ``F`` (pooled),
    ``image_mean`` (over defined images), ``n_images`` (all) and ``n_undefined`` (images without
    any boundary, F = NaN); ``per_image()`` gives the per-image F.
    """

    is_differentiable = False
    higher_is_better = True
    #: better direction of every key of :meth:`compute` (None: a count, not a score)
    directions: ClassVar[dict[str, bool | None]] = {
        "F": True,
        "image_mean": True,
        "n_images": None,
        "n_undefined": None,
    }
    full_state_update = False

    def __init__(
        self,
        from_targets: bool = False,
        tolerance_px: float = 2.0,
        depth_jump: float = 0.05,
        normal_jump_deg: float = 30.0,
        use_normals: bool = True,
        ignore_index: int = IGNORE_INDEX,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.from_targets = bool(from_targets)
        self.tolerance_px = float(tolerance_px)
        self.depth_jump = float(depth_jump)
        self.normal_jump_deg = float(normal_jump_deg)
        self.use_normals = bool(use_normals)
        self.ignore_index = int(ignore_index)
        self.add_state("counts", default=[], dist_reduce_fx="cat")

    def update(self, outputs: dict, batch: dict) -> None:
        """Add a batch (see the class docstring)."""
        semseg = _source(outputs, batch, self.from_targets, "semseg")
        if semseg.is_floating_point() and semseg.dim() == 4:
            semseg = semseg.argmax(1)
        depth = _source(outputs, batch, self.from_targets, "depth")
        src = batch if self.from_targets else outputs
        normals = src.get("normals") if self.use_normals else None
        normals = None if normals is None else as_tensor(normals, "coherence: normals")
        intrinsics = batch.get("intrinsics") if self.use_normals else None
        counts = boundary_coherence_counts(
            semseg,
            depth,
            normals,
            intrinsics,
            self.tolerance_px,
            self.depth_jump,
            self.normal_jump_deg,
            self.ignore_index,
        )
        self.counts.append(counts.to(self.device))

    def per_image(self) -> torch.Tensor:
        """float64 ``[N]``: F of each image (NaN where undefined)."""
        if isinstance(self.counts, list) and not self.counts:
            return torch.zeros(0, dtype=torch.float64)
        return boundary_coherence_f(dim_zero_cat(self.counts))

    def compute(self) -> dict[str, torch.Tensor]:
        """``F`` (pooled), ``image_mean``, ``n_images`` and ``n_undefined`` (0-d float64
        tensors)."""
        per = self.per_image()
        if not per.numel():
            empty = {"F": math.nan, "image_mean": math.nan, "n_images": 0, "n_undefined": 0}
            return as_result(empty, self.device)
        pooled = boundary_coherence_f(dim_zero_cat(self.counts).sum(0))
        defined = per[~per.isnan()]
        out = {
            "F": float(pooled),
            "image_mean": float(defined.mean()) if defined.numel() else math.nan,
            "n_images": int(per.numel()),
            "n_undefined": int(per.numel() - defined.numel()),
        }
        return as_result(out, self.device)
