"""The synthetic scenes as a torch ``Dataset`` of tensor samples."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils.data import Dataset

from mtcp.data.sample import to_tensor
from mtcp.data.synthetic.palette import SYNTHETIC_CLASSES
from mtcp.data.synthetic.scene import check_size, render_scene
from mtcp.errors import MtcpError


class SyntheticScenes(Dataset):
    """``n`` synthetic scenes as a torch Dataset of tensor samples (:func:`to_tensor`).

    Args:
        n: number of scenes; item ``i`` is ``render_scene(seed, i, size)``.
        size: ``(H, W)`` in pixels.
        seed: scene family.
        tasks: tasks put into each sample (see :mod:`mtcp.tasks`).
        transform: applied to the raw numpy sample before conversion to tensors.
        person_prob: probability of people in a scene; by default 0.5 when ``human_parts``
            is among ``tasks`` and 0 otherwise (NYUD-like indoor scenes).
    """

    def __init__(
        self,
        n: int,
        size: tuple[int, int] = (240, 320),
        seed: int = 0,
        tasks: Iterable[str] = ("semseg", "depth", "normals", "edge", "sal"),
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        person_prob: float | None = None,
    ) -> None:
        if int(n) < 1:
            raise MtcpError(f"synthetic scenes: n must be >= 1, got {n}")
        self.n = int(n)
        self.size = check_size(size)
        self.seed = int(seed)
        self.tasks = tuple(tasks)
        self.transform = transform
        if person_prob is None:
            person_prob = 0.5 if "human_parts" in self.tasks else 0.0
        self.person_prob = float(person_prob)
        self.classes = list(SYNTHETIC_CLASSES)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | Any]:
        if not 0 <= index < self.n:
            raise IndexError(f"scene {index} out of range [0, {self.n})")
        raw = render_scene(self.seed, index, self.size, person_prob=self.person_prob)
        if self.transform is not None:
            raw = self.transform(raw)
        return to_tensor(raw, self.tasks)
