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
from mtcp.models.heads import DEPTH_INIT, FinalHead, output_bias
from mtcp.models.ops import match_grad_strides


class HardSharing(DenseModel):
    """Hard parameter sharing: shared backbone, one :class:`FinalHead` per task on R.

    Shapes: ``image [B, 3, H, W]`` -> ``{task: [B, C_task, H, W]}`` (heads at 1/4).
    ``depth_init``: initial bias (metres) of the depth head, as in :class:`mtcp.models.mtcp.MTCP`.
    """

    def __init__(
        self,
        tasks: Any,
        backbone: str = "convnext_atto",
        channels: int = 256,
        min_size: int = 64,
        depth_init: float | None = DEPTH_INIT,
        pretrained: bool = False,
        backbone_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(tasks, min_size)
        self.backbone = build_backbone(backbone, channels, pretrained, backbone_kwargs)
        self.heads = nn.ModuleDict(
            {
                t: FinalHead(channels, c, bias=output_bias(t, depth_init))
                for t, c in self.tasks.items()
            }
        )
        match_grad_strides(self)

    def predict(self, image: Tensor) -> dict[str, Tensor]:
        """``image [B, 3, Hp, Wp]`` -> ``{task: [B, C_task @ 1/4]}``."""
        r = self.backbone(image)
        return {t: head(r) for t, head in self.heads.items()}
