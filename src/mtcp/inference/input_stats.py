"""Statistics of an image as the network sees it, and their distance from the training images'.

The review score (:mod:`mtcp.inference.review`) compares every input with the training data
through these statistics: an image whose statistics lie far from all training images' is out of
distribution, whatever the maps say. They are computed on the network input (normalised
``[B, 3, h, w]`` at the network's size), so that an image of any size is compared at the scale
the network sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mtcp.tasks import IMAGENET_MEAN, IMAGENET_STD

#: statistics of the network input compared with the training images (:func:`input_features`)
INPUT_FEATURES = (
    "mean_r",
    "mean_g",
    "mean_b",
    "log_std_r",
    "log_std_g",
    "log_std_b",
    "log_gradient",
    "log_laplacian",
    "log_blockiness",
    "log_dark",
    "log_bright",
    "log_flat",
)
#: smallest standard deviation of an input feature (its units) in the input distance
FEATURE_STD_FLOOR = 0.05


def to_rgb01(image: torch.Tensor) -> torch.Tensor:
    """Normalised images ``[B, 3, H, W]`` → RGB in ``[0, 1]`` (the inverse of the input
    normalisation, clamped)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * std + mean).clamp(0, 1)


def input_features(image: torch.Tensor) -> torch.Tensor:
    """Statistics of normalised network inputs ``[B, 3, h, w]`` → float64 ``[B, F]``.

    In the order of :data:`INPUT_FEATURES`, on RGB in ``[0, 1]``: per-channel mean; the
    logarithms of the per-channel standard deviation, of the mean ``|∂x| + |∂y|`` of the
    luminance (blur lowers it, noise raises it), of its mean ``|Laplacian|`` (fine-scale
    noise), of the ratio of the mean horizontal step across 8-pixel block borders to the mean
    step elsewhere (JPEG blocks), and of ``1e-3 +`` the fractions of pixels darker than 0.05,
    brighter than 0.95 and *flat* (``|Laplacian| < 2e-4``, i.e. exactly constant in 8-bit:
    occluders, strong blur or JPEG blocks; a camera's noise makes real scenes never flat).
    Logarithms make the scale statistics' variation additive, so z-scores compare them.
    """
    rgb = to_rgb01(image.float()).double()
    gray = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    dx = (gray[:, :, 1:] - gray[:, :, :-1]).abs()
    dy = (gray[:, 1:] - gray[:, :-1]).abs()
    lap = (
        4 * gray[:, 1:-1, 1:-1]
        - gray[:, :-2, 1:-1]
        - gray[:, 2:, 1:-1]
        - gray[:, 1:-1, :-2]
        - gray[:, 1:-1, 2:]
    ).abs()
    border = torch.zeros(dx.shape[-1], dtype=torch.bool, device=dx.device)
    border[7::8] = True  # the step between columns 8k - 1 and 8k
    col = dx.mean(1)
    if border.any() and (~border).any():
        blocky = col[:, border].mean(1) / col[:, ~border].mean(1).clamp_min(1e-6)
    else:
        blocky = torch.ones_like(col[:, 0])
    eps = 1e-3
    return torch.stack(
        [
            *rgb.mean((2, 3)).unbind(1),
            *rgb.std((2, 3)).clamp_min(1e-4).log().unbind(1),
            (dx.mean((1, 2)) + dy.mean((1, 2))).clamp_min(1e-6).log(),
            lap.mean((1, 2)).clamp_min(1e-6).log(),
            blocky.clamp_min(1e-6).log(),
            (eps + (gray < 0.05).double().mean((1, 2))).log(),
            (eps + (gray > 0.95).double().mean((1, 2))).log(),
            (eps + (lap < 2e-4).double().mean((1, 2))).log(),
        ],
        dim=1,
    )


def input_distance(features: torch.Tensor, calibration: Mapping[str, Any]) -> torch.Tensor:
    """RMS z-score ``[B]`` of :func:`input_features` against the stored training statistics."""
    stats = calibration["input"]
    mean = torch.tensor(stats["mean"], dtype=torch.float64)
    std = torch.tensor(stats["std"], dtype=torch.float64).clamp_min(FEATURE_STD_FLOOR)
    z = (features.double() - mean) / std
    return z.pow(2).mean(1).sqrt()
