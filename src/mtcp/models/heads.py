"""Prediction heads (SPEC §3.5). Outputs are in the task's units (see :mod:`mtcp.tasks`)."""

from __future__ import annotations

from torch import nn

from mtcp.models.ops import conv_bn_relu


class FinalHead(nn.Sequential):
    """``Conv1x1 -> BN -> ReLU -> Conv1x1`` to the task's channels.

    The release upsamples x2 between the two convs for semseg and depth; a 1x1 conv commutes
    with bilinear resizing, so mtcp resizes once, to the input size, in the model instead.

    Shapes: ``[B, in_channels, h, w] -> [B, out_channels, h, w]``.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        mid = mid_channels or in_channels
        super().__init__(conv_bn_relu(in_channels, mid), nn.Conv2d(mid, out_channels, 1))


class AuxHead(nn.Sequential):
    """Deep-supervision head: ``Conv1x1 -> Conv1x1 -> BN -> ReLU -> Conv1x1`` (as released).

    Shapes: ``[B, in_channels, h, w] -> [B, out_channels, h, w]``.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int = 256):
        super().__init__(
            nn.Conv2d(in_channels, mid_channels, 1),
            conv_bn_relu(mid_channels, mid_channels),
            nn.Conv2d(mid_channels, out_channels, 1),
        )
