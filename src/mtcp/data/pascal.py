"""PASCAL-Context in the PASCAL_MT layout (SPEC §2.2).

=============  ==========================================================================
task           file
=============  ==========================================================================
image          ``JPEGImages/<id>.jpg``
semseg         ``semseg/pascal-context/<id>.png`` (21 classes incl. background, 255 ignore)
human_parts    ``human_parts/<id>.mat`` (PASCAL-Part ``anno`` struct → 6 part groups)
sal            ``sal_distill/<id>.png`` (salient where value/255 > 0.5)
normals        ``normals_distill/<id>.png`` (2·value/255 − 1, z towards the camera)
edge           ``pascal-context/trainval/<id>.mat`` (``LabelMap``; see :func:`label_boundaries`)
splits         ``ImageSets/Context/{train,val}.txt``
=============  ==========================================================================

Normals are invalid (zero) where far from unit length and on every pixel whose ``LabelMap`` id
is not one of the 170 PASCAL-Context classes that also exist indoors
(:func:`~mtcp.data.layouts.pascal_normals_valid_classes`; SPEC §2.2). Intrinsics are unknown
(NaN).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from mtcp.data import layouts
from mtcp.data.base import FolderDataset
from mtcp.data.files import check_classes, decode_binary, decode_png_normals, read_mat, read_png
from mtcp.errors import MtcpError
from mtcp.tasks import IGNORE_INDEX


def _structs(value: object) -> list:
    """A MATLAB struct array loaded with ``squeeze_me`` as a list (empty when ``[]``)."""
    arr = np.atleast_1d(value)
    return [] if arr.dtype != object else list(arr.ravel())


def human_parts_from_anno(anno: object, size: tuple[int, int], path: Path) -> np.ndarray:
    """Paint the 6 human-part groups of a PASCAL-Part ``anno`` struct (uint8 ``[H, W]``).

    Only objects of class 15 (person) with a non-empty mask count; parts are painted in file
    order (later ones win), person pixels outside every part are background (0), and an image
    without a counted person is all 255.
    """
    out = np.zeros(size, dtype=np.uint8)
    people = 0
    for obj in _structs(getattr(anno, "objects", None)):
        mask = np.asarray(obj.mask)
        if int(np.asarray(obj.class_ind).ravel()[0]) != layouts.PASCAL_PERSON or not mask.any():
            continue
        people += 1
        for part in _structs(getattr(obj, "parts", None)):
            name = str(part.part_name)
            if name not in layouts.PASCAL_PART_GROUPS:
                raise MtcpError(
                    f"{path}: unknown person part {name!r}; expected one of "
                    f"{', '.join(layouts.PASCAL_PART_GROUPS)}"
                )
            part_mask = np.asarray(part.mask)
            if part_mask.shape != size:
                raise MtcpError(
                    f"{path}: human_parts mask of {name!r} is {part_mask.shape}, expected {size}"
                )
            out[part_mask > 0] = layouts.PASCAL_PART_GROUPS[name]
    if people == 0:
        out[:] = IGNORE_INDEX
    return out


def label_boundaries(label_map: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundaries of a label map (uint8 ``[H, W]``, 1 on a boundary).

    A pixel is a boundary when its label differs from its right or lower neighbour. This is
    already one pixel thin; the MTI-Net code instead thins ``|Laplacian(LabelMap)| > 0``, which
    marks the same changes up to a one-pixel shift.
    """
    edge = np.zeros(label_map.shape, dtype=bool)
    edge[:, :-1] |= label_map[:, :-1] != label_map[:, 1:]
    edge[:-1, :] |= label_map[:-1, :] != label_map[1:, :]
    return edge.astype(np.uint8)


def _valid_normal_ids() -> np.ndarray:
    return np.fromiter(layouts.pascal_normals_valid_classes(), dtype=np.int64)


class PascalDataset(FolderDataset):
    """PASCAL-Context with the PASCAL_MT labels (``val`` is the standard test split)."""

    file_layout = layouts.PASCAL_MT
    layout = file_layout.name
    normals_signs = file_layout.normals_signs
    default_tasks = ("semseg", "human_parts", "sal", "normals", "edge")
    train_recipe = "pascal_train"
    test_size = (512, 512)
    metrics_dataset = "pascal"
    signature = "JPEGImages/ + ImageSets/Context/ (PASCAL_MT)"

    @classmethod
    def matches(cls, root: Path) -> bool:
        return (root / "JPEGImages").is_dir() and (root / "ImageSets" / "Context").is_dir()

    default_classes: ClassVar[dict[str, int]] = {"semseg": 21, "human_parts": 7}
    class_names: ClassVar[dict[str, list[str]]] = {"semseg": layouts.PASCAL_CLASSES}

    def decode(self, task: str, path: Path, size: tuple[int, int]) -> np.ndarray:
        if task == "semseg":
            return check_classes(read_png(path, task), self.tasks[task], path, task)
        if task == "sal":
            return decode_binary(read_png(path, task), path, task, png=True)
        if task == "normals":
            normals = decode_png_normals(read_png(path, task), path)
            edge_path = self.root / self.file_layout.labels["edge"].format(id=path.stem)
            label_map = self._label_map(edge_path, "normals")
            if label_map.shape != normals.shape[:2]:
                raise MtcpError(
                    f"{edge_path}: LabelMap is {label_map.shape[0]}x{label_map.shape[1]} but "
                    f"the normals {path} are {normals.shape[0]}x{normals.shape[1]}; expected "
                    "the same size"
                )
            normals[~np.isin(label_map, _valid_normal_ids())] = 0
            return normals
        if task == "edge":
            return label_boundaries(self._label_map(path, task))
        mat = read_mat(path, task, squeeze_me=True, struct_as_record=False)
        if "anno" not in mat:
            raise MtcpError(f"{path}: expected a PASCAL-Part 'anno' struct for human_parts")
        try:
            return human_parts_from_anno(mat["anno"], size, path)
        except AttributeError as err:
            raise MtcpError(f"{path}: malformed PASCAL-Part 'anno' struct ({err})") from None

    def _label_map(self, path: Path, task: str) -> np.ndarray:
        """The ``LabelMap`` of a PASCAL-Context ``.mat`` (edge and normals both need it)."""
        label_map = read_mat(path, task).get("LabelMap")
        if label_map is None or np.ndim(label_map) != 2:
            raise MtcpError(f"{path}: expected a 2-D 'LabelMap' variable for {task}")
        return np.asarray(label_map)
