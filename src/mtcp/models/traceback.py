"""Trace-back through Spatial Refinement Modules (SPEC §3.4): "predictive coherence".

The fused feature travels back through the task's own decoder, deepest stage first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtcp.models.attention import CBAM
from mtcp.models.ops import conv_bn_relu, resize


class SpatialRefinement(nn.Module):
    """SRM(p, f): ``p' = resize(CBAM(p), size of f)``, ``f' = CBAM(f)``, ``z = [p'; f']``.

    Returns ``y = ReLU(BN(Conv1x1(z -> out_channels)))`` (the prediction feature) when
    ``predict`` is set and ``g = ReLU(BN(Conv1x1(z -> C_f)))`` (the refined decoder feature
    passed on along the chain) when ``refine`` is set; ``None`` otherwise. Outputs nothing
    would use are not built (the last SRM has no ``g``; without deep supervision the
    intermediate SRMs have no ``y``).

    The 1x1 convs have no bias: a bias before BatchNorm only shifts its running mean (the
    release has one; :mod:`mtcp.models.release` folds it into the statistics).

    Shapes: ``p [B, C_p, *]``, ``f [B, C_f, h, w]`` -> ``y [B, out_channels, h, w]``,
    ``g [B, C_f, h, w]``.
    """

    def __init__(
        self,
        in_channels: int,
        feat_channels: int,
        out_channels: int,
        predict: bool = True,
        refine: bool = True,
        reduction: int = 16,
        cbam_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.cbam_in = CBAM(in_channels, reduction, bn_momentum=cbam_momentum)
        self.cbam_feat = CBAM(feat_channels, reduction, bn_momentum=cbam_momentum)
        both = in_channels + feat_channels
        self.predict = conv_bn_relu(both, out_channels) if predict else None
        self.refine = conv_bn_relu(both, feat_channels) if refine else None

    def forward(self, p: Tensor, f: Tensor) -> tuple[Tensor | None, Tensor | None]:
        z = torch.cat([resize(self.cbam_in(p), f.shape[-2:]), self.cbam_feat(f)], dim=1)
        y = self.predict(z) if self.predict is not None else None
        g = self.refine(z) if self.refine is not None else None
        return y, g


class TraceBack(nn.Module):
    """The SRM chain ``SRM_3(Y, F3) -> (y3, g3)``, ``SRM_2(g3, F2) -> (y2, g2)``,
    ``SRM_1(g2, F1) -> y1``.

    Shapes: ``y [B, in_channels, *]`` (the CFM output or X), ``feats = (F1 @ 1/4, F2 @ 1/8,
    F3 @ 1/16)`` with widths ``stage_channels`` -> ``(y3 @ 1/16, y2 @ 1/8, y1 @ 1/4)``, each
    ``[B, out_channels, *]``; y3 and y2 are ``None`` unless ``intermediate`` (they only feed
    the deep-supervision heads).
    """

    def __init__(
        self,
        in_channels: int,
        stage_channels: Sequence[int],
        out_channels: int,
        intermediate: bool = True,
        reduction: int = 16,
        cbam_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        c1, c2, c3 = stage_channels
        kw = {"reduction": reduction, "cbam_momentum": cbam_momentum}
        self.srm3 = SpatialRefinement(in_channels, c3, out_channels, intermediate, True, **kw)
        self.srm2 = SpatialRefinement(c3, c2, out_channels, intermediate, True, **kw)
        self.srm1 = SpatialRefinement(c2, c1, out_channels, True, False, **kw)

    def forward(
        self, y: Tensor, feats: Sequence[Tensor]
    ) -> tuple[Tensor | None, Tensor | None, Tensor]:
        f1, f2, f3 = feats
        y3, g3 = self.srm3(y, f3)
        y2, g2 = self.srm2(g3, f2)
        y1, _ = self.srm1(g2, f1)
        assert y1 is not None
        return y3, y2, y1
