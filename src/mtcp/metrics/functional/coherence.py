"""Cross-task coherence (SPEC §7): do the predicted maps describe one consistent scene?

Camera frame of :mod:`mtcp.tasks`: x right, y down, z forward; pixel ``(v, u)`` (row, column)
of depth ``z`` (metres along z) back-projects to ``P = ((u - cx) z / fx, (v - cy) z / fy, z)``
with intrinsics ``fx, fy, cx, cy`` in pixels of the image.

**Depth–normal coherence** (degrees, lower is better, 0 = ideal):
``angle = atan2(|n_d × n|, n_d · n)`` between the normal ``n`` of the normals map (L2-normalised)
and the normal ``n_d`` implied by the depth map (:func:`normals_from_depth`), averaged over the
*counted* pixels: depth locally smooth (below) and ``n`` non-zero. Per image: the mean over its
counted pixels (NaN without any); pooled (``mean``): the sum over all images' counted pixels
divided by their number, so large smooth images weigh more; ``image_mean``: the mean of the
per-image values. Images whose intrinsics are not finite cannot be back-projected: they are
skipped and counted in ``n_skipped``.

*Locally smooth* pixel: it and its 4 neighbours have a valid depth (finite, > 0), and the
second differences of the inverse depth ``w = 1/z`` along rows and columns are small:
``|w(u+1) - 2 w(u) + w(u-1)| <= smooth_tol * w(u)`` (same along v). Inverse depth is affine in
the pixel coordinates on any plane, so planes of every orientation are smooth, while occlusion
boundaries (and the pixel on each side of them) are not. Image-border pixels are never counted.

**Boundary coherence** (F-score in ``[0, 1]``, higher is better): the semantic boundaries of the
segmentation against the geometric discontinuities of depth and normals, matched one-to-one
within ``tolerance_px`` pixels (:mod:`mtcp.metrics.functional.matching`). For a 4-neighbour
pair ``(a, b)``:

* semantic boundary: both labels are not ignore (255) and differ;
* depth discontinuity: both depths valid and the inverse-depth step ``d = w_b - w_a`` differs
  from the step on each side of the pair that exists (``w_a - w_a'`` before, ``w_b' - w_b``
  after) by more than ``depth_jump * min(w_a, w_b)``: steps that continue a plane, however
  oblique, do not count, occlusions do;
* normal discontinuity: both normals non-zero and at an angle above ``normal_jump_deg``
  (creases, e.g. a room corner or a box edge).

The pixel of the pair nearer to the camera (smaller depth; ties: the top/left one) is marked, in
both maps alike. With ``m`` matches, ``S`` semantic and ``G`` geometric boundary pixels:
``F = 2 m / (S + G)``. An image with no semantic and no geometric boundary at all (e.g. the
constant maps of an untrained model) has nothing to agree on: its ``F`` is undefined (NaN), not
1, and it is left out of ``image_mean`` and counted in ``n_undefined``. Pooled ``F``:
``2 Σm / (ΣS + ΣG)`` over images (undefined images add nothing; NaN when all are undefined);
``image_mean``: mean of the defined per-image ``F``. Semantic boundaries without geometry (a picture
on a wall) and creases inside one class (two walls) cap the score below 1 even for exact labels;
score the targets (``from_targets=True``) for the attainable level.

The functions accept torch tensors in the batched conventions of :mod:`mtcp.tasks` (or one
image without the batch dimension) and numpy arrays of one image in the raw-sample layout
(depth ``[H, W]``, normals ``[H, W, 3]``); for a single image they return a float.
"""

from __future__ import annotations

import math

import torch

from mtcp.geometry import (
    angle_deg,
    as_depth4,
    as_intrinsics2,
    as_normals4,
    geometric_discontinuities,
    normals_from_depth,
    semantic_boundaries,
)
from mtcp.metrics.functional.matching import match_count
from mtcp.tasks import IGNORE_INDEX


