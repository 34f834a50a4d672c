"""Coherence metrics: exact targets score near the ideal, broken geometry scores worse."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from mtcp.data.sample import to_tensor
from mtcp.data.synthetic import SYNTHETIC_CLASSES, render_scene
from mtcp.geometry import normals_from_depth, nyud_intrinsics
from mtcp.metrics.coherence import BoundaryCoherence, DepthNormalCoherence
from mtcp.metrics.functional.coherence import boundary_coherence, depth_normal_coherence

SIZE = (64, 96)


@pytest.fixture(scope="module")
def scenes() -> list[dict]:
    return [render_scene(0, i, SIZE) for i in range(3)]


def _rotate(normals: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate ``[H, W, 3]`` vectors about the camera x axis (moves every normal by ``degrees``
    unless it is parallel to x)."""
    a = math.radians(degrees)
    rot = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    return (normals @ rot.T).astype(np.float32)


def test_plane_normals_are_exact_and_face_the_camera() -> None:
    h, w = SIZE
    k = torch.tensor(nyud_intrinsics(SIZE), dtype=torch.float64)
    fx, fy, cx, cy = k.tolist()
    n_true = torch.tensor([0.3, -0.5, -0.8], dtype=torch.float64)
    n_true /= n_true.norm()
    # Plane n·P = -2: depth along each pixel ray r = ((u-cx)/fx, (v-cy)/fy, 1) is -2 / (n·r).
    v, u = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ray = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones(h, w)], 0).double()
    depth = (-2.0 / (n_true.view(3, 1, 1) * ray).sum(0))[None, None]
    assert (depth > 0).all()
    normals, smooth = normals_from_depth(depth, k[None])
    assert smooth[0, 0, 1:-1, 1:-1].all() and not smooth[0, 0, 0].any()
    inner = normals[0, :, 1:-1, 1:-1]
    assert torch.allclose(inner, n_true.view(3, 1, 1).expand_as(inner), atol=1e-9)
    normals_map = n_true.view(1, 3, 1, 1).expand(1, 3, h, w)
    assert depth_normal_coherence(depth, normals_map, k[None])[0] < 1e-4


def test_exact_targets_score_near_ideal_and_rotated_normals_worse(scenes) -> None:
    for s in scenes:
        exact = depth_normal_coherence(s["depth"], s["normals"], s["intrinsics"])
        rotated = depth_normal_coherence(s["depth"], _rotate(s["normals"], 30), s["intrinsics"])
        assert exact < 0.5  # degrees; float32 depth and curved objects keep it above 0
        assert rotated > 15 and rotated > 30 * exact


def test_depth_smoothed_across_edges_breaks_boundary_coherence(scenes) -> None:
    for s in scenes:
        exact = boundary_coherence(s["semseg"], s["depth"])
        smoothed = boundary_coherence(s["semseg"], ndimage.gaussian_filter(s["depth"], 2))
        assert exact > 0.5 and smoothed < 0.5 * exact
        # With the normals, creases count too: targets stay at least as coherent.
        with_normals = boundary_coherence(s["semseg"], s["depth"], s["normals"])
        assert with_normals >= exact - 0.05
        # Smoothing also makes the implied normals disagree with the true ones.
        blurred = depth_normal_coherence(
            ndimage.gaussian_filter(s["depth"], 2), s["normals"], s["intrinsics"]
        )
        assert blurred > 3 * depth_normal_coherence(s["depth"], s["normals"], s["intrinsics"])


def test_boundary_coherence_hand_case() -> None:
    semseg = np.zeros((20, 30), dtype=np.int64)
    semseg[:, 15:] = 1
    depth = np.full((20, 30), 2.0)
    depth[:, 15:] = 3.0
    assert boundary_coherence(semseg, depth) == 1.0  # same 20 pixels (the nearer, column 14)
    moved = np.full((20, 30), 2.0)
    moved[:, 20:] = 3.0  # step 5 px away from the label change
    assert boundary_coherence(semseg, moved, tolerance_px=2) == 0.0
    assert boundary_coherence(semseg, moved, tolerance_px=6) == 1.0
    # An oblique plane (linear inverse depth) has no discontinuity at all.
    ramp = 1.0 / np.linspace(0.2, 0.9, 30)[None].repeat(20, 0)
    # no boundary on either side: undefined, not a perfect score
    assert math.isnan(boundary_coherence(np.zeros((20, 30), dtype=np.int64), ramp))
    assert boundary_coherence(semseg, ramp) == 0.0


def _batch(scenes) -> dict:
    samples = [to_tensor(s, ["semseg", "depth", "normals"]) for s in scenes]
    keys = ("semseg", "depth", "normals", "intrinsics")
    return {k: torch.stack([x[k] for x in samples]) for k in keys}


