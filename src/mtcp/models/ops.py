"""Small building blocks shared by the model modules."""

from __future__ import annotations

from functools import partial

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


def match_grad_strides(module: nn.Module) -> None:
    """Make the gradient of every parameter of ``module`` have exactly that parameter's strides.

    Autograd keeps a kernel's gradient whose strides differ from the parameter's only in size-1
    dimensions (e.g. the ``[C, 1, 7, 7]`` weights of ConvNeXt's depthwise convolutions on the
    CPU): same memory layout, but DistributedDataParallel compares every stride and warns
    "Grad strides do not match bucket view strides". Only parameters with a size-1 dimension get
    the hook; a gradient is copied only when its strides differ. Values are unchanged.
    """
    for param in module.parameters():
        if param.requires_grad and param.dim() > 1 and 1 in param.shape:
            param.register_hook(partial(_with_strides_of, param))


def _with_strides_of(param: nn.Parameter, grad: Tensor) -> Tensor:
    if grad.stride() == param.stride() or grad.shape != param.shape:
        return grad
    return grad.new_empty_strided(param.shape, param.stride()).copy_(grad)
