"""Prediction heads (SPEC §3.5). Outputs are in the task's units (see :mod:`mtcp.tasks`).

Two families of final heads (the model option ``release_heads``):

- mtcp's (``release_heads=None``): :class:`FinalHead` at the feature's stride for every task;
  the model resizes its output once, bilinearly, to the input size. Smaller and cheaper, one
  interpolation instead of two, and the same head for every task.
- the released network's (``"nyud"`` / ``"pascal"``, :data:`RELEASE_HEADS`): semseg (and
  PASCAL's human parts) end with a bilinear x2 (NYUD) or x4 (PASCAL) upsample with
  ``align_corners=True`` after the last conv, resized to the image afterwards with
  ``align_corners=False`` (two interpolations differ from one: issue 16 measured 1.9e-2 in the
  logits with the same weights); NYUD depth is :class:`ReleaseDepthHead`, without BatchNorm;
  normals and saliency are :class:`FinalHead`. Needed to reproduce the release's outputs and
  to load its weights.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from mtcp.errors import MtcpError
from mtcp.models.ops import conv_bn_relu
from mtcp.tasks import get_task

#: Default of the model option ``depth_init``, the initial bias (metres) of every depth output
#: layer. None keeps PyTorch's default initialisation (outputs near 0 m), which published
#: results and EXPERIMENTS.md use; a typical depth of the data (NYUD-v2 averages roughly
#: 2.5-3 m) lets an untrained model predict plausible depths at once, so the depth loss does not
#: spend its first hundreds of steps shifting the output.
DEPTH_INIT: float | None = None


def output_bias(task: str, depth_init: float | None = DEPTH_INIT) -> float | None:
    """Initial bias of ``task``'s output layer: ``depth_init`` for depth, None (PyTorch's
    default initialisation) for the other tasks and when ``depth_init`` is None."""
    if depth_init is None or get_task(task).kind != "depth":
        return None
    return float(depth_init)


def _init_bias(conv: nn.Conv2d, bias: float | None) -> None:
    if bias is not None:
        nn.init.constant_(conv.bias, bias)


#: The released network's final heads: ``{dataset: {task: (kind, upsample factor)}}``; kind
#: ``"final"`` is :class:`FinalHead` (followed by an ``align_corners=True`` upsample when the
#: factor is > 1), ``"depth"`` is :class:`ReleaseDepthHead`. Tasks not listed get mtcp's head.
RELEASE_HEADS: dict[str, dict[str, tuple[str, int]]] = {
    "nyud": {"semseg": ("final", 2), "depth": ("depth", 2), "normals": ("final", 1)},
    "pascal": {"semseg": ("final", 4), "human_parts": ("final", 4), "sal": ("final", 1)},
}
#: tasks that only the PASCAL release has: ``release_heads="auto"`` picks "pascal" with them
PASCAL_ONLY_TASKS = ("human_parts", "sal")


def release_head_set(release_heads: str | None, tasks: Mapping[str, int]) -> str | None:
    """Resolve the model option ``release_heads`` (None, ``"auto"``, ``"nyud"``, ``"pascal"``)
    to a key of :data:`RELEASE_HEADS` or None; ``"auto"`` is ``"pascal"`` when a task only the
    PASCAL release has is present, else ``"nyud"``."""
    if release_heads is None:
        return None
    if release_heads == "auto":
        return "pascal" if any(t in PASCAL_ONLY_TASKS for t in tasks) else "nyud"
    if release_heads not in RELEASE_HEADS:
        raise MtcpError(
            f"unknown release_heads {release_heads!r}; accepted: None, 'auto', "
            + ", ".join(repr(k) for k in RELEASE_HEADS)
        )
    return release_heads


def _upsample(factor: int) -> nn.Upsample:
    return nn.Upsample(scale_factor=factor, mode="bilinear", align_corners=True)


class FinalHead(nn.Sequential):
    """``Conv1x1 -> BN -> ReLU -> Conv1x1`` to the task's channels, then, when ``upsample``
    > 1, a bilinear ``align_corners=True`` upsample by that factor (the release's semseg head).

    Shapes: ``[B, in_channels, h, w] -> [B, out_channels, h * u, w * u]``, ``u = upsample``.
    ``bias``: initial bias of the last conv (see :func:`output_bias`); None keeps PyTorch's
    default.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int | None = None,
        bias: float | None = None,
        upsample: int = 1,
    ):
        mid = mid_channels or in_channels
        layers = [conv_bn_relu(in_channels, mid), nn.Conv2d(mid, out_channels, 1)]
        super().__init__(*layers, *([_upsample(upsample)] if upsample > 1 else []))
        _init_bias(self[1], bias)


class ReleaseDepthHead(nn.Sequential):
    """The released NYUD depth head: ``Conv1x1(C -> C/2) -> x2 bilinear (align_corners=True)
    -> Conv1x1(C/2 -> 32) -> ReLU -> Conv1x1(32 -> out)``, no BatchNorm (37.1 k parameters at
    C = 256, against 66.3 k for :class:`FinalHead`).

    Shapes: ``[B, in_channels, h, w] -> [B, out_channels, 2 h, 2 w]``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, bias: float | None = None, upsample: int = 2
    ):
        half = in_channels // 2
        super().__init__(
            nn.Conv2d(in_channels, half, 1),
            _upsample(upsample),
            nn.Conv2d(half, 32, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, out_channels, 1),
        )
        _init_bias(self[-1], bias)


def final_head(
    task: str,
    in_channels: int,
    out_channels: int,
    head_set: str | None = None,
    bias: float | None = None,
) -> nn.Module:
    """The final head of ``task``: mtcp's :class:`FinalHead`, or the release's for ``head_set``
    (a key of :data:`RELEASE_HEADS`, see :func:`release_head_set`)."""
    kind, factor = RELEASE_HEADS.get(head_set or "", {}).get(task, ("final", 1))
    if kind == "depth":
        return ReleaseDepthHead(in_channels, out_channels, bias, factor)
    return FinalHead(in_channels, out_channels, bias=bias, upsample=factor)


class AuxHead(nn.Sequential):
    """Deep-supervision head: ``Conv1x1 -> Conv1x1 -> BN -> ReLU -> Conv1x1`` (as released).

    ``first_bias=False`` drops the first conv's bias, as the release does: followed by a linear
    conv and BatchNorm it is redundant (its gradient is zero in training); True keeps the
    parameter of earlier mtcp versions, so their checkpoints stay loadable.

    Shapes: ``[B, in_channels, h, w] -> [B, out_channels, h, w]``. ``bias`` as for
    :class:`FinalHead`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int = 256,
        bias: float | None = None,
        first_bias: bool = True,
    ):
        super().__init__(
            nn.Conv2d(in_channels, mid_channels, 1, bias=first_bias),
            conv_bn_relu(mid_channels, mid_channels),
            nn.Conv2d(mid_channels, out_channels, 1),
        )
        _init_bias(self[-1], bias)
