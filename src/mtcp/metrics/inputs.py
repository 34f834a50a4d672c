"""What a metric accepts: torch tensors, or numpy arrays in the same layout; nothing else.

Metric results are 0-d float64 tensors (as torchmetrics returns them): :func:`as_result`
builds them, :func:`to_floats` turns nested results into plain floats for printing and JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mtcp.errors import MtcpError


def as_tensor(value: Any, what: str) -> torch.Tensor:
    """``value`` as a tensor: tensors unchanged, numeric numpy arrays shared without a copy.

    Args:
        value: a tensor or a numpy array (same shapes and units as the tensor inputs).
        what: the input named in the error, e.g. ``"depth: predictions"``.

    Raises:
        MtcpError: for anything else (lists, PIL images, object arrays), naming ``what``.
    """
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise MtcpError(f"{what}: expected a numeric numpy array, got dtype {value.dtype}")
        return torch.as_tensor(np.ascontiguousarray(value))
    raise MtcpError(f"{what}: expected a torch tensor or a numpy array, got {type(value).__name__}")


def as_result(values: Mapping[str, Any], device: torch.device | str | None = None) -> dict:
    """``{key: 0-d float64 tensor}`` from numbers or tensors (the result of every ``compute``),
    on ``device`` (default: a tensor's own device, the CPU for numbers)."""
    return {
        k: torch.as_tensor(v, dtype=torch.float64, device=device).detach().clone()
        for k, v in values.items()
    }


def to_floats(results: Mapping[str, Any]) -> dict[str, Any]:
    """Results (nested mappings of 0-d tensors or numbers) with every value a Python float."""
    return {k: to_floats(v) if isinstance(v, Mapping) else float(v) for k, v in results.items()}
