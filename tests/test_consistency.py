"""Cross-task consistency losses: zero on coherent label maps, positive on perturbed ones,
weighted like tasks in training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mtcp.data.synthetic import SYNTHETIC_CLASSES, render_scene
from mtcp.errors import MtcpError
from mtcp.geometry import nyud_intrinsics
from mtcp.losses import create_weighting
from mtcp.losses.consistency import (
    ConsistencyLoss,
    depth_normal_consistency,
    semantic_edge_consistency,
)

SIZE = (48, 64)


@pytest.fixture(scope="module")
def labels() -> dict[str, torch.Tensor]:
    """Label maps of two synthetic scenes as a batch (exactly coherent by construction)."""
    scenes = [render_scene(0, i, SIZE) for i in range(2)]
    return {
        "depth": torch.stack([torch.from_numpy(s["depth"])[None] for s in scenes]),
        "normals": torch.stack([torch.from_numpy(s["normals"]).permute(2, 0, 1) for s in scenes]),
        "semseg": torch.stack([torch.from_numpy(s["semseg"]).long() for s in scenes]),
        "edge": torch.stack([torch.from_numpy(s["edge"]).float()[None] for s in scenes]),
        "intrinsics": torch.stack([torch.from_numpy(s["intrinsics"]) for s in scenes]),
    }


def _plane(n_true: torch.Tensor) -> torch.Tensor:
    """Depth ``[1, 1, H, W]`` (float64) of the plane ``n · P = -2`` seen by the NYUD camera."""
    h, w = SIZE
    fx, fy, cx, cy = nyud_intrinsics(SIZE).tolist()
    v, u = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ray = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones(h, w)], 0).double()
    return (-2.0 / (n_true.view(3, 1, 1) * ray).sum(0))[None, None]


def test_depth_normal_term_is_zero_on_a_plane_and_grows_with_the_tilt() -> None:
    n_true = F.normalize(torch.tensor([0.3, -0.5, -0.8], dtype=torch.float64), dim=0)
    depth = _plane(n_true)
    k = torch.tensor(nyud_intrinsics(SIZE), dtype=torch.float64)[None]
    normals = n_true.view(1, 3, 1, 1).expand(1, 3, *SIZE)
    assert depth_normal_consistency(depth, 2.5 * normals, k).item() < 1e-12  # length ignored
    tilted = F.normalize(normals + torch.tensor([0.2, 0.0, 0.0]).view(1, 3, 1, 1), dim=1)
    angle = math.acos(float((tilted[0, :, 0, 0] * n_true).sum()))
    assert depth_normal_consistency(depth, tilted, k).item() == pytest.approx(
        1 - math.cos(angle), rel=1e-6
    )


def test_depth_normal_term_on_labels_and_its_gradient(labels) -> None:
    k = labels["intrinsics"]
    exact = depth_normal_consistency(labels["depth"], labels["normals"], k)
    assert exact.item() < 1e-4  # labels: 0.14° on average, 1 - cos ≈ 3e-6
    noise = torch.randn(labels["normals"].shape, generator=torch.Generator().manual_seed(0))
    perturbed = labels["normals"] + 0.3 * noise
    assert depth_normal_consistency(labels["depth"], perturbed, k).item() > 0.02
    # both maps receive gradients; the discontinuity mask comes from the predicted depth
    depth = labels["depth"].clone().requires_grad_(True)
    normals = perturbed.clone().requires_grad_(True)
    depth_normal_consistency(depth, normals, k).backward()
    assert depth.grad.abs().sum() > 0 and normals.grad.abs().sum() > 0
    assert torch.isfinite(depth.grad).all() and torch.isfinite(normals.grad).all()
    # no smooth pixel (constant zero depth: invalid): exactly 0, zero gradient, no NaN
    flat = torch.zeros_like(labels["depth"], requires_grad=True)
    loss = depth_normal_consistency(flat, normals, k)
    loss.backward()
    assert loss.item() == 0.0 and flat.grad.abs().sum() == 0


def test_semantic_edge_term_is_zero_on_labels_and_positive_without_edges(labels) -> None:
    n_classes = len(SYNTHETIC_CLASSES)
    seg = labels["semseg"].clamp(max=n_classes - 1)
    seg_logits = 40.0 * F.one_hot(seg, n_classes).permute(0, 3, 1, 2).float()
    edge_logits = 40.0 * (2 * labels["edge"] - 1)
    assert semantic_edge_consistency(seg_logits, edge_logits).item() < 1e-6
    # edges removed from the left half: the boundaries there are no longer covered
    cut = labels["edge"].clone()
    cut[..., : SIZE[1] // 2] = 0
    missed = semantic_edge_consistency(seg_logits, 40.0 * (2 * cut - 1)).item()
    assert 0.2 < missed < 0.9
    none = semantic_edge_consistency(seg_logits, torch.full_like(edge_logits, -40.0))
    assert none.item() == pytest.approx(1.0, abs=1e-6)
    # extra edges without a class change (occlusions within a class) cost nothing
    everywhere = semantic_edge_consistency(seg_logits, torch.full_like(edge_logits, 40.0))
    assert everywhere.item() < 1e-6


def test_consistency_terms_are_weighted_like_tasks(labels) -> None:
    tasks = ["semseg", "depth", "normals", "edge"]
    loss = ConsistencyLoss(["depth_normal", "semantic_edge"], tasks)
    outputs = {
        "semseg": torch.randn(2, len(SYNTHETIC_CLASSES), *SIZE),
        "depth": labels["depth"],
        "normals": labels["normals"] + 0.3,
        "edge": torch.zeros(2, 1, *SIZE),
    }
    terms = loss(outputs, labels)
    assert set(terms) == {"depth_normal", "semantic_edge"} and all(v > 0 for v in terms.values())
    scheme = create_weighting("lps", [*tasks, *loss.terms], window=1)
    task_losses = {t: torch.tensor(1.0 + i) for i, t in enumerate(tasks)}
    for _ in range(3):
        scheme({**task_losses, **terms})
        scheme.step_end()
    assert set(scheme.weights) == set(tasks) | set(terms)
    assert (
        create_weighting("uncertainty", [*tasks, *loss.terms]).weights.keys()
        == scheme.weights.keys()
    )
    with pytest.raises(MtcpError, match="needs the tasks"):
        ConsistencyLoss(["depth_normal"], ["semseg", "depth"])
    with pytest.raises(MtcpError, match="unknown term 'normal_depth'"):
        ConsistencyLoss(["normal_depth"], tasks)
    with pytest.raises(MtcpError, match="intrinsics"):
        loss(outputs, {k: v for k, v in labels.items() if k != "intrinsics"})


def test_config_checks_the_consistency_terms_when_loaded() -> None:
    from mtcp.engine.config import load_config

    cfg = load_config(None, ["loss.consistency=[depth_normal, semantic_edge]"])
    assert list(cfg.loss.consistency) == ["depth_normal", "semantic_edge"]
    with pytest.raises(MtcpError, match="unknown term 'normal_depth'"):
        load_config(None, ["loss.consistency=[normal_depth]"])
    with pytest.raises(MtcpError, match="needs the tasks"):
        load_config(None, ["loss.consistency=[depth_normal]", "data.tasks=[semseg, depth]"])
    with pytest.raises(MtcpError, match="listed twice"):
        load_config(None, ["loss.consistency=[depth_normal, depth_normal]"])
