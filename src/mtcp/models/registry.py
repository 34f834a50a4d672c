"""Named model presets and :func:`create_model` (timm-like).

=================  =========================================================================
preset             architecture
=================  =========================================================================
``mtcp_tiny``      MT-CP, timm ConvNeXt-atto + FPN, narrow decoders (32/64/128), CFM at 1/8
``mtcp_base``      MT-CP, timm ConvNeXt-S + FPN pixel decoder, paper-sized decoders
``mtcp_paper``     MT-CP as released: Hugging Face Mask2Former Swin-S, paper-sized decoders
``stl_<size>``     single-task baseline (exactly one task): backbone + one decoder + head
``hps_<size>``     hard-sharing baseline: backbone + one plain head per task
=================  =========================================================================

``<size>`` is ``tiny``, ``base`` or ``paper`` (the backbone and widths of ``mtcp_<size>``).
"""

from __future__ import annotations

import fnmatch
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from mtcp.errors import MtcpError
from mtcp.models.base import DenseModel
from mtcp.models.baselines import HardSharing
from mtcp.models.heads import DEPTH_INIT
from mtcp.models.mtcp import MTCP
from mtcp.models.weights import load_state, read_state_file
from mtcp.tasks import resolve_tasks


@dataclass(frozen=True)
class Preset:
    """A registered model: the class to build and its default keyword arguments."""

    cls: Callable[..., DenseModel]
    defaults: dict[str, Any] = field(default_factory=dict)
    num_tasks: int | None = None  # exact number of tasks required, None = any
    description: str = ""


_PRESETS: dict[str, Preset] = {}

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "backbone": "convnext_atto",
        "channels": 32,
        "decoder_dims": [32, 64, 128],
        "decoder_depths": [1, 1, 1],
        "cfm_stride": 8,
    },
    "base": {
        "backbone": "convnext_small",
        "channels": 256,
        "decoder_dims": [256, 512, 1024],
        "decoder_depths": [1, 2, 1],
        "cfm_stride": 4,
    },
    "paper": {
        "backbone": "mask2former_swin_small",
        "channels": 256,
        "decoder_dims": [256, 512, 1024],
        "decoder_depths": [1, 2, 1],
        "cfm_stride": 4,
        "release_heads": "auto",  # the released network's heads (mtcp.models.heads)
    },
}
_SHARED_KEYS = ("backbone", "channels")
#: options of every preset, listed so that ``model.config`` records them
_COMMON = {"depth_init": DEPTH_INIT}


def register_model(name: str, preset: Preset) -> None:
    """Register ``preset`` under ``name`` (replacing an earlier one of that name)."""
    _PRESETS[name] = preset


def list_models(filter: str = "") -> list[str]:
    """Sorted names of the registered models matching the shell-style pattern ``filter``
    (e.g. ``"stl_*"``); ``""`` lists them all."""
    return [n for n in sorted(_PRESETS) if not filter or fnmatch.fnmatch(n, filter)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _accepted(cls: Callable[..., Any]) -> list[str]:
    params = inspect.signature(cls).parameters
    return [p for p in params if p not in ("self", "tasks", "pretrained")]


def create_model(
    name: str,
    tasks: Iterable[str] | Mapping[str, int],
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> DenseModel:
    """Build the registered model ``name`` for ``tasks``.

    Args:
        name: a preset from :func:`list_models`.
        tasks: task names or ``{task: channels}`` (see :func:`mtcp.tasks.resolve_tasks`).
        pretrained: load the backbone's timm / Hugging Face weights (needs the network or a
            local cache; ``mtcp_paper`` loads facebook/mask2former-swin-small-ade-semantic).
        weights: a local ``.safetensors`` file or a ``torch.save`` state dict (a Lightning
            checkpoint's ``state_dict`` is accepted) loaded into the whole model.
        **overrides: any constructor argument of the preset's class (e.g. ``cfm=False``,
            ``cfm_stride=8``, ``channels=128``, ``depth_init=3.0``), see
            :class:`mtcp.models.mtcp.MTCP`.

    Returns:
        the model, with ``.tasks`` ``{task: channels}`` and ``.config`` such that
        ``create_model(**model.config)`` rebuilds the same architecture.
    """
    if name not in _PRESETS:
        raise MtcpError(f"unknown model {name!r}; accepted: {', '.join(list_models())}")
    preset = _PRESETS[name]
    resolved = resolve_tasks(tasks)
    if preset.num_tasks is not None and len(resolved) != preset.num_tasks:
        raise MtcpError(
            f"model {name!r} takes exactly {preset.num_tasks} task(s); got {list(resolved)}"
        )
    accepted = _accepted(preset.cls)
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise MtcpError(
            f"unknown option(s) {unknown} for model {name!r}; accepted: {', '.join(accepted)}"
        )
    kwargs = _jsonable({**preset.defaults, **overrides})
    model = preset.cls(tasks=resolved, pretrained=pretrained, **kwargs)
    model.config = {"name": name, "tasks": dict(model.tasks), **kwargs}
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a local ``.safetensors`` / ``torch.save`` state dict into ``model`` with the one
    strictness policy of :func:`mtcp.models.weights.load_state`."""
    load_state(model, read_state_file(path), where=str(path))


for _size, _defaults in SIZES.items():
    register_model(
        f"mtcp_{_size}",
        Preset(MTCP, {**_defaults, **_COMMON}, description=f"MT-CP, {_size} size"),
    )
    register_model(
        f"stl_{_size}",
        Preset(
            MTCP,
            {**_defaults, **_COMMON, "cfm": False, "traceback": False, "deep_supervision": False},
            num_tasks=1,
            description=f"single-task baseline, {_size} size",
        ),
    )
    register_model(
        f"hps_{_size}",
        Preset(
            HardSharing,
            {**{k: _defaults[k] for k in _SHARED_KEYS}, **_COMMON},
            description=f"hard-sharing baseline, {_size} size",
        ),
    )
