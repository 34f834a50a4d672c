"""Checkpoints in the layout ``mtcp train`` writes, for tests that need one without training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from mtcp.io import save_checkpoint


def write_train_checkpoint(
    path: Path, model: nn.Module, data: dict[str, Any], intrinsics: list[float] | None = None
) -> Path:
    """Save ``model`` (a :class:`mtcp.models.DenseModel`) as ``mtcp train`` does, with
    ``data`` as the config's data section and ``intrinsics`` the camera (None: none stored)."""
    meta = {
        "config": {"data": data},
        "tasks": model.tasks,
        "model": model.config,
        "intrinsics": intrinsics,
    }
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    return save_checkpoint({"state_dict": state, "mtcp": meta}, path)
