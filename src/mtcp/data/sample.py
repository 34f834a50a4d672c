"""Raw samples (numpy, what loaders and transforms produce) and their tensor form.

A *raw sample* is a dict of numpy arrays in image layout, the form that file loaders,
the synthetic renderer and the joint transforms exchange:

==============  ==========================  ===============================================
key             dtype / shape               meaning
==============  ==========================  ===============================================
``image``       uint8 [H, W, 3]             RGB
``semseg``      uint8 or int [H, W]         class id, 255 = ignore
``human_parts`` uint8 or int [H, W]         part id (0 = background), 255 = ignore
``depth``       float32 [H, W]              metres, 0 = invalid
``normals``     float32 [H, W, 3]           unit camera-frame vectors, zero = invalid
``edge``        uint8 [H, W]                1 boundary, 0 not, 255 = ignore
``sal``         float32 [H, W]              saliency in [0, 1], 255 = ignore
``intrinsics``  float32 [4]                 fx, fy, cx, cy (NaN when unknown)
``id``          str                         sample name (file stem)
==============  ==========================  ===============================================

A task key is absent when the sample has no label for it. :func:`to_tensor` turns a raw
sample into the tensor conventions of :mod:`mtcp.tasks`, filling absent labels with ignore
values and recording them in ``labelled``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from mtcp.tasks import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, get_task

UNKNOWN_INTRINSICS = np.full(4, np.nan, dtype=np.float32)


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """uint8 RGB ``[H, W, 3]`` → float32 ``[3, H, W]`` normalised with ImageNet mean/std."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def empty_target(task: str, size: tuple[int, int]) -> torch.Tensor:
    """An all-ignore target of ``task`` for an image of ``size = (H, W)``."""
    h, w = size
    kind = get_task(task).kind
    if kind == "classes":
        return torch.full((h, w), IGNORE_INDEX, dtype=torch.int64)
    if kind == "depth":
        return torch.zeros(1, h, w)
    if kind == "normals":
        return torch.zeros(3, h, w)
    return torch.full((1, h, w), float(IGNORE_INDEX))


def target_to_tensor(task: str, value: np.ndarray) -> torch.Tensor:
    """One raw label map (see module docstring) → its tensor convention."""
    kind = get_task(task).kind
    value = np.ascontiguousarray(value)
    if kind == "classes":
        return torch.from_numpy(value.astype(np.int64))
    if kind == "normals":
        return torch.from_numpy(value.astype(np.float32)).permute(2, 0, 1).contiguous()
    return torch.from_numpy(value.astype(np.float32))[None]


def to_tensor(raw: dict[str, Any], tasks: Iterable[str]) -> dict[str, Any]:
    """Raw sample → tensor sample with every task of ``tasks`` present (ignore when absent)."""
    size = raw["image"].shape[:2]
    out: dict[str, Any] = {"image": normalize_image(raw["image"]), "labelled": {}}
    for task in tasks:
        if raw.get(task) is None:
            out[task] = empty_target(task, size)
            out["labelled"][task] = False
        else:
            out[task] = target_to_tensor(task, raw[task])
            out["labelled"][task] = True
    intr = raw.get("intrinsics")
    out["intrinsics"] = torch.from_numpy(
        np.asarray(UNKNOWN_INTRINSICS if intr is None else intr, dtype=np.float32).copy()
    )
    out["id"] = str(raw.get("id", ""))
    return out
