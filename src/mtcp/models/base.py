"""What every mtcp model shares: input checks, padding to the backbone's multiple, bringing
the output maps back to the input size, the shared representation (:meth:`forward_features`),
the data config, and ``save_pretrained`` / ``from_pretrained``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtcp.errors import MtcpError
from mtcp.models.ops import resize
from mtcp.tasks import IMAGENET_MEAN, IMAGENET_STD, resolve_tasks

M = TypeVar("M", bound="DenseModel")


class DenseModel(nn.Module):
    """Base of the multi-task models: ``forward(image) -> {output name: map}``.

    Subclasses build ``self.backbone`` (with ``pad_multiple``) and implement
    :meth:`predict`, which returns maps at any stride of the padded image.

    Attributes:
        tasks: ``{task: output channels}`` in a stable order.
        min_size: smallest accepted image side in pixels.
        config: JSON-serialisable dict such that ``create_model(**config)`` rebuilds the
            architecture (set by :func:`mtcp.models.registry.create_model`).
        data_config: what the model expects of its input (see :attr:`data_config`).
    """

    backbone: nn.Module

    def __init__(self, tasks: Any, min_size: int = 64) -> None:
        super().__init__()
        self.tasks: dict[str, int] = resolve_tasks(tasks)
        self.min_size = int(min_size)
        self.config: dict[str, Any] = {}
        self._input_size: tuple[int, int] | None = None
        self._intrinsics: tuple[float, float, float, float] | None = None

    @property
    def data_config(self) -> dict[str, Any]:
        """``{"input_size": (H, W) | None, "mean": (r, g, b), "std": (r, g, b),
        "intrinsics": (fx, fy, cx, cy) | None}``.

        ``mean`` / ``std``: the normalisation of the RGB input in [0, 1] the backbone was built
        for (timm's ``pretrained_cfg``; ImageNet's for Mask2Former). ``input_size`` (pixels)
        and ``intrinsics`` (pixels, at ``input_size``) are those of the training data once set
        with :meth:`set_data_config`; None before.
        """
        mean, std = getattr(self.backbone, "norm_stats", (IMAGENET_MEAN, IMAGENET_STD))
        return {
            "input_size": self._input_size,
            "mean": tuple(float(v) for v in mean),
            "std": tuple(float(v) for v in std),
            "intrinsics": self._intrinsics,
        }

    def set_data_config(
        self,
        input_size: Sequence[int] | None = None,
        intrinsics: Sequence[float] | None = None,
    ) -> None:
        """Record the training input size ``(H, W)`` and camera ``(fx, fy, cx, cy)`` at that
        size (either may be None: unknown)."""
        if input_size is not None:
            if len(input_size) != 2 or min(int(v) for v in input_size) < self.min_size:
                raise MtcpError(
                    f"input_size must be (H, W) with both sides >= {self.min_size}; "
                    f"got {tuple(input_size)}"
                )
            input_size = (int(input_size[0]), int(input_size[1]))
        if intrinsics is not None:
            if len(intrinsics) != 4:
                raise MtcpError(f"intrinsics must be (fx, fy, cx, cy); got {tuple(intrinsics)}")
            intrinsics = tuple(float(v) for v in intrinsics)  # type: ignore[assignment]
        self._input_size = input_size  # type: ignore[assignment]
        self._intrinsics = intrinsics  # type: ignore[assignment]

    def predict(self, image: Tensor) -> Mapping[str, Tensor]:
        """Maps ``{name: [B, C, h, w]}`` for a padded image ``[B, 3, Hp, Wp]``."""
        raise NotImplementedError

    def check_image(self, image: Tensor) -> None:
        """Raise :class:`MtcpError` unless ``image`` is a float ``[B, 3, H, W]`` batch that is
        at least ``min_size`` on each side."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise MtcpError(
                "the model expects normalised RGB images [B, 3, H, W]; "
                f"got shape {tuple(image.shape)}"
            )
        if not torch.is_floating_point(image):
            raise MtcpError(f"the model expects a float image tensor; got {image.dtype}")
        if min(image.shape[-2:]) < self.min_size:
            raise MtcpError(
                f"image of size {tuple(image.shape[-2:])} is smaller than the model's minimum "
                f"{self.min_size}x{self.min_size} (H x W)"
            )

    def _pad(self, image: Tensor) -> Tensor:
        """Zero-pad (the mean colour after normalisation) at the bottom and right to a multiple
        of the backbone's stride."""
        h, w = image.shape[-2:]
        m = self.backbone.pad_multiple
        # always pad (a zero pad is a no-op) so that a traced graph does not freeze the branch
        return F.pad(image, (0, (m - w % m) % m, 0, (m - h % m) % m))

    def forward_features(self, image: Tensor) -> Tensor:
        """The shared representation R of a normalised image batch, before any task module.

        Shapes: ``image [B, 3, H, W]`` -> ``R [B, C, Hp / 4, Wp / 4]`` with ``Hp, Wp`` the
        padded size (multiples of ``backbone.pad_multiple``), ``C`` the model's ``channels``.
        """
        self.check_image(image)
        return self.backbone(self._pad(image))

    def save_pretrained(self, folder: str | os.PathLike[str]) -> None:
        """Write ``folder/config.json`` (model config, data config) and
        ``folder/model.safetensors``, each atomically (the Hugging Face Hub convention)."""
        # function-level: mtcp.models.pretrained builds models through the registry, which
        # imports this module
        from mtcp.models.pretrained import save_pretrained

        save_pretrained(self, folder)

    @classmethod
    def from_pretrained(
        cls: type[M], folder_or_hub_id: str | os.PathLike[str], **hub_kwargs: Any
    ) -> M:
        """Rebuild a model written by :meth:`save_pretrained` from a local folder or a Hugging
        Face Hub id (``hub_kwargs`` such as ``revision`` go to ``hf_hub_download``)."""
        from mtcp.models.pretrained import from_pretrained  # see save_pretrained

        model = from_pretrained(folder_or_hub_id, **hub_kwargs)
        if not isinstance(model, cls):
            raise MtcpError(
                f"{folder_or_hub_id}: holds a {type(model).__name__}, not a {cls.__name__}"
            )
        return model

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """Predict every task for a normalised image batch.

        The image is zero-padded (zero = the mean colour after normalisation) at the bottom and
        right to a multiple of the backbone's stride; every output map is resized bilinearly to
        the padded size and cropped back to ``H x W``.

        Shapes: ``image [B, 3, H, W]`` -> ``{name: [B, C_task, H, W]}``.
        """
        self.check_image(image)
        h, w = image.shape[-2:]
        image = self._pad(image)
        padded = image.shape[-2:]
        return {k: resize(v, padded)[..., :h, :w] for k, v in self.predict(image).items()}
