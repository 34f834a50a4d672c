"""Per-task losses: ignore values, partial labels, exact zeros and the deep-supervision fold."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mtcp.errors import MtcpError
from mtcp.losses import (
    MultiTaskLoss,
    balanced_bce_loss,
    cross_entropy_loss,
    depth_l1_loss,
    normals_loss,
)

B, C, H, W = 2, 5, 6, 8


def _finite_zero_grad(x: torch.Tensor) -> bool:
    return x.grad is not None and bool(torch.isfinite(x.grad).all()) and not x.grad.any()


def test_cross_entropy_all_ignored_is_exactly_zero_with_zero_gradient() -> None:
    logits = torch.randn(B, C, H, W, requires_grad=True)
    target = torch.full((B, H, W), 255, dtype=torch.int64)
    loss = cross_entropy_loss(logits, target)
    assert loss.item() == 0.0
    loss.backward()
    assert _finite_zero_grad(logits)


def test_cross_entropy_pools_valid_pixels_over_the_batch() -> None:
    logits = torch.randn(B, C, H, W)
    target = torch.randint(0, C, (B, H, W))
    target[0, :4] = 255  # sample 0 has fewer valid pixels than sample 1
    expected = F.cross_entropy(logits, target, ignore_index=255)  # mean over all valid pixels
    torch.testing.assert_close(cross_entropy_loss(logits, target), expected)


def test_partial_labels_contribute_nothing() -> None:
    logits = torch.randn(B, C, H, W, requires_grad=True)
    target = torch.randint(0, C, (B, H, W))
    labelled = torch.tensor([True, False])
    loss = cross_entropy_loss(logits, target, labelled)
    torch.testing.assert_close(loss, F.cross_entropy(logits[:1], target[:1]))
    loss.backward()
    assert not logits.grad[1].any() and logits.grad[0].abs().sum() > 0
    # no labelled sample at all: exactly 0, for every kind of task
    none = torch.tensor([False, False])
    assert cross_entropy_loss(logits, target, none).item() == 0.0
    assert depth_l1_loss(torch.rand(B, 1, H, W), torch.rand(B, 1, H, W) + 1, none).item() == 0.0
    assert normals_loss(torch.randn(B, 3, H, W), torch.randn(B, 3, H, W), none).item() == 0.0
    assert balanced_bce_loss(torch.randn(B, 1, H, W), torch.rand(B, 1, H, W), none).item() == 0.0


def test_depth_l1_uses_only_valid_pixels() -> None:
    pred = torch.rand(B, 1, H, W, requires_grad=True)
    target = torch.rand(B, 1, H, W) + 0.5
    target[0, 0, 0] = 0.0
    target[1, 0, 1] = 255.0
    valid = (target > 0) & (target != 255)
    loss = depth_l1_loss(pred, target)
    torch.testing.assert_close(loss, (pred - target).abs()[valid].mean())
    loss.backward()
    assert not pred.grad[~valid].any()
    all_invalid = depth_l1_loss(pred, torch.zeros(B, 1, H, W))
    assert all_invalid.item() == 0.0


def test_normals_l1_on_normalised_vectors_and_mse_option() -> None:
    target = F.normalize(torch.randn(B, 3, H, W), dim=1)
    target[0, :, 0] = 0.0  # an invalid row
    valid = target.norm(dim=1) > 0
    pred = torch.randn(B, 3, H, W)
    loss = normals_loss(pred, target)
    manual = (F.normalize(pred, dim=1) - target).abs().mean(dim=1)[valid].mean()
    torch.testing.assert_close(loss, manual)
    # scale-invariant in the prediction (it is normalised first) ...
    torch.testing.assert_close(normals_loss(3.0 * pred, target), loss)
    # ... the release's MSE on the raw output is not
    mse = normals_loss(pred, target, kind="mse")
    torch.testing.assert_close(mse, (pred - target).square().mean(dim=1)[valid].mean())
    assert not math.isclose(normals_loss(3.0 * pred, target, kind="mse").item(), mse.item())
    with pytest.raises(MtcpError, match="normals loss"):
        normals_loss(pred, target, kind="cosine")


def test_balanced_bce_weights_positives_by_negative_fraction() -> None:
    logits = torch.tensor([0.3, -1.2, 2.0, 0.1, -0.4, 5.0]).view(1, 1, 1, 6)
    target = torch.tensor([1.0, 0.0, 0.0, 0.8, 0.2, 255.0]).view(1, 1, 1, 6)  # sal-style
    # valid: 5 pixels; positives (> 0.5): pixels 0 and 3 → β = 3/5 on positives, 2/5 on negatives
    x = logits.flatten()[:5]
    pos = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    bce = F.binary_cross_entropy_with_logits(x, pos, reduction="none")
    expected = (0.6 * (bce * pos).sum() + 0.4 * (bce * (1 - pos)).sum()) / 5
    torch.testing.assert_close(balanced_bce_loss(logits, target), expected)
    all_ignored = balanced_bce_loss(logits.requires_grad_(), torch.full_like(target, 255.0))
    assert all_ignored.item() == 0.0
    all_ignored.backward()
    assert _finite_zero_grad(logits)


def _batch() -> dict:
    return {
        "semseg": torch.randint(0, C, (B, H, W)),
        "depth": torch.rand(B, 1, H, W) + 0.5,
        "normals": F.normalize(torch.randn(B, 3, H, W), dim=1),
        "edge": (torch.rand(B, 1, H, W) > 0.8).float(),
        "labelled": {
            "semseg": torch.tensor([True, True]),
            "depth": torch.tensor([True, False]),
            "normals": torch.tensor([True, True]),
            "edge": torch.tensor([False, False]),
        },
    }


def test_multitask_loss_folds_deep_supervision_with_each_tasks_own_loss() -> None:
    tasks = {"semseg": C, "depth": 1, "normals": 3, "edge": 1}
    batch = _batch()
    outputs = {}
    for task, ch in tasks.items():
        for key in (task, f"{task}_s16", f"{task}_s8"):
            outputs[key] = torch.randn(B, ch, H, W)
    losses = MultiTaskLoss(tasks, aux_weight=0.5)(outputs, batch)
    assert set(losses) == set(tasks)
    mask = batch["labelled"]

    def fold(fn, task, **kw):
        return sum(
            f * fn(outputs[k], batch[task], mask[task], **kw)
            for k, f in ((task, 1.0), (f"{task}_s16", 0.5), (f"{task}_s8", 0.5))
        )

    torch.testing.assert_close(losses["semseg"], fold(cross_entropy_loss, "semseg"))
    torch.testing.assert_close(losses["depth"], fold(depth_l1_loss, "depth"))
    # intermediate normals are supervised with the normals loss (the release used depth's)
    torch.testing.assert_close(losses["normals"], fold(normals_loss, "normals"))
    assert losses["edge"].item() == 0.0  # no labelled sample
    # the MSE option reaches every normals head; final-only outputs (eval mode) work too
    mse = MultiTaskLoss(tasks, normals_loss="mse")(outputs, batch)["normals"]
    torch.testing.assert_close(mse, fold(normals_loss, "normals", kind="mse"))
    final_only = {t: outputs[t] for t in tasks}
    plain = MultiTaskLoss(tasks)(final_only, batch)["depth"]
    torch.testing.assert_close(
        plain, depth_l1_loss(outputs["depth"], batch["depth"], mask["depth"])
    )


def test_multitask_loss_reports_missing_and_misshaped_outputs() -> None:
    batch = _batch()
    loss_fn = MultiTaskLoss(["semseg", "depth"])
    with pytest.raises(MtcpError, match="'depth'"):
        loss_fn({"semseg": torch.randn(B, C, H, W)}, batch)
    with pytest.raises(MtcpError, match="depth_s8"):
        loss_fn(
            {
                "semseg": torch.randn(B, C, H, W),
                "depth": torch.randn(B, 1, H, W),
                "depth_s8": torch.randn(B, 1, H // 2, W // 2),
            },
            batch,
        )
    # without a "labelled" entry every sample counts
    del batch["labelled"]
    out = {"semseg": torch.randn(B, C, H, W), "depth": torch.randn(B, 1, H, W)}
    torch.testing.assert_close(
        loss_fn(out, batch)["depth"], depth_l1_loss(out["depth"], batch["depth"])
    )
