"""Cross-task consistency losses: terms that make the predicted maps describe one scene.

Off by default; ``loss.consistency: [depth_normal, semantic_edge]`` in a training config adds
them. Each term is a scalar next to the task losses ``{task: L_t}`` (key = the term's name), so
the weighting scheme (equal, uncertainty, DWA, LPS) weights it like a task.

``depth_normal`` (unitless, in [0, 2]): with ``n`` the predicted normals (L2-normalised) and
``n_d`` the normals implied by the predicted depth and the batch camera
(:func:`mtcp.geometry.depth_normals`), the mean of ``1 − n · n_d`` over the pixels where the
predicted depth is locally smooth (no discontinuity: the smoothness test of
:mod:`mtcp.metrics.functional.coherence`) and ``n`` is non-zero. Gradients reach both the depth
and the normals; the mask itself carries none. 0 for a depth map and normals of the same
surface.

``semantic_edge`` (unitless, in [0, 1]): semantic boundaries should lie on predicted edges.
With ``p`` the class probabilities (softmax of the semseg logits), the boundary strength of a
4-neighbour pair ``(a, b)`` is ``1 − p_a · p_b`` (the probability that independent draws
differ), a pixel's strength ``s`` the largest over its pairs, and ``e`` the edge probability
max-pooled over ``(2 r + 1)²`` pixels (``r = tolerance_px``, default 1). The term is
``Σ s (1 − e) / max(Σ s, 1)`` over the batch (denominator detached): the share of semantic
boundary not covered by an edge. One-sided on purpose: edges without a class change
(occlusions inside a class, creases) are legitimate. 0 for one-hot segmentations whose every
boundary is an edge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtcp.errors import MtcpError
from mtcp.geometry import depth_normals

#: term name -> the tasks it needs; the weighting treats a term like a task of that ``kind``
TERMS: dict[str, tuple[str, ...]] = {
    "depth_normal": ("depth", "normals"),
    "semantic_edge": ("semseg", "edge"),
}
#: kind of each term for schemes that scale by task kind (uncertainty: regression vs class)
TERM_KINDS = {"depth_normal": "normals", "semantic_edge": "binary"}


def depth_normal_consistency(
    depth: Tensor, normals: Tensor, intrinsics: Tensor, smooth_tol: float = 0.01
) -> Tensor:
    """Mean ``1 − cos`` between ``normals`` and the normals implied by ``depth`` (docstring).

    Args:
        depth: ``[B, 1, H, W]`` metres (predicted).
        normals: ``[B, 3, H, W]`` camera-frame vectors (predicted, any length).
        intrinsics: ``[B, 4]`` fx, fy, cx, cy in pixels of these maps.
        smooth_tol: smoothness bound of :func:`mtcp.geometry.normals_from_depth`.

    Returns:
        Scalar tensor; exactly 0 with a zero gradient when no pixel is counted.
    """
    n_d, smooth = depth_normals(depth, intrinsics, smooth_tol)
    norm = torch.linalg.vector_norm(normals, dim=1)
    counted = smooth[:, 0] & (norm.detach() > 1e-6)
    n = normals / norm.clamp_min(1e-6)[:, None]
    cos = (n * n_d.to(n.dtype)).sum(1)
    per_pixel = torch.where(counted, 1.0 - cos, torch.zeros_like(cos))
    return per_pixel.sum() / counted.sum().clamp(min=1).to(cos.dtype)


def semantic_boundary_strength(logits: Tensor) -> Tensor:
    """``[B, H, W]`` in [0, 1]: soft semantic boundaries of segmentation ``logits [B, C, H, W]``."""
    p = logits.softmax(1)
    vertical = 1.0 - (p[:, :, :-1] * p[:, :, 1:]).sum(1)  # pairs (v, v + 1): [B, H-1, W]
    horizontal = 1.0 - (p[..., :-1] * p[..., 1:]).sum(1)  # pairs (u, u + 1): [B, H, W-1]
    strength = torch.zeros_like(p[:, 0])
    strength = torch.maximum(strength, F.pad(vertical, (0, 0, 0, 1)))
    strength = torch.maximum(strength, F.pad(vertical, (0, 0, 1, 0)))
    strength = torch.maximum(strength, F.pad(horizontal, (0, 1)))
    return torch.maximum(strength, F.pad(horizontal, (1, 0)))


def semantic_edge_consistency(
    semseg_logits: Tensor, edge_logits: Tensor, tolerance_px: int = 1
) -> Tensor:
    """Share of the soft semantic boundaries not covered by predicted edges (docstring).

    Args:
        semseg_logits: ``[B, C, H, W]`` class scores.
        edge_logits: ``[B, 1, H, W]`` edge logits (model units).
        tolerance_px: edge max-pool radius ``r`` in pixels.

    Returns:
        Scalar tensor in [0, 1].
    """
    strength = semantic_boundary_strength(semseg_logits.float())
    r = int(tolerance_px)
    edge = edge_logits.float().sigmoid()
    if r > 0:
        edge = F.max_pool2d(edge, 2 * r + 1, stride=1, padding=r)
    missed = (strength * (1.0 - edge[:, 0])).sum()
    return missed / strength.detach().sum().clamp(min=1.0)


class ConsistencyLoss(nn.Module):
    """The selected consistency terms: ``(outputs, batch) -> {term: scalar}``.

    Args:
        terms: names from :data:`TERMS` (empty = no term, the default).
        tasks: the tasks the model predicts; each term needs its :data:`TERMS` tasks.
        smooth_tol: smoothness bound of the ``depth_normal`` term.
        tolerance_px: edge tolerance of the ``semantic_edge`` term.

    ``depth_normal`` reads ``batch["intrinsics"]`` (``[B, 4]``, pixels of the input size).
    """

    def __init__(
        self,
        terms: Iterable[str],
        tasks: Iterable[str] | Mapping[str, int],
        smooth_tol: float = 0.01,
        tolerance_px: int = 1,
    ) -> None:
        super().__init__()
        self.terms = tuple(terms)
        have = set(tasks)
        for term in self.terms:
            if term not in TERMS:
                raise MtcpError(
                    f"loss.consistency: unknown term {term!r}; terms: {', '.join(TERMS)}"
                )
            missing = [t for t in TERMS[term] if t not in have]
            if missing:
                raise MtcpError(
                    f"loss.consistency: term {term!r} needs the tasks {list(TERMS[term])}, "
                    f"but {missing} are not trained (tasks: {sorted(have)})"
                )
        if len(set(self.terms)) != len(self.terms):
            raise MtcpError(f"loss.consistency: a term is listed twice in {list(self.terms)}")
        self.smooth_tol = float(smooth_tol)
        self.tolerance_px = int(tolerance_px)

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any]) -> dict[str, Tensor]:
        losses: dict[str, Tensor] = {}
        if "depth_normal" in self.terms:
            if "intrinsics" not in batch:
                raise MtcpError(
                    "loss.consistency: term 'depth_normal' needs batch['intrinsics'] "
                    "(fx, fy, cx, cy per image); this dataset provides no camera"
                )
            depth, normals = outputs["depth"].float(), outputs["normals"].float()
            k = torch.as_tensor(batch["intrinsics"]).to(depth.device).reshape(-1, 4).float()
            known = torch.isfinite(k).all(1)  # images without a camera add nothing
            if not bool(known.all()):
                depth, normals, k = depth[known], normals[known], k[known]
            losses["depth_normal"] = depth_normal_consistency(depth, normals, k, self.smooth_tol)
        if "semantic_edge" in self.terms:
            losses["semantic_edge"] = semantic_edge_consistency(
                outputs["semseg"], outputs["edge"], self.tolerance_px
            )
        return losses
