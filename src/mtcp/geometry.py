"""Camera geometry shared by the data, the metrics, the losses and the refinement.

Camera frame of :mod:`mtcp.tasks`: x right, y down, z forward; pixel ``(v, u)`` (row, column)
of depth ``z`` (metres along z) back-projects to ``P = ((u - cx) z / fx, (v - cy) z / fy, z)``
with intrinsics ``fx, fy, cx, cy`` in pixels of the image. See
:mod:`mtcp.metrics.functional.coherence` for how the smoothness test and the discontinuities
are defined. Any image size is accepted: along an axis of one pixel there is no neighbour pair,
so nothing is smooth and no discontinuity is marked across it (never an error).

The torch functions accept tensors in the batched conventions of :mod:`mtcp.tasks` (or one image
without the batch dimension) and numpy arrays of one image in the raw-sample layout (depth
``[H, W]``, normals ``[H, W, 3]``).
"""

from __future__ import annotations

import numpy as np
import torch

from mtcp.errors import MtcpError
from mtcp.tasks import IGNORE_INDEX

#: NYUD-v2 Kinect RGB camera for 480x640 images: fx, fy, cx, cy in pixels.
NYUD_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)
NYUD_SIZE = (480, 640)


def scale_intrinsics(
    intrinsics: np.ndarray | tuple[float, float, float, float],
    from_size: tuple[int, int],
    to_size: tuple[int, int],
) -> np.ndarray:
    """Intrinsics ``(fx, fy, cx, cy)`` of an image resized from ``from_size`` to ``to_size``.

    Sizes are ``(H, W)`` in pixels. Pixel centres are kept aligned (``align_corners=False``).
    """
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    sy = to_size[0] / from_size[0]
    sx = to_size[1] / from_size[1]
    return np.array(
        [fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5], dtype=np.float32
    )


def crop_intrinsics(intrinsics: np.ndarray, top: int, left: int) -> np.ndarray:
    """Intrinsics after cropping an image at ``(top, left)`` (pixels); focal lengths are kept."""
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    return np.array([fx, fy, cx - left, cy - top], dtype=np.float32)


def nyud_intrinsics(size: tuple[int, int]) -> np.ndarray:
    """The NYUD camera scaled to an image of ``size = (H, W)``."""
    return scale_intrinsics(NYUD_INTRINSICS, NYUD_SIZE, size)


def as_depth4(depth) -> tuple[torch.Tensor, bool]:
    """Depth as float64 ``[B, 1, H, W]`` and whether a single image was given."""
    d = torch.as_tensor(depth).detach().double()
    if d.dim() == 2 or (d.dim() == 3 and d.shape[0] == 1):
        return d.reshape(1, 1, *d.shape[-2:]), True
    if d.dim() != 4 or d.shape[1] != 1:
        raise MtcpError(f"coherence: depth must be [B, 1, H, W] metres, got {tuple(d.shape)}")
    return d, False


def as_normals4(normals) -> torch.Tensor:
    """Normals as float64 ``[B, 3, H, W]`` (numpy ``[H, W, 3]`` is one raw-layout image)."""
    if isinstance(normals, np.ndarray) and normals.ndim == 3 and normals.shape[-1] == 3:
        normals = np.moveaxis(normals, -1, 0)
    n = torch.as_tensor(normals).detach().double()
    n = n[None] if n.dim() == 3 else n
    if n.dim() != 4 or n.shape[1] != 3:
        raise MtcpError(f"coherence: normals must be [B, 3, H, W], got {tuple(n.shape)}")
    return n


def as_intrinsics2(intrinsics, batch: int) -> torch.Tensor:
    k = torch.as_tensor(intrinsics).detach().double().reshape(-1, 4)
    if k.shape[0] == 1 and batch > 1:
        k = k.expand(batch, 4)
    if k.shape[0] != batch:
        raise MtcpError(f"coherence: expected intrinsics [{batch}, 4] (fx, fy, cx, cy)")
    return k


