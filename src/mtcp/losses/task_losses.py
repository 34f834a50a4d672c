"""Per-task training losses and the deep-supervision fold (SPEC §1 and §4, first paragraph).

Every loss takes a prediction and a target in the tensor conventions of :mod:`mtcp.tasks`
(batched) and an optional per-sample mask ``labelled`` (bool ``[B]``, False = the sample has no
label for this task). It returns a scalar tensor.

Reduction: valid pixels are **pooled over the whole batch** — the loss is the mean over every
valid pixel of every labelled sample, so an image with more valid pixels weighs more than one
with few. When no pixel of the batch is valid the loss is exactly ``0.0`` and its gradient is
exactly zero (never NaN): per-pixel terms are zeroed with a mask and divided by
``max(count, 1)``. No function synchronises with the host.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtcp.errors import MtcpError
from mtcp.tasks import IGNORE_INDEX, get_task, resolve_tasks

NORMALS_LOSSES = ("l1", "mse")


def _sample_mask(labelled: Tensor | Sequence[bool] | bool | None, ref: Tensor) -> Tensor:
    """``labelled`` as bool ``[B, 1, 1]`` (broadcastable over ``[B, H, W]``) on ``ref``'s device."""
    batch = ref.shape[0]
    if labelled is None:
        return torch.ones(batch, 1, 1, dtype=torch.bool, device=ref.device)
    mask = torch.as_tensor(labelled, device=ref.device).to(torch.bool).reshape(-1)
    if mask.numel() == 1:
        mask = mask.expand(batch)
    if mask.numel() != batch:
        raise MtcpError(f"labelled mask has {mask.numel()} entries, expected batch size {batch}")
    return mask.view(batch, 1, 1)


