"""Readers of the files mtcp writes: training checkpoints and ``.safetensors`` weights.

The writers live elsewhere (checkpoints: :mod:`mtcp.engine`, deployment files:
:mod:`mtcp.export`); the facts both sides share (the names of the metadata entries) live here,
the lowest layer that reads them.

* a training checkpoint (``.ckpt``) is a dict with ``state_dict`` (``model.<param>`` keys) and
  the :data:`CHECKPOINT_KEY` section ``{"config", "tasks", "model", "intrinsics", ...}``;
* a ``.safetensors`` file holds the weights and, as the :data:`METADATA_KEY` metadata entry,
  the JSON ``{"model": <model.config>, "tasks", "size": [H, W] | null, "intrinsics"}``
  (the same entry an ONNX graph carries in its ``metadata_props``).

Nothing here unpickles: checkpoints load with ``torch.load(weights_only=True)`` unless the
caller trusts the file.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from mtcp.errors import MtcpError
from mtcp.io import load_checkpoint
from mtcp.models.weights import load_state
from mtcp.tasks import resolve_tasks

#: section of a training checkpoint holding the run's config, tasks and model config
CHECKPOINT_KEY = "mtcp"
#: metadata entry of ``.safetensors`` and ONNX files (JSON, see the module docstring)
METADATA_KEY = "mtcp"
#: name of the single input of an exported ONNX graph
INPUT_NAME = "image"


def require_export(*modules: str) -> list[Any]:
    """Import the optional export dependencies or raise a :class:`MtcpError` naming the extra."""
    try:
        return [importlib.import_module(m) for m in modules]
    except ImportError as err:
        raise MtcpError(
            f"{err.name} is not installed: ONNX export and inference need the 'export' extra "
            "(pip install 'mtcp[export]')"
        ) from None


# ----------------------------------------------------------------------------- checkpoints


def build_model(
    meta: Mapping[str, Any], state: Mapping[str, torch.Tensor], where: str
) -> tuple[nn.Module, dict[str, int]]:
    """Rebuild the model of a checkpoint section ``meta`` and load ``state`` strictly."""
    from mtcp.models.registry import create_model  # lazy: timm, keeps `mtcp --help` fast

    config = dict(meta["model"])
    name = config.pop("name")
    config.pop("tasks", None)
    tasks = resolve_tasks(dict(meta["tasks"]))
    model = create_model(name, tasks=tasks, **config)
    load_state(model, state, where)
    return model, tasks


def load_checkpoint_model(
    path: str | os.PathLike[str], trust: bool = False
) -> tuple[nn.Module, dict[str, int], dict[str, Any]]:
    """(model, tasks, the checkpoint's :data:`CHECKPOINT_KEY` section) of an ``mtcp train``
    checkpoint."""
    ckpt = load_checkpoint(path, trust=trust)
    meta = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if meta is None or "state_dict" not in ckpt:
        raise MtcpError(f"{path}: not an mtcp checkpoint (no {CHECKPOINT_KEY!r} section)")
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    model, tasks = build_model(meta, state, str(path))
    return model, tasks, meta


# ----------------------------------------------------------------------------- safetensors


def safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The :data:`METADATA_KEY` entry of a ``.safetensors`` file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise MtcpError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise MtcpError(f"{path}: not a safetensors file ({err})") from None
    if METADATA_KEY not in metadata:
        raise MtcpError(
            f"{path}: safetensors file without the {METADATA_KEY!r} metadata entry (the model "
            "config), so the model cannot be rebuilt; write it with mtcp export --format "
            "safetensors or mtcp.export.save_safetensors"
        )
    try:
        meta = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as err:
        raise MtcpError(f"{path}: the {METADATA_KEY!r} metadata is not JSON ({err})") from None
    if not isinstance(meta, dict) or "name" not in (meta.get("model") or {}):
        raise MtcpError(f"{path}: the {METADATA_KEY!r} metadata has no model config")
    return meta


def load_safetensors(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model stored by :func:`mtcp.export.save_safetensors`, load its weights
    strictly.

    Returns:
        the model in eval mode on ``device``.
    """
    from mtcp.models.registry import create_model  # lazy: timm, keeps `mtcp --help` fast

    meta = safetensors_metadata(path)
    try:
        model = create_model(**meta["model"])
    except (MtcpError, TypeError) as err:
        raise MtcpError(f"{path}: cannot rebuild the model from its stored config: {err}") from None
    name = meta["model"]["name"]
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:  # e.g. a truncated file
        raise MtcpError(
            f"{path}: cannot read the weights of model {name!r} (truncated or damaged "
            f"safetensors file? {err})"
        ) from None
    load_state(model, state, str(path))
    return model.to(device).eval()
