"""Camera geometry on degenerate image sizes: tiny images give defined results, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtcp.geometry import (
    angle_deg,
    as_depth4,
    as_intrinsics2,
    as_normals4,
    crop_intrinsics,
    geometric_discontinuities,
    normals_from_depth,
    nyud_intrinsics,
    scale_intrinsics,
    semantic_boundaries,
)

TINY = [(1, 1), (1, 7), (1, 500), (7, 1), (500, 1), (2, 2)]
K = torch.tensor([[50.0, 50.0, 0.0, 0.0]], dtype=torch.float64)


def _maps(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Depth ``[1, 1, H, W]`` with an occlusion halfway, normals facing the camera, labels."""
    depth = torch.full((1, 1, h, w), 2.0, dtype=torch.float64)
    depth[..., h // 2 :, w // 2 :] = 4.0
    normals = torch.zeros(1, 3, h, w, dtype=torch.float64)
    normals[:, 2] = -1.0
    semseg = (depth[:, 0] > 3).long()
    return depth, normals, semseg


@pytest.mark.parametrize("size", TINY)
def test_every_geometry_function_accepts_tiny_images(size) -> None:
    h, w = size
    depth, normals, semseg = _maps(h, w)
    assert as_depth4(depth[0, 0])[0].shape == (1, 1, h, w)
    assert as_normals4(normals[0].permute(1, 2, 0).numpy()).shape == (1, 3, h, w)
    assert as_intrinsics2(K, 1).shape == (1, 4)
    assert np.isfinite(scale_intrinsics(K[0].numpy(), (h, w), (2 * h, 2 * w))).all()
    assert np.isfinite(crop_intrinsics(K[0].numpy(), 0, 0)).all()
    assert np.isfinite(nyud_intrinsics((h, w))).all()
    assert angle_deg(normals, normals).shape == (1, h, w)

    n_d, smooth = normals_from_depth(depth, K)
    assert n_d.shape == (1, 3, h, w) and smooth.shape == (1, 1, h, w)
    # Every pixel of an image under 3x3 is on the border: nothing smooth, no implied normal.
    assert not smooth.any() and (n_d == 0).all()

    for geo in (geometric_discontinuities(depth), geometric_discontinuities(depth, normals)):
        assert geo.shape == (1, h, w) and geo.dtype == torch.bool
    sem = semantic_boundaries(semseg, depth)
    assert sem.shape == (1, h, w)
    if h == 1 or w == 1:  # a line still has neighbours along it
        changes = int((semseg.flatten()[1:] != semseg.flatten()[:-1]).sum())
        assert int(sem.sum()) == changes
        assert int(geometric_discontinuities(depth).sum()) == changes
    if (h, w) == (1, 1):
        assert not sem.any() and not geometric_discontinuities(depth, normals).any()


def test_one_pixel_wide_line_marks_the_nearer_pixel_of_a_jump() -> None:
    depth = torch.tensor([[1.0, 1.0, 1.0, 3.0, 3.0]], dtype=torch.float64)  # [1, W] image
    assert geometric_discontinuities(depth)[0, 0].tolist() == [False, False, True, False, False]
    column = geometric_discontinuities(depth.T.contiguous())[0, :, 0]
    assert column.tolist() == [False, False, True, False, False]
    # A plane seen along a line (inverse depth affine in the pixel) is no jump.
    plane = 1.0 / torch.linspace(0.2, 1.0, 9, dtype=torch.float64)[None]
    assert not geometric_discontinuities(plane).any()
