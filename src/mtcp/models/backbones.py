"""Backbones that turn a normalised image into the shared representation R (SPEC §3.1).

Every backbone here maps ``[B, 3, H, W]`` (H, W multiples of :attr:`pad_multiple`, ImageNet
normalised) to ``R [B, channels @ 1/4]``.

- :class:`TimmBackbone`: any timm model with ``features_only`` and features at strides
  4, 8, 16 and 32, followed by a small FPN pixel decoder.
- :class:`Mask2FormerBackbone`: Hugging Face ``Mask2FormerModel`` (Swin-S), with
  ``R = P * Σ_q M_q`` where P is ``pixel_decoder_last_hidden_state`` [256 @ 1/4] and M the last
  layer's ``masks_queries_logits`` [100 @ 1/4]. ``transformers`` is imported lazily.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import Tensor, nn

from mtcp.errors import MtcpError
from mtcp.models.decoder import FPN
from mtcp.tasks import IMAGENET_MEAN, IMAGENET_STD

FPN_STRIDES = (4, 8, 16, 32)
MASK2FORMER_PREFIX = "mask2former_"
# our name -> (hub checkpoint, Swin config of that checkpoint)
MASK2FORMER_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "mask2former_swin_small": (
        "facebook/mask2former-swin-small-ade-semantic",
        {
            "embed_dim": 96,
            "depths": [2, 2, 18, 2],
            "num_heads": [3, 6, 12, 24],
            "window_size": 7,
            "drop_path_rate": 0.3,
        },
    ),
}


class TimmBackbone(nn.Module):
    """timm ``features_only`` model + FPN pixel decoder.

    Shapes: image ``[B, 3, H, W]`` -> R ``[B, channels @ 1/4]``; features at 1/4..1/32 inside.
    """

    pad_multiple = 32

    def __init__(
        self,
        name: str,
        channels: int,
        pretrained: bool = False,
        backbone_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        try:
            self.body = timm.create_model(
                name, pretrained=pretrained, features_only=True, **(backbone_kwargs or {})
            )
        except RuntimeError as err:  # timm's message for unknown model names
            raise MtcpError(
                f"cannot build timm backbone {name!r}: {err}; "
                f"use a timm model name (timm.list_models()) or one of {sorted(MASK2FORMER_MODELS)}"
            ) from None
        reductions = list(self.body.feature_info.reduction())
        missing = [s for s in FPN_STRIDES if s not in reductions]
        if missing:
            raise MtcpError(
                f"timm backbone {name!r} has features at strides {reductions}; mtcp needs "
                f"strides {list(FPN_STRIDES)} (missing {missing})"
            )
        self.indices = [reductions.index(s) for s in FPN_STRIDES]
        feature_channels = self.body.feature_info.channels()
        self.nhwc = str(getattr(self.body, "output_fmt", "NCHW")).endswith("NHWC")
        self.pixel_decoder = FPN([feature_channels[i] for i in self.indices], channels)
        self.channels = channels
        cfg = getattr(self.body, "pretrained_cfg", None) or {}
        #: input normalisation (mean, std) of the timm weights (ImageNet's for most models)
        self.norm_stats = (
            tuple(cfg.get("mean", IMAGENET_MEAN)),
            tuple(cfg.get("std", IMAGENET_STD)),
        )

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the timm body in backward where timm supports it and the body has no
        BatchNorm (a recomputation would update its running statistics twice)."""
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.body.modules())
        if hasattr(self.body, "set_grad_checkpointing") and not has_bn:
            self.body.set_grad_checkpointing(enable)

    def forward(self, image: Tensor) -> Tensor:
        feats = self.body(image)
        feats = [feats[i] for i in self.indices]
        if self.nhwc:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        return self.pixel_decoder(feats)


def _unused_mask2former_parts(model: nn.Module) -> None:
    # Swin's final LayerNorm is not used by the backbone outputs: drop it (no dead parameters)
    swin = getattr(model.pixel_level_module.encoder, "swin", None)
    if swin is not None and isinstance(getattr(swin, "layernorm", None), nn.LayerNorm):
        swin.layernorm = nn.Identity()


def _overflow_checked_layers(model: nn.Module) -> list[nn.Module]:
    """Pixel-decoder encoder layers whose only training-mode behaviour, with zero dropout, is the
    overflow clamp that :meth:`Mask2FormerBackbone._clamp_overflow` reproduces."""
    layers = []
    for module in model.modules():
        if type(module).__name__ != "Mask2FormerPixelDecoderEncoderLayer":
            continue
        if getattr(module, "dropout", 1) == 0 and getattr(module, "activation_dropout", 1) == 0:
            layers.append(module)
    return layers


