"""NYUD-v2 in its two on-disk layouts (SPEC §2.1): NYUD_MT and the ATRC ``NYUDv2``.

Both keep ``images/``, one folder per task and ``gt_sets/{train,val}.txt`` (``val`` is the
standard 654-image test split); the file paths are those of :mod:`mtcp.data.layouts`. They
differ in file formats:

=============  =========================  ===================================
task           NYUD_MT                    NYUDv2 (ATRC lineage)
=============  =========================  ===================================
image          ``images/<id>.jpg``        ``images/<id>.png``
semseg         ``segmentation/<id>.png``  ``segmentation/<id>.png``
depth          ``depth/<id>.npy``         ``depth/<id>.npy``
normals        ``normals/<id>.npy``       ``normals/<id>.png`` (2·v/255 − 1)
edge           ``edge/<id>.npy`` (0/1)    ``edge/<id>.png`` (0/255)
=============  =========================  ===================================

Semseg files store ``0`` = void and ``1..40`` = classes; samples hold ``0..39`` and void as
255. Normals files follow the NYU Depth v2 frame (x right, y down, z towards the camera;
:data:`~mtcp.data.layouts.TOWARDS_CAMERA`) and are turned into mtcp's (z forward) on load.
Samples carry the NYUD Kinect intrinsics scaled to the image size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np

from mtcp.data import layouts
from mtcp.data.base import FolderDataset
from mtcp.data.files import (
    decode_binary,
    decode_depth,
    decode_npy_normals,
    decode_png_normals,
    read_npy,
    read_png,
    shift_void,
)
from mtcp.errors import MtcpError
from mtcp.geometry import nyud_intrinsics


def _image_suffixes(root: Path) -> set[str] | None:
    """Suffixes of ``root/images`` when ``root`` has the NYUD folders, else None."""
    if not ((root / "gt_sets").is_dir() and (root / "images").is_dir()):
        return None
    with os.scandir(root / "images") as entries:
        exts = {Path(e.name).suffix.lower() for e in entries}
    if not exts & {".jpg", ".png"}:
        raise MtcpError(f"{root / 'images'}: NYUD layout without .jpg or .png images")
    return exts


class NYUDDataset(FolderDataset):
    """NYUD-v2 in the NYUD_MT layout (jpg images, npy depth/normals/edge)."""

    file_layout = layouts.NYUD_MT
    layout = file_layout.name
    normals_signs = file_layout.normals_signs
    default_tasks = ("semseg", "depth", "normals", "edge")
    default_classes: ClassVar[dict[str, int]] = {"semseg": 40}
    test_size = (480, 640)
    signature = "images/ + gt_sets/ (NYUD)"

    @classmethod
    def matches(cls, root: Path) -> bool:
        exts = _image_suffixes(root)
        return exts is not None and ".jpg" in exts

    def decode(self, task: str, path: Path, size: tuple[int, int]) -> np.ndarray:
        png = path.suffix == ".png"
        value = read_png(path, task) if png else read_npy(path, task)
        if task == "semseg":
            return shift_void(value, self.tasks[task], path, task)
        if task == "depth":
            return decode_depth(value, path)
        if task == "normals":
            return decode_png_normals(value, path) if png else decode_npy_normals(value, path)
        return decode_binary(value, path, task, png=png)

    def intrinsics(self, size: tuple[int, int]) -> np.ndarray:
        return nyud_intrinsics(size)


class NYUDv2Dataset(NYUDDataset):
    """NYUD-v2 in the ATRC ``NYUDv2`` layout (png images, png normals and edges)."""

    file_layout = layouts.NYUDV2
    layout = file_layout.name
    normals_signs = file_layout.normals_signs

    @classmethod
    def matches(cls, root: Path) -> bool:
        exts = _image_suffixes(root)
        return exts is not None and ".png" in exts and ".jpg" not in exts