def coherence_sums(
    depth, normals, intrinsics, smooth_tol: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: sum of angles (degrees) over counted pixels and their number, ``[B]`` each."""
    n_d, smooth = normals_from_depth(depth, intrinsics, smooth_tol)
    n = as_normals4(normals).to(n_d.device)
    counted = smooth[:, 0] & (torch.linalg.vector_norm(n, dim=1) > 0)
    angle = torch.where(counted, angle_deg(n_d, n), torch.zeros_like(counted, dtype=n.dtype))
    return angle.sum((1, 2)), counted.sum((1, 2))


def depth_normal_coherence(depth, normals, intrinsics, smooth_tol: float = 0.01):
    """Per-image mean angle (degrees) between ``normals`` and the normals implied by ``depth``.

    Args:
        depth: ``[B, 1, H, W]`` metres (or one image, see the module docstring).
        normals: ``[B, 3, H, W]`` camera-frame vectors (normalised here; zero = not counted).
        intrinsics: ``[B, 4]`` (or ``[4]``) fx, fy, cx, cy in pixels.
        smooth_tol: see :func:`normals_from_depth`.

    Returns:
        float64 ``[B]`` (a float for one image); NaN where no pixel is counted or the
        intrinsics are not finite.
    """
    z, single = as_depth4(depth)
    k = as_intrinsics2(intrinsics, z.shape[0])
    sums, counts = coherence_sums(z, normals, k, smooth_tol)
    out = sums / counts.clamp_min(1)
    out[(counts == 0) | ~torch.isfinite(k).all(1).to(out.device)] = float("nan")
    return float(out[0]) if single else out


def boundary_coherence_counts(
    semseg,
    depth,
    normals,
    intrinsics,
    tolerance_px: float,
    depth_jump: float,
    normal_jump_deg: float,
    ignore_index: int,
) -> torch.Tensor:
    """int64 ``[B, 3]``: matches, semantic and geometric boundary pixels of every image."""
    z, _ = as_depth4(depth)
    if normals is None and intrinsics is not None:
        k = as_intrinsics2(intrinsics, z.shape[0])
        if torch.isfinite(k).all():
            normals = normals_from_depth(z, k)[0]
    sem = semantic_boundaries(semseg, z, ignore_index).cpu().numpy()
    geo = geometric_discontinuities(z, normals, depth_jump, normal_jump_deg).cpu().numpy()
    counts = [
        (match_count(s, g, tolerance_px), int(s.sum()), int(g.sum())) for s, g in zip(sem, geo)
    ]
    return torch.tensor(counts, dtype=torch.int64).reshape(-1, 3)


def boundary_coherence_f(counts: torch.Tensor) -> torch.Tensor:
    """F from ``[..., 3]`` counts (matches, semantic, geometric); NaN without any boundary."""
    counts = counts.double()
    total = counts[..., 1] + counts[..., 2]
    return torch.where(total > 0, 2 * counts[..., 0] / total.clamp_min(1), math.nan)


def boundary_coherence(
    semseg,
    depth,
    normals=None,
    intrinsics=None,
    tolerance_px: float = 2.0,
    depth_jump: float = 0.05,
    normal_jump_deg: float = 30.0,
    ignore_index: int = IGNORE_INDEX,
):
    """Per-image F-score between segmentation boundaries and depth/normal discontinuities.

    Args:
        semseg: class ids ``[B, H, W]`` (argmax of the logits), ``ignore_index`` ignored.
        depth: ``[B, 1, H, W]`` metres.
        normals: optional ``[B, 3, H, W]``; when None and ``intrinsics`` are finite, the
            normals implied by the depth are used for creases.
        intrinsics: optional ``[B, 4]`` fx, fy, cx, cy.
        tolerance_px: matching distance in pixels.
        depth_jump, normal_jump_deg: discontinuity thresholds (module docstring).

    Returns:
        float64 ``[B]`` (a float for one image), in ``[0, 1]``; NaN (undefined) for an image
        with neither semantic nor geometric boundaries.
    """
    single = torch.as_tensor(semseg).dim() == 2
    counts = boundary_coherence_counts(
        semseg,
        depth,
        normals,
        intrinsics,
        tolerance_px,
        depth_jump,
        normal_jump_deg,
        ignore_index,
    )
    f = boundary_coherence_f(counts)
    return float(f[0]) if single else f
