"""Joint depth-normal refinement: lowers the disagreement, moves the maps within its bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mtcp
from checkpoint_fixtures import write_train_checkpoint
from mtcp.data.synthetic import render_scene
from mtcp.errors import MtcpError
from mtcp.geometry import angle_deg
from mtcp.inference.refine import MAX_DEPTH_CHANGE, refine_depth_normals
from mtcp.metrics.coherence import depth_normal_coherence

SIZE = (48, 64)
TILT_DEG = 10.0


def _tilted(normals: torch.Tensor, degrees: float) -> torch.Tensor:
    """``[3, H, W]`` vectors rotated by ``degrees`` about the camera x axis."""
    a = math.radians(degrees)
    rot = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    return torch.einsum("ij,jhw->ihw", rot.float(), normals)


@pytest.mark.parametrize("index", [0, 1])
def test_refinement_makes_a_perturbed_coherent_scene_agree_within_bounds(index) -> None:
    scene = render_scene(0, index, SIZE)
    depth = torch.from_numpy(scene["depth"])[None]
    normals = torch.from_numpy(scene["normals"]).permute(2, 0, 1)
    k = torch.from_numpy(scene["intrinsics"])
    noise = torch.randn(depth.shape, generator=torch.Generator().manual_seed(index))
    depth_p = depth * (1 + 0.002 * noise)
    normals_p = _tilted(normals, TILT_DEG)
    before = depth_normal_coherence(depth_p, normals_p, k)
    assert before > 0.6 * TILT_DEG  # the perturbation is what the score sees
    refined_d, refined_n = refine_depth_normals(depth_p, normals_p, k)
    after = depth_normal_coherence(refined_d, refined_n, k)
    assert after < 0.6 * before
    # bounds: no depth moves by more than the factor e^(±r); normals move on average by less
    # than half the disagreement they started with (the agreement term and the closeness term
    # balance around the middle), and stay unit vectors
    ratio = (refined_d / depth_p).log().abs()
    assert ratio.max() <= MAX_DEPTH_CHANGE + 1e-5
    moved = angle_deg(refined_n[None], normals_p[None])
    assert moved.mean() < 0.5 * before and moved.max() < 2 * TILT_DEG
    np.testing.assert_allclose(refined_n.norm(dim=0).numpy(), 1.0, atol=1e-5)
    # the inputs are untouched
    assert torch.equal(normals_p, _tilted(normals, TILT_DEG))


def test_refinement_checks_its_inputs() -> None:
    depth, normals = torch.ones(1, 8, 8), torch.ones(3, 8, 8)
    with pytest.raises(MtcpError, match="intrinsics"):
        refine_depth_normals(depth, normals, torch.tensor([float("nan"), 1.0, 4.0, 4.0]))
    with pytest.raises(MtcpError, match=r"normals \[B, 3, H, W\]"):
        refine_depth_normals(depth, torch.ones(2, 8, 8), torch.tensor([8.0, 8.0, 4.0, 4.0]))
    same_d, same_n = refine_depth_normals(depth, normals, torch.tensor([8.0, 8.0, 4, 4]), 0)
    assert torch.equal(same_d, depth) and torch.allclose(same_n.norm(dim=0), torch.ones(8, 8))


def _checkpoint(path, tasks, intrinsics):
    model = mtcp.create_model("mtcp_tiny", tasks, channels=32, decoder_dims=[32, 64, 128])
    return write_train_checkpoint(path, model, {"size": [64, 64]}, intrinsics)


def test_predict_refine_option(tmp_path) -> None:
    tasks = {"semseg": 12, "depth": 1, "normals": 3}
    predictor = mtcp.load(_checkpoint(tmp_path / "m.ckpt", tasks, [60.0, 60.0, 31.5, 31.5]))
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    plain = predictor.predict(image)
    refined = predictor.predict(image, refine=True)
    assert np.array_equal(refined["semseg"], plain["semseg"])
    assert refined["depth"].shape == (40, 56) and refined["normals"].shape == (40, 56, 3)
    ratio = np.abs(np.log(refined["depth"] / plain["depth"]))
    assert ratio.max() <= MAX_DEPTH_CHANGE + 1e-5
    camera = predictor.camera((40, 56))
    score = {
        name: depth_normal_coherence(maps["depth"], maps["normals"], camera)
        for name, maps in (("plain", plain), ("refined", refined))
    }
    assert score["refined"] < score["plain"]
    no_camera = mtcp.load(_checkpoint(tmp_path / "n.ckpt", tasks, None))
    with pytest.raises(MtcpError, match="no camera"):
        no_camera.predict(image, refine=True)
    depth_only = mtcp.load(_checkpoint(tmp_path / "d.ckpt", {"depth": 1}, [60.0, 60, 31.5, 31.5]))
    with pytest.raises(MtcpError, match="missing normals"):
        depth_only.predict(image, refine=True)