class Mask2FormerBackbone(nn.Module):
    """Hugging Face Mask2Former (Swin) producing ``R = P * Σ_q M_q``.

    ``pretrained=False`` builds the architecture from a config (no download);
    ``pretrained=True`` loads the ADE20K checkpoint with ``from_pretrained`` (needs the network
    or the Hugging Face cache). The class predictor is not part of ``Mask2FormerModel`` and the
    Swin's unused final LayerNorm is removed, so every parameter is used.

    Shapes: image ``[B, 3, H, W]`` -> R ``[B, channels @ 1/4]`` (``channels`` = the mask
    feature width, 256 for the checkpoint).
    """

    pad_multiple = 32

    def __init__(
        self,
        name: str = "mask2former_swin_small",
        channels: int = 256,
        pretrained: bool = False,
        num_queries: int = 100,
    ) -> None:
        super().__init__()
        if name not in MASK2FORMER_MODELS:
            raise MtcpError(
                f"unknown Mask2Former backbone {name!r}; accepted: {sorted(MASK2FORMER_MODELS)}"
            )
        try:
            from transformers import Mask2FormerConfig, Mask2FormerModel, SwinConfig
        except ImportError:
            raise MtcpError(
                f"backbone {name!r} needs Hugging Face transformers: "
                "pip install 'mtcp[mask2former]' (or pip install transformers)"
            ) from None
        checkpoint, swin = MASK2FORMER_MODELS[name]
        if pretrained:
            if channels != 256 or num_queries != 100:
                raise MtcpError(
                    f"pretrained {name!r} has 256 channels and 100 queries; "
                    f"got channels={channels}, num_queries={num_queries}"
                )
            self.model = Mask2FormerModel.from_pretrained(checkpoint)
        else:
            stages = ["stage1", "stage2", "stage3", "stage4"]
            config = Mask2FormerConfig(
                backbone_config=SwinConfig(**swin, out_features=stages),
                mask_feature_size=channels,
                num_queries=num_queries,
            )
            self.model = Mask2FormerModel(config)
        _unused_mask2former_parts(self.model)
        self.channels = channels
        self.norm_stats = (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))  # Swin-S ImageNet init
        self._overflow_layers = _overflow_checked_layers(self.model)
        for layer in self._overflow_layers:
            layer.register_forward_hook(self._clamp_overflow)

    def train(self, mode: bool = True) -> Mask2FormerBackbone:
        """Set the mode; the pixel decoder's encoder layers stay in eval mode (see
        :meth:`_clamp_overflow`: the same function, without their data-dependent branch)."""
        super().train(mode)
        for layer in self._overflow_layers:
            layer.train(False)
        return self

    def _clamp_overflow(self, layer: nn.Module, args: Any, outputs: tuple) -> tuple | None:
        """The training-mode guard of Hugging Face's pixel-decoder encoder layer, branch-free.

        In training that layer clamps its output to ``±(dtype max - 1000)`` when any value is not
        finite, via ``if not torch.isfinite(h).all()``: a host synchronisation and a
        ``torch.compile`` graph break per layer and step. The layers run in eval mode instead
        (their dropout probabilities are 0, so nothing else changes) and this hook applies the
        same clamp under the same condition with ``torch.where``.
        """
        if not self.training:
            return None
        hidden = outputs[0]
        limit = torch.finfo(hidden.dtype).max - 1000
        clamped = torch.where(
            torch.isfinite(hidden).all(), hidden, hidden.clamp(min=-limit, max=limit)
        )
        return (clamped, *outputs[1:])

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the Swin encoder in backward (LayerNorm only: exact, no statistics)."""
        encoder = self.model.pixel_level_module.encoder
        # transformers >= 5 renamed gradient_checkpointing_* to activation_checkpointing_*
        prefix = "activation" if hasattr(encoder, "activation_checkpointing_enable") else "gradient"
        if enable:
            getattr(encoder, f"{prefix}_checkpointing_enable")({"use_reentrant": False})
        else:
            getattr(encoder, f"{prefix}_checkpointing_disable")()

    def forward(self, image: Tensor) -> Tensor:
        out = self.model(pixel_values=image)
        gate = out.masks_queries_logits[-1].sum(dim=1, keepdim=True)  # [B, 1, H/4, W/4]
        return out.pixel_decoder_last_hidden_state * gate


def build_backbone(
    name: str,
    channels: int,
    pretrained: bool = False,
    backbone_kwargs: dict[str, Any] | None = None,
) -> TimmBackbone | Mask2FormerBackbone:
    """A Mask2Former backbone for names starting with ``mask2former_``, else a timm one."""
    if name.startswith(MASK2FORMER_PREFIX):
        return Mask2FormerBackbone(name, channels, pretrained, **(backbone_kwargs or {}))
    return TimmBackbone(name, channels, pretrained, backbone_kwargs)
