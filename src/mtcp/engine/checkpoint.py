"""Lightning checkpoint I/O through :mod:`mtcp.io`: atomic saves, ``weights_only=True`` loads.

A checkpoint whose weights hold NaN or Inf is never written (not as ``last.ckpt``, not as
``best.ckpt``): the save raises an :class:`~mtcp.errors.MtcpError` that stops the run, and the
previous file stays as it was. Out of disk space, :mod:`mtcp.io` says so in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mtcp.errors import MtcpError
from mtcp.io import load_checkpoint, save_checkpoint


def nonfinite_tensors(state: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state`` (a state dict) holding NaN or Inf."""
    return [
        name
        for name, value in state.items()
        if torch.is_tensor(value)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: atomic saves of finite weights, ``weights_only=True`` loads."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        bad = nonfinite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            previous = "the previous one is intact" if Path(path).exists() else "none was written"
            raise MtcpError(
                f"refusing to write checkpoint {path}: the model is non-finite ({len(bad)} "
                f"tensors hold NaN/Inf, e.g. {', '.join(bad[:3])}); {previous}. Training "
                "stopped: look for non-finite inputs or lower optim.lr."
            )
        save_checkpoint(checkpoint, path)

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: Any = None
    ) -> dict[str, Any]:
        return load_checkpoint(path)
