"""Coherence Fusion Module (SPEC §3.3): "geometric coherence".

A task's own features are re-aggregated along pixel affinities computed from the other
tasks' features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtcp.models.attention import CBAM, CoherenceAttention


class CoherenceFusion(nn.Module):
    """CFM of one task t with ``num_partners`` = k other tasks.

    - ``S = BN(CBAM(X_t))``;
    - ``ã_i = a_i * sigmoid(Conv1x1(a_i))``, ``F = ReLU(Conv1x1([ã_1; ...; ã_k]))`` [C k];
    - ``Q = ReLU(BN(CBAM_q(F)))``, ``K = ReLU(BN(CBAM_k(F)))`` [C k];
    - ``O = softmax(Qᵀ K) S`` over the ``N = h * w`` tokens (no ``1/sqrt(d)`` scale);
    - ``Y_t = BN(CBAM(O))`` (no residual).

    With ``stride_factor`` > 1 all inputs are average-pooled by that factor first (CFM at 1/8 or
    1/16 instead of 1/4) and ``Y_t`` stays at the pooled resolution.

    ``cbam_momentum``: BatchNorm momentum of the CBAM spatial gates (the release: 0.01).

    Shapes: ``x [B, C, h, w]``, ``partners`` k x ``[B, C, h, w]`` ->
    ``[B, C, h / f, w / f]`` with ``f = stride_factor``.
    """

    def __init__(
        self,
        channels: int,
        num_partners: int,
        reduction: int = 16,
        stride_factor: int = 1,
        attention_impl: str = "auto",
        attention_chunk: int | None = None,
        cbam_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        wide = channels * num_partners

        def cbam(c: int) -> CBAM:
            return CBAM(c, reduction, bn_momentum=cbam_momentum)

        self.stride_factor = int(stride_factor)
        self.value = nn.Sequential(cbam(channels), nn.BatchNorm2d(channels))
        self.gates = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(num_partners))
        self.fuse = nn.Sequential(nn.Conv2d(wide, wide, 1), nn.ReLU(inplace=True))
        self.query = nn.Sequential(cbam(wide), nn.BatchNorm2d(wide), nn.ReLU())
        self.key = nn.Sequential(cbam(wide), nn.BatchNorm2d(wide), nn.ReLU())
        self.attention = CoherenceAttention(attention_impl, attention_chunk)
        self.out = nn.Sequential(cbam(channels), nn.BatchNorm2d(channels))

    def forward(self, x: Tensor, partners: Sequence[Tensor]) -> Tensor:
        if self.stride_factor > 1:
            f = self.stride_factor
            x = F.avg_pool2d(x, f, ceil_mode=True)
            partners = [F.avg_pool2d(a, f, ceil_mode=True) for a in partners]
        b, c, h, w = x.shape
        gated = [a * torch.sigmoid(gate(a)) for gate, a in zip(self.gates, partners)]
        fused = self.fuse(torch.cat(gated, dim=1))
        tokens = [
            t.permute(0, 2, 3, 1).reshape(b, h * w, -1)  # [B, N, C]
            for t in (self.query(fused), self.key(fused), self.value(x))
        ]
        o = self.attention(*tokens)  # [B, N, C]
        o = o.reshape(b, h, w, c).permute(0, 3, 1, 2)
        return self.out(o)
