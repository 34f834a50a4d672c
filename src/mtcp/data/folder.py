"""Users' own data (SPEC §2.3): a folder of images plus one folder per task.

Layout::

    root/
      dataset.yaml            (or dataset.yml / dataset.json, see below)
      images/<stem>.jpg|png
      <task>/<stem>.png|npy   one folder per task, same stem as the image
      splits/<split>.txt      optional, one stem per line

``dataset.yaml``::

    tasks: [semseg, depth, normals]        # tasks labelled in this folder
    classes:
      semseg: [wall, floor, chair]         # class names; their count is the number of classes
    depth:
      units: mm                            # m (default), cm or mm; or scale: metres per unit
    normals:
      z: towards_camera                    # forward (default: mtcp's frame) or towards_camera
    camera:                                # optional pinhole camera of the images
      fx: 518.9
      fy: 519.5
      cx: 325.6
      cy: 253.7
      height: 480                          # image size these values refer to (default: as is)
      width: 640
    splits:                                # optional: split → file (relative) or list of stems
      train: splits/train.txt

Label files: class maps (PNG/NPY integers, 255 = ignore); depth (NPY float or 16-bit PNG,
times the depth scale, 0 = invalid); normals (NPY ``[H, W, 3]`` unit vectors, or PNG
``2·v/255 − 1``; x right, y down and z as ``normals.z`` says, converted to mtcp's z forward);
edge / sal (PNG ``v/255`` or NPY in ``[0, 1]``, 255 = ignore). A task may be missing for some
images (partial labels): those samples have ``labelled[task] = False`` and their loss is
masked.

Splits: ``splits[<split>]`` in the config, else ``splits/<split>.txt``; ``"all"`` is every
image, and so is ``"train"`` when the folder defines no split at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mtcp.data.base import FolderDataset
from mtcp.data.files import (
    check_classes,
    decode_binary,
    decode_depth,
    decode_npy_normals,
    decode_png_normals,
    read_npy,
    read_png,
    read_split,
)
from mtcp.data.layouts import TOWARDS_CAMERA
from mtcp.errors import MtcpError
from mtcp.geometry import scale_intrinsics
from mtcp.tasks import get_task

CONFIG_NAMES = ("dataset.yaml", "dataset.yml", "dataset.json")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
LABEL_EXTS = (".png", ".npy")
DEPTH_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
#: ``normals.z`` of ``dataset.yaml`` → signs from the stored normals to mtcp's frame.
NORMALS_Z = {"forward": (1, 1, 1), "towards_camera": TOWARDS_CAMERA}


def find_config(root: Path) -> Path | None:
    """The dataset description file of an own-data folder, if any."""
    return next((root / n for n in CONFIG_NAMES if (root / n).is_file()), None)


def load_config(path: Path) -> dict[str, Any]:
    """Parse ``dataset.yaml`` / ``dataset.json`` into a dict."""
    try:
        text = path.read_text()
        config = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise MtcpError(f"{path}: cannot parse the dataset description ({err})") from None
    if not isinstance(config, dict) or not config.get("tasks"):
        raise MtcpError(f"{path}: expected a mapping with a non-empty 'tasks' entry")
    return config


class OwnDataset(FolderDataset):
    """An own-data folder described by ``dataset.yaml`` (see the module docstring).

    ``tasks=None`` selects every task of the description. Attributes: ``class_names``
    (task → list of names) and ``config`` (the parsed description).
    """

    layout = "own"
    partial_labels = True
    signature = "images/ + dataset.yaml (own data)"

    @classmethod
    def matches(cls, root: Path) -> bool:
        return find_config(root) is not None

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        tasks: Iterable[str] | Mapping[str, int] | None = None,
        **kwargs: Any,
    ):
        root = Path(root)
        path = find_config(root)
        if path is None:
            raise MtcpError(f"{root}: no {' / '.join(CONFIG_NAMES)} describing the dataset")
        self.config_path = path
        self.config = load_config(path)
        known = list(self.config["tasks"])
        self.class_names: dict[str, list[str]] = {
            t: [str(n) for n in names] for t, names in (self.config.get("classes") or {}).items()
        }
        self.default_classes = {t: len(n) for t, n in self.class_names.items()}
        for t in known:
            if get_task(t).kind == "classes" and t not in self.class_names:
                raise MtcpError(f"{path}: task {t!r} needs its class names under 'classes'")
        tasks = known if tasks is None else tasks
        missing = [t for t in tasks if t not in known]
        if missing:
            raise MtcpError(f"{path}: task(s) {missing} not labelled here; available: {known}")
        self.depth_scale = self._depth_scale()
        self.normals_signs = self._normals_signs()
        images = root / "images"
        if not images.is_dir():
            raise MtcpError(f"{images}: image folder is missing")
        self._images = {
            p.stem: p for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_EXTS
        }
        super().__init__(root, split, tasks, **kwargs)

    def _depth_scale(self) -> float:
        depth = self.config.get("depth") or {}
        if "scale" in depth:
            return float(depth["scale"])
        units = depth.get("units", "m")
        if units not in DEPTH_UNITS:
            raise MtcpError(
                f"{self.config_path}: depth units {units!r} unknown; use one of "
                f"{', '.join(DEPTH_UNITS)} or give 'scale' (metres per stored unit)"
            )
        return DEPTH_UNITS[units]

    def _normals_signs(self) -> tuple[int, int, int]:
        z = (self.config.get("normals") or {}).get("z", "forward")
        if z not in NORMALS_Z:
            raise MtcpError(
                f"{self.config_path}: normals z {z!r} unknown; expected one of "
                f"{', '.join(NORMALS_Z)} (the direction the stored z axis points)"
            )
        return NORMALS_Z[z]

    def split_ids(self, split: str) -> list[str]:
        splits = self.config.get("splits") or {}
        if split in splits:
            entry = splits[split]
            if isinstance(entry, list):
                return [str(s) for s in entry]
            return read_split(self.root / str(entry))
        no_splits = not splits and not (self.root / "splits").is_dir()
        if split == "all" or (split == "train" and no_splits):
            if not self._images:
                raise MtcpError(f"{self.root / 'images'}: no .jpg/.png image found")
            return list(self._images)
        return read_split(self.root / "splits" / f"{split}.txt")

    def files(self, sample_id: str) -> dict[str, Path]:
        out = {"image": self._images.get(sample_id, self.root / "images" / f"{sample_id}.png")}
        for task in self.tasks:
            candidates = [self.root / task / f"{sample_id}{ext}" for ext in LABEL_EXTS]
            out[task] = next((p for p in candidates if p.is_file()), candidates[0])
        return out

    def decode(self, task: str, path: Path, size: tuple[int, int]) -> np.ndarray:
        png = path.suffix == ".png"
        value = read_png(path, task) if png else read_npy(path, task)
        kind = get_task(task).kind
        if kind == "classes":
            return check_classes(value, self.tasks[task], path, task)
        if kind == "depth":
            return decode_depth(value, path, self.depth_scale)
        if kind == "normals":
            return decode_png_normals(value, path) if png else decode_npy_normals(value, path)
        return decode_binary(value, path, task, png=png)

    def intrinsics(self, size: tuple[int, int]) -> np.ndarray:
        cam = self.config.get("camera")
        if not cam:
            return super().intrinsics(size)
        try:
            values = [float(cam[k]) for k in ("fx", "fy", "cx", "cy")]
        except (KeyError, TypeError, ValueError):
            raise MtcpError(f"{self.config_path}: camera needs numeric fx, fy, cx, cy") from None
        ref = (int(cam.get("height", size[0])), int(cam.get("width", size[1])))
        return scale_intrinsics(values, ref, size)
