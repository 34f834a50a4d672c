"""FPN fusion and the per-task Swin decoder (SPEC §3.2).

Strides are relative to the input image; the decoder's input R is at 1/4.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformerStage
from torch import Tensor, nn

from mtcp.errors import MtcpError


class FPN(nn.Module):
    """Feature pyramid fusion: 1x1 laterals, top-down nearest upsample + add, one 3x3 conv.

    Only the finest level gets an output conv (the release also computed two coarser outputs
    and discarded them).

    Shapes: ``feats[i]`` ``[B, in_channels[i], h_i, w_i]``, finest first ->
    ``[B, out_channels, h_0, w_0]``.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        x = self.laterals[-1](feats[-1])
        for lateral, feat in zip(self.laterals[-2::-1], feats[-2::-1]):
            x = lateral(feat) + F.interpolate(x, size=feat.shape[-2:], mode="nearest")
        return self.output(x)


class TaskDecoder(nn.Module):
    """One task's 3-stage Swin decoder on R (no patch embedding) followed by :class:`FPN`.

    Stage i has width ``dims[i]`` at stride ``4 * 2**i`` (1/4, 1/8, 1/16); stages 2 and 3
    start with a PatchMerging; each stage output goes through a LayerNorm.

    Shapes: ``R [B, in_channels @ 1/4]`` -> ``X [B, fpn_channels @ 1/4]`` and
    ``(F1 [dims[0] @ 1/4], F2 [dims[1] @ 1/8], F3 [dims[2] @ 1/16])``.
    """

    def __init__(
        self,
        in_channels: int,
        dims: Sequence[int] = (256, 512, 1024),
        depths: Sequence[int] = (1, 2, 1),
        num_heads: int | Sequence[int] = 2,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        fpn_channels: int = 256,
    ) -> None:
        super().__init__()
        if in_channels != dims[0]:
            raise MtcpError(
                f"the decoder has no patch embedding: its first width {dims[0]} must equal "
                f"the shared representation's width {in_channels}"
            )
        heads = [num_heads] * len(dims) if isinstance(num_heads, int) else list(num_heads)
        stages, norms = [], []
        prev = in_channels
        for i, (dim, depth, head) in enumerate(zip(dims, depths, heads)):
            stages.append(
                SwinTransformerStage(
                    dim=prev,
                    out_dim=dim,
                    input_resolution=(window_size, window_size),
                    depth=depth,
                    downsample=i > 0,
                    num_heads=head,
                    window_size=window_size,
                    always_partition=True,  # keep window 7 and the shift for any input size
                    dynamic_mask=True,  # shifted-window mask built for the actual size
                    mlp_ratio=mlp_ratio,
                )
            )
            norms.append(nn.LayerNorm(dim))
            prev = dim
        self.stages = nn.ModuleList(stages)
        self.norms = nn.ModuleList(norms)
        self.fpn = FPN(dims, fpn_channels)
        self.dims = tuple(dims)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the Swin blocks in backward instead of keeping their activations
        (LayerNorm only inside: the recomputation is exact and updates no statistics)."""
        for stage in self.stages:
            stage.grad_checkpointing = enable

    def forward(self, r: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        x = r.permute(0, 2, 3, 1)  # Swin stages work in [B, h, w, C]
        feats = []
        for stage, norm in zip(self.stages, self.norms):
            x = stage(x)
            feats.append(norm(x).permute(0, 3, 1, 2))
        return self.fpn(feats), tuple(feats)
