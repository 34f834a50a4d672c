"""Small building blocks shared by the model modules."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def resize(x: Tensor, size: tuple[int, int] | tuple[int, ...]) -> Tensor:
    """Bilinear resize of ``[B, C, h, w]`` to ``size = (H, W)``; no-op when already that size."""
    # no int(): keeps traced sizes symbolic so ONNX export with dynamic H, W stays correct
    size = tuple(size[-2:])
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    """``Conv(k, no bias) -> BN -> ReLU``: ``[B, in, h, w] -> [B, out, h, w]``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )
