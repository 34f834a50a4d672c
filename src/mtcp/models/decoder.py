"""FPN fusion and the per-task Swin decoder (SPEC §3.2).

Strides are relative to the input image; the decoder's input R is at 1/4.

Shifted windows on maps that are not a multiple of the window: the released network (the
detection / segmentation Swin) zero-pads the map at the bottom and right to a multiple of the
window first, then rolls it by the shift and masks the regions of the *padded* map.
timm's ``SwinTransformerBlock`` rolls the unpadded map and pads afterwards, so at such sizes
tokens from opposite borders share a window unmasked (12.5 % of the tokens at 56x72, the 1/8 map
of 448x576). :class:`PadThenRollBlock` is timm's block with the release's order; the two agree
exactly when every map is a multiple of the window (e.g. 224x224).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import (
    SwinTransformerBlock,
    SwinTransformerStage,
    window_partition,
    window_reverse,
)
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


class PadThenRollBlock(SwinTransformerBlock):
    """timm's Swin block with the window attention of the released Swin: pad, then roll.

    ``x [B, H, W, C]`` (already through ``norm1``, so the padding is zeros) is padded to
    ``Hp x Wp``, multiples of the window, then rolled by ``-shift``; the shift mask separates
    the three bands ``[0, Hp - ws)``, ``[Hp - ws, Hp - shift)``, ``[Hp - shift, Hp)`` of the padded
    map (likewise along W), computed by timm's ``get_attn_mask`` for the padded size. Padded
    tokens take part as keys, as in the release. Same parameters and names as timm's block.

    Shapes: ``[B, H, W, C] -> [B, H, W, C]``.
    """

    def _attn(self, x: Tensor) -> Tensor:
        _, h, w, c = x.shape
        wh, ww = self.window_size
        x = F.pad(x, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))
        hp, wp = x.shape[1:3]
        sh, sw = self.shift_size
        shifted = bool(sh or sw)
        if shifted:
            x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
        windows = window_partition(x, self.window_size).view(-1, self.window_area, c)
        mask = self.get_attn_mask(x) if shifted else None
        out = self.attn(windows, mask=mask).view(-1, wh, ww, c)
        x = window_reverse(out, self.window_size, hp, wp)
        if shifted:
            x = torch.roll(x, shifts=(sh, sw), dims=(1, 2))
        return x[:, :h, :w, :]


def swin_stage(
    dim: int,
    out_dim: int,
    depth: int,
    downsample: bool,
    num_heads: int,
    window_size: int,
    mlp_ratio: float,
) -> SwinTransformerStage:
    """A timm ``SwinTransformerStage`` whose blocks are :class:`PadThenRollBlock`.

    Window ``window_size`` and shift ``window_size // 2`` (odd blocks) are kept for every input
    size, as in the release (timm's ``always_partition=True``); masks are built per forward for
    the padded size. ``[B, H, W, dim] -> [B, H / s, W / s, out_dim]``, ``s = 2`` with
    ``downsample`` (PatchMerging) else 1.
    """
    resolution = (window_size, window_size)  # a placeholder: masks are dynamic
    stage = SwinTransformerStage(
        dim=dim,
        out_dim=out_dim,
        input_resolution=resolution,
        depth=0,  # blocks replaced below
        downsample=downsample,
        num_heads=num_heads,
        window_size=window_size,
        always_partition=True,
        dynamic_mask=True,
        mlp_ratio=mlp_ratio,
    )
    stage.blocks = nn.Sequential(
        *(
            PadThenRollBlock(
                dim=out_dim,
                input_resolution=resolution,
                num_heads=num_heads,
                window_size=window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                always_partition=True,
                dynamic_mask=True,
                mlp_ratio=mlp_ratio,
            )
            for i in range(depth)
        )
    )
    return stage


class TaskDecoder(nn.Module):
    """One task's 3-stage Swin decoder on R (no patch embedding) followed by :class:`FPN`.

    Stage i has width ``dims[i]`` at stride ``4 * 2**i`` (1/4, 1/8, 1/16); stages 2 and 3
    start with a PatchMerging; each stage output goes through a LayerNorm. Shifted windows
    pad, then roll (:class:`PadThenRollBlock`), as the released network does.

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
            stages.append(swin_stage(prev, dim, depth, i > 0, head, window_size, mlp_ratio))
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
