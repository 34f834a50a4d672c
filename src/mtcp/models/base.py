"""What every mtcp model shares: input checks, padding to the backbone's multiple, and
bringing the output maps back to the input size."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtcp.errors import MtcpError
from mtcp.models.ops import resize
from mtcp.tasks import resolve_tasks


class DenseModel(nn.Module):
    """Base of the multi-task models: ``forward(image) -> {output name: map}``.

    Subclasses build ``self.backbone`` (with ``pad_multiple``) and implement
    :meth:`predict`, which returns maps at any stride of the padded image.

    Attributes:
        tasks: ``{task: output channels}`` in a stable order.
        min_size: smallest accepted image side in pixels.
        config: JSON-serialisable dict such that ``create_model(**config)`` rebuilds the
            architecture (set by :func:`mtcp.models.registry.create_model`).
    """

    backbone: nn.Module

    def __init__(self, tasks: Any, min_size: int = 64) -> None:
        super().__init__()
        self.tasks: dict[str, int] = resolve_tasks(tasks)
        self.min_size = int(min_size)
        self.config: dict[str, Any] = {}

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

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """Predict every task for a normalised image batch.

        The image is zero-padded (zero = the mean colour after normalisation) at the bottom and
        right to a multiple of the backbone's stride; every output map is resized bilinearly to
        the padded size and cropped back to ``H x W``.

        Shapes: ``image [B, 3, H, W]`` -> ``{name: [B, C_task, H, W]}``.
        """
        self.check_image(image)
        h, w = image.shape[-2:]
        m = self.backbone.pad_multiple
        # always pad (a zero pad is a no-op) so that a traced graph does not freeze the branch
        image = F.pad(image, (0, (m - w % m) % m, 0, (m - h % m) % m))
        padded = image.shape[-2:]
        return {k: resize(v, padded)[..., :h, :w] for k, v in self.predict(image).items()}
