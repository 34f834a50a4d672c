"""Prediction heads (SPEC §3.5). Outputs are in the task's units (see :mod:`mtcp.tasks`)."""

from __future__ import annotations

from torch import nn

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


class FinalHead(nn.Sequential):
    """``Conv1x1 -> BN -> ReLU -> Conv1x1`` to the task's channels.

    The release upsamples x2 between the two convs for semseg and depth; a 1x1 conv commutes
    with bilinear resizing, so mtcp resizes once, to the input size, in the model instead.

    Shapes: ``[B, in_channels, h, w] -> [B, out_channels, h, w]``. ``bias``: initial bias of
    the last conv (see :func:`output_bias`); None keeps PyTorch's default.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int | None = None,
        bias: float | None = None,
    ):
        mid = mid_channels or in_channels
        super().__init__(conv_bn_relu(in_channels, mid), nn.Conv2d(mid, out_channels, 1))
        _init_bias(self[-1], bias)


class AuxHead(nn.Sequential):
    """Deep-supervision head: ``Conv1x1 -> Conv1x1 -> BN -> ReLU -> Conv1x1`` (as released).

    Shapes: ``[B, in_channels, h, w] -> [B, out_channels, h, w]``. ``bias`` as for
    :class:`FinalHead`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int = 256,
        bias: float | None = None,
    ):
        super().__init__(
            nn.Conv2d(in_channels, mid_channels, 1),
            conv_bn_relu(mid_channels, mid_channels),
            nn.Conv2d(mid_channels, out_channels, 1),
        )
        _init_bias(self[-1], bias)
