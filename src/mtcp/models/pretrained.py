"""``save_pretrained`` / ``from_pretrained``: a folder (or Hugging Face Hub repository) with
``config.json`` and ``model.safetensors``, the convention of the Hub mixins.

``config.json``::

    {"mtcp_version": "0.1.0", "model": <model.config>, "data_config": <model.data_config>}

``model`` rebuilds the architecture with :func:`mtcp.models.registry.create_model`; the weights
load through :func:`mtcp.models.weights.load_state` (strict, either transformers naming).
huggingface_hub (a dependency of timm and of mtcp) is imported only for a Hub id.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_model

from mtcp.errors import MtcpError
from mtcp.io import atomic_path, read_json, write_json
from mtcp.models.base import DenseModel
from mtcp.models.registry import create_model
from mtcp.models.weights import load_state

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def _version() -> str | None:
    # the installed distribution's version (importing the mtcp package root would pull in
    # the layers above models)
    try:
        return metadata.version("mtcp")
    except metadata.PackageNotFoundError:
        return None


def save_pretrained(model: DenseModel, folder: str | os.PathLike[str]) -> Path:
    """Write ``model`` into ``folder`` (created if needed); returns ``folder``."""
    if "name" not in (model.config or {}):
        raise MtcpError(
            f"{type(model).__name__} has no model.config to rebuild it from; build the model "
            "with mtcp.create_model(...)"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_model(model, str(tmp), force_contiguous=True)
    config = {"mtcp_version": _version(), "model": model.config, "data_config": model.data_config}
    write_json(folder / CONFIG_NAME, config)  # last: a folder with a config is complete
    return folder


def _files(source: str | os.PathLike[str], **hub_kwargs: Any) -> tuple[Path, Path]:
    folder = Path(source)
    if folder.is_dir():
        return folder / CONFIG_NAME, folder / WEIGHTS_NAME
    text = str(source)
    if folder.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise MtcpError(
            f"{source}: no folder written by save_pretrained there (and not a Hub id 'owner/name')"
        )
    try:  # optional dependency, only for Hub ids
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise MtcpError(
            f"{source!r} is not a local folder; loading it from the Hugging Face Hub needs "
            "huggingface_hub (pip install huggingface_hub)"
        ) from None
    try:
        return tuple(  # type: ignore[return-value]
            Path(hf_hub_download(str(source), name, **hub_kwargs))
            for name in (CONFIG_NAME, WEIGHTS_NAME)
        )
    except Exception as err:  # hub errors: offline, unknown repository, missing file
        raise MtcpError(f"{source!r}: cannot fetch it from the Hugging Face Hub ({err})") from None


def from_pretrained(source: str | os.PathLike[str], **hub_kwargs: Any) -> DenseModel:
    """The model saved by :func:`save_pretrained` in a folder or Hub repository ``source``,
    in eval mode with its data config restored."""
    config_path, weights_path = _files(source, **hub_kwargs)
    config = read_json(config_path) if config_path.is_file() else None
    if not config or "name" not in (config.get("model") or {}):
        raise MtcpError(f"{config_path}: missing, or not a config.json of save_pretrained")
    if not weights_path.is_file():
        raise MtcpError(f"{weights_path}: no such file")
    try:
        model = create_model(**config["model"])
    except (MtcpError, TypeError) as err:
        raise MtcpError(f"{config_path}: cannot rebuild the model: {err}") from None
    load_state(model, load_file(str(weights_path)), str(weights_path))
    data = config.get("data_config") or {}
    model.set_data_config(data.get("input_size"), data.get("intrinsics"))
    return model.eval()
