"""Hugging Face Mask2Former Swin state-dict names across transformers generations.

transformers 5 renamed the Swin backbone's parameters (its own ``conversion_mapping`` entries
``"swin"`` and ``"SwinBackbone"`` rename them when it loads a hub checkpoint, but not in a
plain state dict): under ``...pixel_level_module.encoder.``

=====================================================  =========================================
transformers 4.x (e.g. 4.46.3, the release's pin)      transformers 5.x
=====================================================  =========================================
``embeddings.*``, ``encoder.layers.*``                 ``swin.embeddings.*``, ``swin.encoder.*``
``…blocks.N.attention.self.query|key|value``           ``…blocks.N.attention.q_proj|k_proj|v_proj``
``…attention.self.relative_position_bias_table``       ``…attention.relative_position_bias.
                                                       relative_position_bias_table``
``…attention.output.dense``                            ``…attention.o_proj``
``…intermediate.dense`` / ``…output.dense``            ``…mlp.fc1`` / ``…mlp.fc2``
``…attention.self.relative_position_index``            (not saved: a constant buffer)
=====================================================  =========================================

Everything else of Mask2Former keeps its name. A 4.x state dict under 5.x misses 421 keys
(and carries 24 index buffers 5.x does not save).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal, TypeVar

Naming = Literal["4", "5"]
T = TypeVar("T")

ENCODER = "pixel_level_module.encoder."
#: per-block renames, 4.x -> 5.x (prefix of the name after ``layers.N.blocks.M.``)
BLOCK_RENAMES: tuple[tuple[str, str], ...] = (
    ("attention.self.query.", "attention.q_proj."),
    ("attention.self.key.", "attention.k_proj."),
    ("attention.self.value.", "attention.v_proj."),
    (
        "attention.self.relative_position_bias_table",
        "attention.relative_position_bias.relative_position_bias_table",
    ),
    ("attention.output.dense.", "attention.o_proj."),
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
)
#: saved by 4.x only; a constant of the window size
V4_ONLY_BUFFER = "attention.self.relative_position_index"
_BLOCK = re.compile(r"^((?:swin\.)?encoder\.layers\.\d+\.blocks\.\d+\.)(.*)$")


def swin_naming(keys: Iterable[str]) -> Naming | None:
    """Which generation's names ``keys`` use for the Mask2Former Swin (None: no Swin keys)."""
    for key in keys:
        i = key.find(ENCODER)
        if i < 0:
            continue
        tail = key[i + len(ENCODER) :]
        if tail.startswith("swin."):
            return "5"
        if tail.startswith(("embeddings.", "encoder.")):
            return "4"
    return None


def rename_swin_key(key: str, to: Naming) -> str | None:
    """``key`` in the ``to`` generation's naming; None for a 4.x-only buffer going to 5.x."""
    i = key.find(ENCODER)
    if i < 0:
        return key
    head, tail = key[: i + len(ENCODER)], key[i + len(ENCODER) :]
    if to == "5" and tail.startswith(("embeddings.", "encoder.")):
        tail = "swin." + tail
    elif to == "4" and tail.startswith("swin."):
        tail = tail[len("swin.") :]
    match = _BLOCK.match(tail)
    if match is None:
        return head + tail
    block, rest = match.groups()
    if to == "5" and rest == V4_ONLY_BUFFER:
        return None
    for old, new in BLOCK_RENAMES:
        src, dst = (old, new) if to == "5" else (new, old)
        if rest.startswith(src):
            rest = dst + rest[len(src) :]
            break
    return head + block + rest


def rename_swin_keys(state: Mapping[str, T], to: Naming) -> dict[str, T]:
    """``state`` with every Mask2Former Swin key in the ``to`` naming (see the module table);
    other keys unchanged, 4.x-only buffers dropped when going to 5.x."""
    out: dict[str, T] = {}
    for key, value in state.items():
        new = rename_swin_key(key, to)
        if new is not None:
            out[new] = value
    return out