def test_metric_objects_pool_skip_nan_intrinsics_and_read_logits(scenes) -> None:
    batch = _batch(scenes)
    batch["intrinsics"][1] = float("nan")
    one_hot = torch.nn.functional.one_hot(batch["semseg"], len(SYNTHETIC_CLASSES))
    outputs = {
        "semseg": one_hot.permute(0, 3, 1, 2).float(),
        "depth": batch["depth"],
        "normals": torch.stack(
            [torch.as_tensor(_rotate(s["normals"], 30)).permute(2, 0, 1) for s in scenes]
        ),
    }
    dn_pred, dn_tgt = DepthNormalCoherence(), DepthNormalCoherence(from_targets=True)
    dn_pred.update(outputs, batch)
    dn_tgt.update(outputs, batch)
    res = dn_tgt.compute()
    assert res["n_images"] == 2 and res["n_skipped"] == 1
    assert res["mean"] < 0.5 and dn_pred.compute()["mean"] > 15
    per = dn_tgt.per_image()
    expected = [
        depth_normal_coherence(scenes[i]["depth"], scenes[i]["normals"], scenes[i]["intrinsics"])
        for i in (0, 2)
    ]
    assert per.tolist() == pytest.approx(expected)
    assert res["image_mean"] == pytest.approx(sum(expected) / 2)
    assert res["mean"] != pytest.approx(float(res["image_mean"]), rel=1e-6)  # pixel-pooled

    bc_pred = BoundaryCoherence(use_normals=False)
    bc_tgt = BoundaryCoherence(from_targets=True, use_normals=False)
    bc_pred.update(outputs, batch)  # argmax of one-hot logits = the targets
    bc_tgt.update(outputs, batch)
    assert bc_pred.compute() == bc_tgt.compute()
    assert bc_tgt.per_image().tolist() == pytest.approx(
        [boundary_coherence(s["semseg"], s["depth"]) for s in scenes]
    )
    assert 0.5 < bc_tgt.compute()["F"] <= 1.0


def test_images_without_any_boundary_are_undefined_and_not_pooled() -> None:
    semseg = torch.zeros(2, 3, 20, 30)
    semseg[:, 1] = 1.0  # constant logits: one class everywhere, no semantic boundary
    depth = torch.full((2, 1, 20, 30), 2.5)
    depth[1, :, :, 15:] = 3.0  # image 1 has a depth step (and still no label change)
    metric = BoundaryCoherence()
    metric.update({"semseg": semseg, "depth": depth}, {})
    per = metric.per_image()
    assert math.isnan(per[0]) and per[1] == 0.0
    assert metric.compute() == {"F": 0.0, "image_mean": 0.0, "n_images": 2, "n_undefined": 1}
    constant = BoundaryCoherence()
    constant.update({"semseg": semseg[:1], "depth": depth[:1]}, {})
    res = constant.compute()
    assert math.isnan(res["F"]) and math.isnan(res["image_mean"])
    assert res["n_images"] == res["n_undefined"] == 1


@pytest.mark.parametrize("size", [(1, 1), (1, 500), (500, 1), (2, 2)])
def test_tiny_images_are_undefined_not_a_crash(size) -> None:
    h, w = size
    depth = torch.full((2, 1, h, w), 2.0)
    depth[1, :, h // 2 :, w // 2 :] = 3.0
    normals = torch.zeros(2, 3, h, w)
    normals[:, 2] = -1.0
    semseg = torch.zeros(2, h, w, dtype=torch.long)
    k = torch.tensor([[50.0, 50.0, w / 2, h / 2]] * 2)
    # No pixel of an image under 3x3 is interior: depth-normal coherence is undefined.
    assert torch.isnan(depth_normal_coherence(depth, normals, k)).all()
    assert math.isnan(depth_normal_coherence(depth[0, 0].numpy(), normals[0], k[0]))
    # A constant image has no boundary at all: undefined; a line with a step disagrees (F 0).
    f = boundary_coherence(semseg, depth, normals, k)
    assert math.isnan(f[0])
    assert math.isnan(f[1]) if (h, w) == (1, 1) else f[1] == 0.0
    assert math.isnan(boundary_coherence(semseg[0].numpy(), depth[0, 0].numpy()))

    batch = {"intrinsics": k}
    outputs = {"depth": depth, "normals": normals, "semseg": semseg}
    dn = DepthNormalCoherence()
    dn.update(outputs, batch)
    res = dn.compute()
    assert math.isnan(res["mean"]) and math.isnan(res["image_mean"])
    assert res["n_images"] == 2 and res["n_undefined"] == 2 and res["n_skipped"] == 0
    bc = BoundaryCoherence()
    bc.update(outputs, batch)
    res = bc.compute()
    assert res["n_images"] == 2 and res["n_undefined"] == (2 if (h, w) == (1, 1) else 1)
