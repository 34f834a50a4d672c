"""Pinhole camera intrinsics and how they change with resizing and cropping."""

from __future__ import annotations

import numpy as np

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