def _masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``values`` over ``valid`` (same shape); exactly 0 with a zero gradient if none."""
    total = torch.where(valid, values, torch.zeros_like(values)).sum()
    return total / valid.sum().clamp(min=1).to(values.dtype)


def cross_entropy_loss(
    logits: Tensor, target: Tensor, labelled: Tensor | Sequence[bool] | None = None
) -> Tensor:
    """Cross-entropy over classes, ignoring ``target == 255``.

    Args:
        logits: float ``[B, C, H, W]`` class scores.
        target: int64 ``[B, H, W]`` class ids in ``[0, C)`` or 255 (ignore).
        labelled: optional bool ``[B]``; unlabelled samples are ignored entirely.

    Returns:
        Scalar: mean negative log-likelihood (nats) over valid pixels of the batch.
    """
    valid = (target != IGNORE_INDEX) & _sample_mask(labelled, target)
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    per_pixel = F.cross_entropy(logits, safe_target, reduction="none")
    return _masked_mean(per_pixel, valid)


def depth_l1_loss(
    pred: Tensor, target: Tensor, labelled: Tensor | Sequence[bool] | None = None
) -> Tensor:
    """L1 depth error on valid pixels (``target > 0`` and ``target != 255``).

    Args:
        pred: float ``[B, 1, H, W]`` depth in metres.
        target: float ``[B, 1, H, W]`` depth in metres, 0 (or 255) = invalid.
        labelled: optional bool ``[B]``.

    Returns:
        Scalar: mean absolute error in metres over valid pixels of the batch.
    """
    target = target[:, 0]
    valid = (target > 0) & (target != IGNORE_INDEX) & _sample_mask(labelled, target)
    return _masked_mean((pred[:, 0] - target).abs(), valid)


def normals_loss(
    pred: Tensor,
    target: Tensor,
    labelled: Tensor | Sequence[bool] | None = None,
    kind: str = "l1",
) -> Tensor:
    """Surface-normal loss on valid pixels (target vector norm > 0, no 255 component).

    ``kind="l1"`` (default): ``mean_c |n̂_c − t̂_c|`` with ``n̂``, ``t̂`` the L2-normalised
    prediction and target, averaged over the 3 components and the valid pixels.
    ``kind="mse"`` (the release): ``mean_c (n_c − t_c)²`` on the raw, unnormalised prediction.

    Args:
        pred: float ``[B, 3, H, W]`` unnormalised vectors.
        target: float ``[B, 3, H, W]`` unit vectors, all-zero = invalid.
        labelled: optional bool ``[B]``.
        kind: ``"l1"`` or ``"mse"``.

    Returns:
        Scalar (unitless, per component).
    """
    if kind not in NORMALS_LOSSES:
        raise MtcpError(f"normals loss must be one of {NORMALS_LOSSES}, got {kind!r}")
    norm = target.norm(dim=1)
    valid = (norm > 0) & (target != IGNORE_INDEX).all(dim=1) & _sample_mask(labelled, target)
    if kind == "l1":
        diff = (F.normalize(pred, dim=1, eps=1e-6) - F.normalize(target, dim=1, eps=1e-6)).abs()
    else:
        diff = (pred - target).square()
    return _masked_mean(diff.mean(dim=1), valid)


def balanced_bce_loss(
    logits: Tensor, target: Tensor, labelled: Tensor | Sequence[bool] | None = None
) -> Tensor:
    """Class-balanced binary cross-entropy (``edge``, ``sal``), ignoring ``target == 255``.

    Positives are ``target > 0.5``. Over the valid pixels of the whole batch (``N`` of them,
    ``N+`` positive, ``N−`` negative) positives weigh ``β = N−/N`` and negatives ``1 − β``:
    ``loss = (β Σ_pos bce + (1 − β) Σ_neg bce) / N``.

    Args:
        logits: float ``[B, 1, H, W]``.
        target: float ``[B, 1, H, W]`` in ``[0, 1]`` or 255 (ignore).
        labelled: optional bool ``[B]``.

    Returns:
        Scalar (nats per valid pixel).
    """
    target = target[:, 0]
    logits = logits[:, 0]
    valid = (target != IGNORE_INDEX) & _sample_mask(labelled, target)
    positive = (target > 0.5) & valid
    count = valid.sum().clamp(min=1).to(logits.dtype)
    beta = (valid & ~positive).sum().to(logits.dtype) / count
    weight = torch.where(positive, beta, 1 - beta)
    per_pixel = F.binary_cross_entropy_with_logits(
        logits, positive.to(logits.dtype), reduction="none"
    )
    return _masked_mean(weight * per_pixel, valid)


def task_loss(
    task: str,
    pred: Tensor,
    target: Tensor,
    labelled: Tensor | Sequence[bool] | None = None,
    normals_kind: str = "l1",
) -> Tensor:
    """Dispatch to the default loss of ``task`` (SPEC §1 table)."""
    kind = get_task(task).kind
    if kind == "classes":
        return cross_entropy_loss(pred, target, labelled)
    if kind == "depth":
        return depth_l1_loss(pred, target, labelled)
    if kind == "normals":
        return normals_loss(pred, target, labelled, normals_kind)
    return balanced_bce_loss(pred, target, labelled)


class MultiTaskLoss(nn.Module):
    """Per-task losses with deep supervision folded in.

    ``L_t = L_t(final) + λ · Σ_s L_t(intermediate s)`` where the final map is ``outputs[t]``
    and every other key starting with ``f"{t}_s"`` (``{t}_s16``, ``{t}_s8``) is an
    intermediate map of the same task, at input resolution, supervised with the task's own
    loss. Samples with ``batch["labelled"][t] == False`` contribute nothing to ``L_t``.

    Args:
        tasks: task names or ``{task: channels}``.
        aux_weight: λ, weight of each intermediate loss.
        normals_loss: ``"l1"`` (on normalised vectors) or ``"mse"`` (the release, raw output).

    Call: ``(outputs: dict[str, Tensor], batch: dict) -> dict[task, scalar Tensor]``.
    """

    def __init__(
        self,
        tasks: Iterable[str] | Mapping[str, int],
        aux_weight: float = 0.5,
        normals_loss: str = "l1",
    ) -> None:
        super().__init__()
        if normals_loss not in NORMALS_LOSSES:
            raise MtcpError(f"normals_loss must be one of {NORMALS_LOSSES}, got {normals_loss!r}")
        if aux_weight < 0:
            raise MtcpError(f"aux_weight must be >= 0, got {aux_weight}")
        self.tasks = tuple(resolve_tasks(tasks))
        self.aux_weight = float(aux_weight)
        self.normals_loss = normals_loss

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any]) -> dict[str, Tensor]:
        labelled = batch.get("labelled") or {}
        losses: dict[str, Tensor] = {}
        for task in self.tasks:
            if task not in outputs:
                raise MtcpError(f"model outputs lack task {task!r}; got keys {sorted(outputs)}")
            if task not in batch:
                raise MtcpError(f"batch lacks the target of task {task!r}")
            target, mask = batch[task], labelled.get(task)
            aux_keys = sorted(k for k in outputs if k.startswith(f"{task}_s"))
            loss = self._one(task, task, outputs[task], target, mask)
            for key in aux_keys:
                loss = loss + self.aux_weight * self._one(task, key, outputs[key], target, mask)
            losses[task] = loss
        return losses

    def _one(self, task: str, key: str, pred: Tensor, target: Tensor, mask: Any) -> Tensor:
        if pred.shape[-2:] != target.shape[-2:]:
            raise MtcpError(
                f"output {key!r} has size {tuple(pred.shape[-2:])} but the {task!r} target has "
                f"{tuple(target.shape[-2:])}; outputs must be at input resolution"
            )
        return task_loss(task, pred, target, mask, self.normals_loss)
