"""Common image corruptions, mild and strong, for checking that the review score notices them.

Each works on ``uint8 [H, W, 3]`` RGB and is deterministic in ``seed``. Sizes are relative to
the image (``s = min(H, W)``) so that a corruption means the same at every resolution:

==============  ===============================  ===============================
kind            mild                             strong
==============  ===============================  ===============================
``noise``       Gaussian, σ = 0.04 (of 255)      σ = 0.15
``blur``        Gaussian, σ = 0.008 s pixels     σ = 0.025 s
``low_light``   intensity × 0.5                  × 0.15 (plus σ = 0.01 sensor noise)
``jpeg``        JPEG quality 30                  quality 5
``occlusion``   grey rectangle over 10 % of it   35 % of it
==============  ===============================  ===============================
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from mtcp.data.sample import normalize_image
from mtcp.errors import MtcpError
from mtcp.inference.input_stats import to_rgb01

KINDS = ("noise", "blur", "low_light", "jpeg", "occlusion")
SEVERITIES = ("mild", "strong")
_LEVELS = {
    "noise": (0.04, 0.15),
    "blur": (0.008, 0.025),
    "low_light": (0.5, 0.15),
    "jpeg": (30, 5),
    "occlusion": (0.10, 0.35),
}


def corrupt(image: np.ndarray, kind: str, severity: str, seed: int = 0) -> np.ndarray:
    """``image`` (uint8 ``[H, W, 3]``) with the corruption ``kind`` at ``severity``."""
    if kind not in _LEVELS:
        raise MtcpError(f"unknown corruption {kind!r}; known: {', '.join(KINDS)}")
    if severity not in SEVERITIES:
        raise MtcpError(f"unknown severity {severity!r}; known: {', '.join(SEVERITIES)}")
    level = _LEVELS[kind][SEVERITIES.index(severity)]
    rng = np.random.default_rng(seed)
    x = image.astype(np.float32) / 255.0
    if kind == "noise":
        x = x + rng.normal(0.0, level, x.shape)
    elif kind == "blur":
        from scipy.ndimage import gaussian_filter

        sigma = level * min(x.shape[:2])
        x = gaussian_filter(x, sigma=(sigma, sigma, 0), mode="reflect")
    elif kind == "low_light":
        x = x * level + (rng.normal(0.0, 0.01, x.shape) if severity == "strong" else 0.0)
    elif kind == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=int(level))
        return np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    else:  # occlusion
        h, w = x.shape[:2]
        side = np.sqrt(level)
        oh, ow = max(1, round(side * h)), max(1, round(side * w))
        top, left = rng.integers(0, h - oh + 1), rng.integers(0, w - ow + 1)
        x = x.copy()
        x[top : top + oh, left : left + ow] = 0.5
    return (np.clip(x, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """Normalised ``[3, H, W]`` → uint8 ``[H, W, 3]`` RGB."""
    rgb = to_rgb01(image.float().cpu()[None])[0]
    return (rgb.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def corrupt_batch(images: torch.Tensor, kind: str, severity: str, first: int = 0) -> torch.Tensor:
    """Normalised ``[B, 3, H, W]`` → the same images corrupted (image ``i`` uses seed
    ``first + i``)."""
    return torch.stack(
        [
            normalize_image(corrupt(to_uint8(img), kind, severity, seed=first + i))
            for i, img in enumerate(images)
        ]
    )
