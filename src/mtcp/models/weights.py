"""The one weight loader of mtcp models and its strictness policy.

:func:`load_state` accepts what mtcp and its users save — a plain state dict, a
DistributedDataParallel one (``module.`` prefix), a LightningModule's (``model.`` prefix), and
Mask2Former Swin names of either transformers generation (:mod:`mtcp.models.hf_names`) — and
otherwise refuses, naming every missing key, unexpected key and shape mismatch. Nothing is
loaded unless everything fits.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from safetensors.torch import load_file
from torch import Tensor, nn

from mtcp.errors import MtcpError
from mtcp.io import load_checkpoint
from mtcp.models.hf_names import rename_swin_keys, swin_naming

#: wrappers whose prefix is removed when every key carries it: DDP, LightningModule.model
WRAPPER_PREFIXES = ("module.", "model.")
#: constant buffers one transformers generation saves and the other does not
CONSTANT_BUFFERS = ("relative_position_index",)
_SHOWN = 8


def strip_wrappers(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` without the :data:`WRAPPER_PREFIXES` that every key carries."""
    state = dict(state)
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _listing(what: str, items: list[str]) -> str:
    more = f", ... ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
    return f"{len(items)} {what}: {', '.join(items[:_SHOWN])}{more}"


def load_state(model: nn.Module, state: Mapping[str, Tensor], where: str) -> None:
    """Load ``state`` into ``model``, strictly, or raise :class:`MtcpError` naming ``where``.

    Wrapper prefixes are stripped; Mask2Former Swin keys are renamed to the generation the
    model is built with; constant index buffers the other generation does not save are taken
    from the model. Then every model key must be present with its shape and no other key
    may be left.
    """
    state = strip_wrappers(state)
    expected = model.state_dict()
    naming = swin_naming(expected)
    if naming is not None:
        state = rename_swin_keys(state, naming)
    for key, value in expected.items():
        if key not in state and key.rsplit(".", 1)[-1] in CONSTANT_BUFFERS:
            state[key] = value
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} (file {list(state[k].shape)}, model {list(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = [
        _listing(what, items)
        for what, items in (
            ("missing key(s)", missing),
            ("unexpected key(s)", unexpected),
            ("shape mismatch(es)", shapes),
        )
        if items
    ]
    if problems:
        name = (getattr(model, "config", None) or {}).get("name", type(model).__name__)
        raise MtcpError(f"{where}: weights do not fit the model {name!r}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def read_state_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The state dict in a local ``.safetensors`` file or ``torch.save`` file (read with
    ``weights_only``; a Lightning checkpoint's ``state_dict`` is taken)."""
    path = Path(path)
    if not path.is_file():
        raise MtcpError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
        except Exception as err:  # safetensors raises several types for damaged files
            raise MtcpError(f"cannot read weights file {str(path)!r}: {err}") from None
    else:
        state = load_checkpoint(path)
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise MtcpError(f"weights file {str(path)!r} does not hold a state dict of tensors")
    return dict(state)
