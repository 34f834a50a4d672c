"""Per-image task errors (mtcp.metrics.per_image) against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from mtcp.metrics import build_metrics
from mtcp.metrics.per_image import per_image_errors, per_image_gm_error

H, W = 16, 20


def _targets(n: int = 2) -> dict:
    semseg = torch.zeros(n, H, W, dtype=torch.int64)
    semseg[:, :, W // 2 :] = 1
    depth = torch.full((n, 1, H, W), 2.0)
    normals = torch.zeros(n, 3, H, W)
    normals[:, 2] = -1.0
    edge = torch.zeros(n, 1, H, W)
    edge[:, :, :, W // 2] = 1.0
    sal = torch.zeros(n, 1, H, W)
    sal[:, :, 4:12, 4:12] = 1.0
    return {"semseg": semseg, "depth": depth, "normals": normals, "edge": edge, "sal": sal}


def _perfect(batch: dict, classes: int = 3) -> dict:
    logits = torch.nn.functional.one_hot(batch["semseg"], classes).permute(0, 3, 1, 2) * 10.0
    return {
        "semseg": logits.float(),
        "depth": batch["depth"].clone(),
        "normals": batch["normals"].clone(),
        "edge": (batch["edge"] * 20 - 10).clone(),
        "sal": (batch["sal"] * 20 - 10).clone(),
    }


TASKS = {"semseg": 3, "depth": 1, "normals": 3, "edge": 1, "sal": 1}


def test_perfect_predictions_have_zero_error() -> None:
    batch = _targets()
    errors = per_image_errors(_perfect(batch), batch, TASKS)
    for task, err in errors.items():
        assert err.shape == (2,), task
        assert torch.allclose(err, torch.zeros(2, dtype=torch.float64), atol=1e-4), (task, err)
    assert torch.allclose(per_image_gm_error(errors), torch.full((2,), 1e-6, dtype=torch.float64))


def test_hand_computed_errors_of_the_wrong_image_only() -> None:
    batch = _targets()
    out = _perfect(batch)
    # image 1: the right half predicted as class 2 (absent from the label): classes present
    # in label or prediction are 0 (IoU 1), 1 (IoU 0) and 2 (IoU 0) -> mIoU 1/3
    out["semseg"][1] = 0
    out["semseg"][1, 0, :, : W // 2] = 10.0
    out["semseg"][1, 2, :, W // 2 :] = 10.0
    out["depth"][1] += 0.5  # rmse 0.5 m
    out["normals"][1] = 0
    out["normals"][1, 0] = 1.0  # 90 degrees everywhere
    out["edge"][1] = -10.0  # nothing predicted: F = 0
    out["sal"][1] = 10.0  # everything salient: P = 64/320, R = 1
    errors = per_image_errors(out, batch, TASKS)
    assert errors["semseg"].tolist() == pytest.approx([0.0, 2 / 3], abs=1e-6)
    assert errors["depth"].tolist() == pytest.approx([0.0, 0.5], abs=1e-5)
    assert errors["normals"].tolist() == pytest.approx([0.0, 90.0], abs=1e-3)
    assert errors["edge"].tolist() == pytest.approx([0.0, 1.0], abs=1e-6)
    p = 64 / (H * W)
    assert errors["sal"].tolist() == pytest.approx([0.0, 1 - 2 * p / (p + 1)], abs=1e-6)
    gm = per_image_gm_error(errors)
    expected = math.exp(sum(math.log(e) for e in (2 / 3, 0.5, 90.0, 1.0, 1 - 2 * p / (p + 1))) / 5)
    assert float(gm[1]) == pytest.approx(expected, rel=1e-4)
    assert float(gm[1]) > float(gm[0])


def test_single_image_matches_the_pooled_metric() -> None:
    torch.manual_seed(0)
    batch = _targets(1)
    batch["depth"] = 1.0 + 3.0 * torch.rand(1, 1, H, W)
    out = {
        "depth": batch["depth"] + 0.3 * torch.randn(1, 1, H, W),
        "normals": torch.randn(1, 3, H, W),
    }
    errors = per_image_errors(out, batch, ["depth", "normals"])
    pooled = build_metrics(["depth", "normals"], coherence=False)
    pooled.update(out, batch)
    results = pooled.compute()
    assert float(errors["depth"][0]) == pytest.approx(results["depth"]["rmse"], rel=1e-9)
    assert float(errors["normals"][0]) == pytest.approx(results["normals"]["mean"], rel=1e-9)


def test_unlabelled_task_is_nan_and_left_out_of_the_geometric_mean() -> None:
    batch = _targets()
    batch["labelled"] = {"depth": torch.tensor([True, False]), "semseg": torch.tensor([True, True])}
    out = _perfect(batch)
    out["depth"] += 0.25
    out["semseg"] = out["semseg"].roll(1, dims=1)  # every pixel wrong
    errors = per_image_errors(out, batch, {"semseg": 3, "depth": 1})
    assert errors["depth"][0] == pytest.approx(0.25, abs=1e-5)
    assert math.isnan(float(errors["depth"][1]))
    gm = per_image_gm_error(errors)
    assert float(gm[0]) == pytest.approx(math.sqrt(float(errors["semseg"][0]) * 0.25), rel=1e-6)
    assert float(gm[1]) == pytest.approx(float(errors["semseg"][1]), rel=1e-6)
    all_nan = per_image_gm_error({"depth": torch.tensor([math.nan])})
    assert math.isnan(float(all_nan[0]))
