"""Baselines on the same backbones (SPEC §3.7).

- single-task: :class:`mtcp.models.mtcp.MTCP` with exactly one task, no trace-back and no deep
  supervision by default (backbone + one decoder + head); built by the ``stl_<size>`` presets.
- hard parameter sharing: :class:`HardSharing`, the backbone plus one plain head per task.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from mtcp.models.backbones import build_backbone
from mtcp.models.base import DenseModel
from mtcp.models.heads import FinalHead


class HardSharing(DenseModel):
    """Hard parameter sharing: shared backbone, one :class:`FinalHead` per task on R.

    Shapes: ``image [B, 3, H, W]`` -> ``{task: [B, C_task, H, W]}`` (heads at 1/4).
    """

    def __init__(
        self,
        tasks: Any,
        backbone: str = "convnext_atto",
        channels: int = 256,
        min_size: int = 64,
        pretrained: bool = False,
        backbone_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(tasks, min_size)
        self.backbone = build_backbone(backbone, channels, pretrained, backbone_kwargs)
        self.heads = nn.ModuleDict({t: FinalHead(channels, c) for t, c in self.tasks.items()})

    def predict(self, image: Tensor) -> dict[str, Tensor]:
        """``image [B, 3, Hp, Wp]`` -> ``{task: [B, C_task @ 1/4]}``."""
        r = self.backbone(image)
        return {t: head(r) for t, head in self.heads.items()}