def angle_deg(a: torch.Tensor, b: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Angle in degrees between vectors along ``dim`` (accurate near 0, unlike arccos)."""
    cross = torch.linalg.vector_norm(torch.cross(a, b, dim=dim), dim=dim)
    return torch.rad2deg(torch.atan2(cross, (a * b).sum(dim)))


def normals_from_depth(
    depth, intrinsics, smooth_tol: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface normals implied by a depth map, and where that surface is locally smooth.

    Args:
        depth: ``[B, 1, H, W]`` metres (0 or non-finite = invalid).
        intrinsics: ``[B, 4]`` fx, fy, cx, cy in pixels.
        smooth_tol: relative bound on the inverse-depth second differences (module docstring).

    Returns:
        ``normals`` float64 ``[B, 3, H, W]``: unit vectors from the cross product of the central
        3-D tangents along v and u, oriented towards the camera (``n · P < 0``), zero where a
        tangent is missing; ``smooth`` bool ``[B, 1, H, W]``. Detached: see
        :func:`depth_normals` for the differentiable form.
    """
    z, _ = as_depth4(depth)
    k = as_intrinsics2(intrinsics, z.shape[0]).to(z.device)
    return depth_normals(z, k, smooth_tol)


def depth_normals(
    depth: torch.Tensor, intrinsics: torch.Tensor, smooth_tol: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable :func:`normals_from_depth` in the dtype of ``depth`` (for losses).

    Args:
        depth: float ``[B, 1, H, W]`` metres, gradients flow through the normals.
        intrinsics: ``[B, 4]`` fx, fy, cx, cy in pixels (cast to ``depth``'s dtype).
        smooth_tol: see :func:`normals_from_depth`.

    Returns:
        ``normals`` ``[B, 3, H, W]`` (unit, towards the camera, zero where not smooth) and
        ``smooth`` bool ``[B, 1, H, W]`` (no gradient: a mask).
    """
    n, z, valid = tangent_normals(depth, intrinsics)
    with torch.no_grad():
        ok = _smooth_mask(z, valid, smooth_tol)
    return n * ok[:, None], ok[:, None]


def tangent_normals(
    depth: torch.Tensor, intrinsics: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unmasked, differentiable normals of the central 3-D tangents of ``depth [B, 1, H, W]``.

    Returns ``(normals [B, 3, H, W], z [B, H, W] with invalid depths set to 0, valid [B, H, W])``;
    normals are unit vectors towards the camera, zero on the image border.
    """
    b, _, h, w = depth.shape
    k = intrinsics.to(device=depth.device, dtype=depth.dtype).reshape(b, 4)
    fx, fy, cx, cy = (k[:, i].view(b, 1, 1) for i in range(4))
    z = depth[:, 0]
    valid = torch.isfinite(z) & (z > 0)
    z = torch.where(valid, z, torch.zeros_like(z))
    u = torch.arange(w, dtype=z.dtype, device=z.device).view(1, 1, w)
    v = torch.arange(h, dtype=z.dtype, device=z.device).view(1, h, 1)
    p = torch.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], 1)  # [B, 3, H, W]
    t_u = _central_difference(p, -1)
    t_v = _central_difference(p, -2)
    n = torch.cross(t_v, t_u, dim=1)
    n = n * -torch.sign((n * p).sum(1, keepdim=True)).detach()  # towards the camera
    return torch.nn.functional.normalize(n, dim=1), z, valid


def _central_difference(p: torch.Tensor, dim: int) -> torch.Tensor:
    """``p[i + 1] - p[i - 1]`` along ``dim`` (differentiable), zero on the two border lines and
    everywhere along an axis shorter than 3 pixels."""
    n = p.shape[dim]
    if n < 3:
        return torch.zeros_like(p)
    diff = p.narrow(dim, 2, n - 2) - p.narrow(dim, 0, n - 2)
    pad = [0, 0, 0, 0]
    pad[0 if dim == -1 else 2 : 2 if dim == -1 else 4] = [1, 1]
    return torch.nn.functional.pad(diff, pad)


def _smooth_mask(z: torch.Tensor, valid: torch.Tensor, smooth_tol: float) -> torch.Tensor:
    """bool ``[B, H, W]``: locally smooth pixels of depth ``z`` (module docstring)."""
    inv = torch.where(valid, 1.0 / z.clamp_min(1e-12), torch.zeros_like(z))
    ok = torch.zeros_like(valid)
    core = (slice(None), slice(1, -1), slice(1, -1))
    ok[core] = (
        valid[core]
        & valid[:, :-2, 1:-1]
        & valid[:, 2:, 1:-1]
        & valid[:, 1:-1, :-2]
        & valid[:, 1:-1, 2:]
    )
    bound = smooth_tol * inv[core]
    d2u = (inv[:, 1:-1, 2:] - 2 * inv[core] + inv[:, 1:-1, :-2]).abs()
    d2v = (inv[:, 2:, 1:-1] - 2 * inv[core] + inv[:, :-2, 1:-1]).abs()
    ok[core] &= (d2u <= bound) & (d2v <= bound)
    return ok


# Index pairs (first, second) of the 4-neighbour pairs of ``x [..., H, W]``: vertical, horizontal.
_PAIRS = (
    ((..., slice(None, -1), slice(None)), (..., slice(1, None), slice(None))),
    ((..., slice(None), slice(None, -1)), (..., slice(None), slice(1, None))),
)


def _mark_nearer(changes: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """Mark, for every pair flagged in ``changes`` (vertical, horizontal), its nearer pixel."""
    out = torch.zeros(z.shape, dtype=torch.bool, device=z.device)
    for (a, b), change in zip(_PAIRS, changes):
        first = z[a] <= z[b]
        out[a] |= change & first
        out[b] |= change & ~first
    return out


def semantic_boundaries(semseg, depth, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """bool ``[B, H, W]``: label changes between 4-neighbours (ignore excluded), nearer pixel."""
    s = torch.as_tensor(semseg).detach()
    s = s[None] if s.dim() == 2 else s
    z = as_depth4(depth)[0][:, 0]
    changes = [(s[a] != s[b]) & (s[a] != ignore_index) & (s[b] != ignore_index) for a, b in _PAIRS]
    return _mark_nearer(changes, z)


def geometric_discontinuities(
    depth, normals=None, depth_jump: float = 0.05, normal_jump_deg: float = 30.0
) -> torch.Tensor:
    """bool ``[B, H, W]``: depth and (if given) normal discontinuities, nearer pixel marked."""
    z = as_depth4(depth)[0][:, 0]
    valid = torch.isfinite(z) & (z > 0)
    inv = torch.where(valid, 1.0 / z.clamp_min(1e-12), torch.zeros_like(z))
    n = None if normals is None else as_normals4(normals).to(z.device)
    changes = []
    for axis, (a, b) in zip((1, 2), _PAIRS):
        step = inv[b] - inv[a]
        both = valid[a] & valid[b]
        bound = depth_jump * torch.minimum(inv[a], inv[b])
        jump = both & (step.abs() > bound)
        # A step that continues the step just before or just after it (a plane) is no jump.
        for shift in (-1, 1):
            side = torch.roll(step, shift, dims=axis)
            side_ok = torch.roll(both, shift, dims=axis)
            edge = [slice(None)] * 3
            edge[axis] = 0 if shift == 1 else -1
            if side_ok.shape[axis]:  # no pair at all along a 1-pixel axis
                side_ok[tuple(edge)] = False  # rolled in from the other end
            jump &= ~side_ok | ((step - side).abs() > bound)
        if n is not None:
            na, nb = n[a], n[b]
            has = (na.norm(dim=1) > 0) & (nb.norm(dim=1) > 0)
            jump |= has & (angle_deg(na, nb) > normal_jump_deg)
        changes.append(jump)
    return _mark_nearer(changes, z)
