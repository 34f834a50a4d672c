"""The assembled MT-CP model (SPEC §3).

Data flow for task t (strides relative to the input, widths of the paper preset)::

    image [3 @ 1]
      -> backbone -> R [256 @ 1/4]                                  (shared)
      -> TaskDecoder_t -> X_t [256 @ 1/4], F1 [256 @ 1/4], F2 [512 @ 1/8], F3 [1024 @ 1/16]
      -> CFM_t(X_t, X_others) -> Y_t [256 @ cfm_stride]             (cfm=True, >= 2 tasks)
      -> TraceBack_t(Y_t, F1..F3) -> y3 [256 @ 1/16], y2 [256 @ 1/8], y1 [256 @ 1/4]
      -> FinalHead_t(y1) -> "t" at input size
      -> AuxHead_t(y3), AuxHead_t(y2) -> "t_s16", "t_s8"            (deep supervision, train)

Switches: ``cfm=False`` (or one task) uses Y_t = X_t; ``traceback=False`` puts the final
head on Y_t and the deep-supervision heads on F3 and F2.

``release_heads`` (default ``"auto"`` in the ``*_paper`` presets, None elsewhere) selects the
released network where mtcp departs from it on purpose: its final heads (see
:mod:`mtcp.models.heads`), deep-supervision heads without the redundant first bias, and CBAM
BatchNorm momentum 0.01. mtcp's own choices (one resize, one head for every task, momentum 0.1
so that short trainings settle their statistics) stay the default of the other presets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from mtcp.errors import MtcpError
from mtcp.models.attention import RELEASE_CBAM_MOMENTUM, check_attention_impl
from mtcp.models.backbones import build_backbone
from mtcp.models.base import DenseModel
from mtcp.models.coherence import CoherenceFusion
from mtcp.models.decoder import TaskDecoder
from mtcp.models.heads import DEPTH_INIT, AuxHead, final_head, output_bias, release_head_set
from mtcp.models.ops import match_grad_strides
from mtcp.models.traceback import TraceBack

CFM_STRIDES = (4, 8, 16)


class MTCP(DenseModel):
    """Multi-task model with per-task Swin decoders, Coherence Fusion and trace-back.

    Args:
        tasks: task names or ``{task: channels}`` (see :func:`mtcp.tasks.resolve_tasks`).
        backbone: a timm model name (``features_only``) or ``"mask2former_swin_small"``.
        channels: width of R, X_t, Y_t and the prediction features y (256 in the paper).
        decoder_dims: task decoder stage widths at 1/4, 1/8, 1/16; ``decoder_dims[0]`` must
            equal ``channels``.
        decoder_depths: Swin blocks per decoder stage.
        decoder_heads: attention heads per decoder stage (an int for all stages).
        window_size: Swin window size of the decoders.
        mlp_ratio: Swin MLP expansion of the decoders.
        cfm: use the Coherence Fusion Module (skipped anyway with a single task).
        traceback: use the SRM trace-back chain.
        deep_supervision: add the ``"<task>_s16"`` and ``"<task>_s8"`` outputs in train mode.
        cfm_stride: resolution of the CFM attention: 4 (released), 8 or 16.
        attention_impl: ``"auto"``, ``"dense"`` or ``"chunked"`` CFM attention.
        attention_chunk: query chunk size of the chunked attention; ``None`` picks one per
            device and batch (see :func:`mtcp.models.attention.auto_chunk_size`).
        cbam_reduction: channel reduction of every CBAM's MLP.
        min_size: smallest accepted image side in pixels.
        depth_init: initial bias (metres) of the depth output layers, final and deep
            supervision (see :data:`mtcp.models.heads.DEPTH_INIT`).
        release_heads: None (mtcp's heads), ``"nyud"`` / ``"pascal"`` (the released network's
            heads of that dataset, its CBAM momentum 0.01, deep-supervision heads without first
            bias) or ``"auto"`` (``"pascal"`` when human_parts or sal is a task, else
            ``"nyud"``); see :mod:`mtcp.models.heads`.
        grad_checkpointing: recompute the backbone and the decoders' Swin blocks in backward
            instead of storing their activations (same function; ~45% less training memory
            for ``mtcp_paper``, a few % more time). Modules with BatchNorm are never
            recomputed, so running statistics are updated once.
        pretrained: load pretrained backbone weights (timm / Hugging Face; needs the network).
        backbone_kwargs: extra keyword arguments for the backbone constructor.
    """

    def __init__(
        self,
        tasks: Any,
        backbone: str = "convnext_atto",
        channels: int = 256,
        decoder_dims: Sequence[int] = (256, 512, 1024),
        decoder_depths: Sequence[int] = (1, 2, 1),
        decoder_heads: int | Sequence[int] = 2,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        cfm: bool = True,
        traceback: bool = True,
        deep_supervision: bool = True,
        cfm_stride: int = 4,
        attention_impl: str = "auto",
        attention_chunk: int | None = None,
        cbam_reduction: int = 16,
        min_size: int = 64,
        depth_init: float | None = DEPTH_INIT,
        release_heads: str | None = None,
        grad_checkpointing: bool = False,
        pretrained: bool = False,
        backbone_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(tasks, min_size)
        if cfm_stride not in CFM_STRIDES:
            raise MtcpError(f"cfm_stride must be one of {CFM_STRIDES}, got {cfm_stride!r}")
        check_attention_impl(attention_impl)
        if len(decoder_dims) != 3 or len(decoder_depths) != 3:
            raise MtcpError(
                f"the task decoder has 3 stages: decoder_dims and decoder_depths need 3 values, "
                f"got {list(decoder_dims)} and {list(decoder_depths)}"
            )
        names = list(self.tasks)
        self.head_set = release_head_set(release_heads, self.tasks)
        momentum = RELEASE_CBAM_MOMENTUM if self.head_set else 0.1
        self.use_traceback = bool(traceback)
        self.deep_supervision = bool(deep_supervision)
        self.backbone = build_backbone(backbone, channels, pretrained, backbone_kwargs)
        self.decoders = nn.ModuleDict(
            {
                t: TaskDecoder(
                    channels,
                    decoder_dims,
                    decoder_depths,
                    decoder_heads,
                    window_size,
                    mlp_ratio,
                    fpn_channels=channels,
                )
                for t in names
            }
        )
        # CFM partners of each task, in task order; a single task has none: CFM skipped
        self.partners = {t: [a for a in names if a != t] for t in names}
        self.cfm = nn.ModuleDict(
            {
                t: CoherenceFusion(
                    channels,
                    len(names) - 1,
                    cbam_reduction,
                    cfm_stride // 4,
                    attention_impl,
                    attention_chunk,
                    momentum,
                )
                for t in names
                if cfm and len(names) > 1
            }
        )
        if self.use_traceback:
            self.traceback = nn.ModuleDict(
                {
                    t: TraceBack(
                        channels,
                        decoder_dims,
                        channels,
                        self.deep_supervision,
                        cbam_reduction,
                        momentum,
                    )
                    for t in names
                }
            )
            aux_in = (channels, channels)
        else:
            aux_in = (decoder_dims[2], decoder_dims[1])
        bias = {t: output_bias(t, depth_init) for t in names}
        self.heads = nn.ModuleDict(
            {t: final_head(t, channels, c, self.head_set, bias[t]) for t, c in self.tasks.items()}
        )
        if self.deep_supervision:
            first_bias = self.head_set is None
            self.aux_heads = nn.ModuleDict(
                {
                    t: nn.ModuleList(AuxHead(i, c, channels, bias[t], first_bias) for i in aux_in)
                    for t, c in self.tasks.items()
                }
            )
        self.set_grad_checkpointing(grad_checkpointing)
        match_grad_strides(self)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Switch activation checkpointing of the backbone and the task decoders."""
        self.backbone.set_grad_checkpointing(enable)
        for decoder in self.decoders.values():
            decoder.set_grad_checkpointing(enable)

    def predict(self, image: Tensor) -> dict[str, Tensor]:
        """Maps at their own strides for a padded image.

        Shapes: ``image [B, 3, Hp, Wp]`` -> ``{"t": [B, C_t @ 1/4, or finer with a release
        head that upsamples],
        "t_s16": [B, C_t @ 1/16], "t_s8": [B, C_t @ 1/8]}``.
        """
        r = self.backbone(image)
        decoded = {t: decoder(r) for t, decoder in self.decoders.items()}
        out: dict[str, Tensor] = {}
        for t, (x, feats) in decoded.items():
            if t in self.cfm:
                x = self.cfm[t](x, [decoded[a][0] for a in self.partners[t]])
            if self.use_traceback:
                y16, y8, y = self.traceback[t](x, feats)
            else:
                y16, y8, y = feats[2], feats[1], x
            out[t] = self.heads[t](y)
            if self.deep_supervision and self.training:
                head16, head8 = self.aux_heads[t]
                out[f"{t}_s16"] = head16(y16)
                out[f"{t}_s8"] = head8(y8)
        return out
