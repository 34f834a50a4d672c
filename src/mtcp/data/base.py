"""What every on-disk dataset shares: checked file reading, split files, error skipping.

A reader subclass of :class:`FolderDataset` says where each file of a sample lives
(:meth:`FolderDataset.files`) and how to decode it (:meth:`FolderDataset.decode`); this base
class checks the files (missing, unreadable, wrong size, label values outside the task's
classes), applies the joint transform and converts to tensors. Nothing is ever written into
the dataset folder, so read-only datasets work.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.io
import scipy.io.matlab
import torch
from PIL import Image, UnidentifiedImageError

from mtcp.data.layouts import Layout
from mtcp.data.sample import to_tensor
from mtcp.errors import MtcpError
from mtcp.tasks import IGNORE_INDEX, get_task, resolve_tasks

log = logging.getLogger(__name__)

Sample = dict[str, Any]
Transform = Callable[[Sample], Sample]

# --------------------------------------------------------------------------- file readers


def read_image(path: Path) -> np.ndarray:
    """RGB image → uint8 ``[H, W, 3]``; an unreadable file raises :class:`MtcpError`."""
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except FileNotFoundError:
        raise MtcpError(f"{path}: image file is missing") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise MtcpError(f"{path}: cannot read image ({err}); expected a JPEG or PNG") from None


def read_png(path: Path, task: str) -> np.ndarray:
    """A label PNG as stored (``uint8``/``uint16``, ``[H, W]`` or ``[H, W, 3]``)."""
    try:
        with Image.open(path) as img:
            return np.array(img)
    except FileNotFoundError:
        raise MtcpError(f"{path}: {task} label file is missing") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise MtcpError(f"{path}: cannot read {task} label PNG ({err})") from None


def read_npy(path: Path, task: str) -> np.ndarray:
    """A ``.npy`` label map (no pickles)."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise MtcpError(f"{path}: {task} label file is missing") from None
    except (OSError, ValueError, EOFError) as err:
        raise MtcpError(f"{path}: cannot read {task} .npy file ({err})") from None


def read_mat(path: Path, task: str, **kwargs: Any) -> dict[str, Any]:
    """A MATLAB ``.mat`` file as :func:`scipy.io.loadmat` (``kwargs``) returns it."""
    try:
        return scipy.io.loadmat(path, **kwargs)
    except FileNotFoundError:
        raise MtcpError(f"{path}: {task} label file is missing") from None
    except (
        OSError,
        ValueError,
        TypeError,
        NotImplementedError,
        scipy.io.matlab.MatReadError,
    ) as err:
        raise MtcpError(
            f"{path}: cannot read {task} .mat file ({err}); expected a MATLAB .mat file"
        ) from None


def file_size(path: Path) -> tuple[int, ...] | None:
    """Array shape of an image/PNG/NPY file read from its header only (``None`` if unknown)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape[:2])
    if suffix in (".png", ".jpg", ".jpeg"):
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    return None


# --------------------------------------------------------------------------- decoders


def shift_void(label: np.ndarray, classes: int, path: Path, task: str) -> np.ndarray:
    """NYUD semseg: stored ``0`` = void, ``1..C`` = classes ``0..C-1`` → void becomes 255."""
    check_classes(label, classes, path, task, offset=1)
    out = label.astype(np.int16) - 1
    out[(label == 0) | (label == IGNORE_INDEX)] = IGNORE_INDEX
    return out.astype(np.uint8)


def check_classes(
    label: np.ndarray, classes: int, path: Path, task: str, offset: int = 0
) -> np.ndarray:
    """Raise unless every value of a class map is a class id or 255 (ignore).

    Files store class ``c`` as ``c + offset``; values below ``offset`` mean void (NYUD: 1).
    """
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise MtcpError(
            f"{path}: {task} labels must be a single-channel integer map, got "
            f"{label.dtype} with shape {label.shape}"
        )
    top = classes + offset
    if label.size and (int(label.max()) >= top or int(label.min()) < 0):
        bad = label[((label >= top) | (label < 0)) & (label != IGNORE_INDEX)]
        if bad.size:
            value = int(bad[0])
            what = f" (class {value - offset})" if offset else ""
            void = f"{offset - 1} (void), " if offset else ""
            raise MtcpError(
                f"{path}: {task} label value {value}{what} is outside the task's {classes} "
                f"classes; expected {void}{offset} .. {top - 1} or {IGNORE_INDEX} (ignore)"
            )
    return label.astype(np.uint8)


def decode_png_normals(value: np.ndarray, path: Path) -> np.ndarray:
    """Normals PNG (``2·value/255 − 1``) → unit float32 ``[H, W, 3]``, invalid → zero.

    8-bit quantisation leaves valid vectors within ~1 % of unit length; pixels whose decoded
    length is far from 1 (e.g. stored as 0 or 128 grey for "no normal") are invalid.
    """
    if value.ndim != 3 or value.shape[2] < 3:
        raise MtcpError(f"{path}: normals PNG must be RGB, got shape {value.shape}")
    n = value[..., :3].astype(np.float32) * np.float32(2 / 255) - 1
    length = np.linalg.norm(n, axis=2, keepdims=True)
    ok = np.abs(length - 1) < 0.1
    return np.where(ok, n / np.maximum(length, 1e-6), 0).astype(np.float32)


def decode_npy_normals(value: np.ndarray, path: Path) -> np.ndarray:
    """Normals ``.npy`` (``[H, W, 3]`` unit vectors, zero = invalid) → float32."""
    if value.ndim != 3 or value.shape[2] != 3:
        raise MtcpError(f"{path}: normals must have shape [H, W, 3], got {value.shape}")
    n = value.astype(np.float32)
    if not np.isfinite(n.sum()):  # rare: find the bad pixels only then
        n[~np.isfinite(n).all(axis=2)] = 0
    return n


def decode_depth(value: np.ndarray, path: Path, scale: float = 1.0) -> np.ndarray:
    """Depth map (``[H, W]`` or ``[H, W, 1]``) times ``scale`` → metres, invalid → 0."""
    if value.ndim == 3 and value.shape[2] == 1:
        value = value[..., 0]
    if value.ndim != 2:
        raise MtcpError(f"{path}: depth must have shape [H, W], got {value.shape}")
    d = value.astype(np.float32)
    if scale != 1:
        d *= np.float32(scale)
    if not (np.isfinite(d.sum()) and d.min() >= 0):
        d[~np.isfinite(d) | (d < 0)] = 0
    return d


def decode_binary(value: np.ndarray, path: Path, task: str, png: bool) -> np.ndarray:
    """Edge / saliency map → 0/1, keeping 255 = ignore for ``.npy`` maps.

    PNG maps store ``value/255`` (positive when > 0.5); ``.npy`` maps store values in
    ``[0, 1]`` (positive when > 0.5) and may mark ignored pixels with 255.
    """
    if value.ndim == 3:
        value = value[..., 0]
    if value.ndim != 2:
        raise MtcpError(f"{path}: {task} must be a single-channel map, got {value.shape}")
    if png:
        return (value.astype(np.float32) > 127.5).astype(np.uint8)
    ignore = value == IGNORE_INDEX
    out = (value > 0.5).astype(np.uint8)
    out[ignore] = IGNORE_INDEX
    return out


def read_split(path: Path) -> list[str]:
    """Sample ids of a split file (one per line; blank lines ignored; duplicates dropped)."""
    if not path.is_file():
        raise MtcpError(f"{path}: split file is missing")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise MtcpError(f"{path}: split file lists no samples")
    return unique_ids(ids, path)


def unique_ids(ids: Iterable[Any], source: object) -> list[Any]:
    """``ids`` without repeats (first occurrence kept, order kept); repeats are logged.

    A split that lists an id twice would put it on both sides of the validation carve-out
    and count it twice in an evaluation, so every split passes through here. ``source``
    (the split file or folder) is named in the warning.
    """
    ids = list(ids)
    unique = list(dict.fromkeys(ids))
    if len(unique) < len(ids):
        counts: dict[Any, int] = {}
        for i in ids:
            counts[i] = counts.get(i, 0) + 1
        repeated = [f"{i!s} ({c}x)" for i, c in counts.items() if c > 1]
        shown = ", ".join(repeated[:10]) + (" ..." if len(repeated) > 10 else "")
        log.warning(
            "%s: %d id(s) listed more than once, each kept once: %s",
            source,
            len(repeated),
            shown,
        )
    return unique


# --------------------------------------------------------------------------- dataset


class FolderDataset(torch.utils.data.Dataset):
    """Base of the datasets read from a folder: raw reading, checks, transform, tensors.

    Items are tensor samples (:func:`mtcp.data.sample.to_tensor`) plus ``orig_size`` (int64
    ``[2]``, ``H, W`` of the image file) and ``valid_size`` (int64 ``[2]``, the top-left part
    of the returned image that holds the picture, less than its size only after
    :class:`~mtcp.data.transforms.PadTo`); see :func:`mtcp.data.transforms.restore_size`.

    Args:
        root: dataset folder (never written to).
        split: split name of the layout (e.g. ``"train"``, ``"val"``); ignored with ``ids``.
        tasks: task names or ``{task: classes}``; class counts default to the layout's.
        transform: joint transform of raw samples (e.g. a recipe of
            :mod:`mtcp.data.transforms`), ``None`` for none.
        skip_errors: drop samples whose files are missing or unreadable instead of raising; they
            are listed in :attr:`skipped` (``(id, reason)``) and summarised in the log.
        verify: ``"header"`` (default) checks at construction that every file exists and that
            label sizes match the image (headers only, fast); ``"full"`` decodes every sample
            (catches corrupt pixels and bad label values up front); ``"none"`` checks nothing
            until a sample is read.
        ids: explicit sample ids instead of the split file.
    """

    #: Layout name reported by :func:`mtcp.data.build.detect_layout`.
    layout = "folder"
    #: Relative paths of the image, label and split files of a benchmark layout.
    file_layout: ClassVar[Layout]
    #: Default number of classes of the ``"classes"`` tasks in this layout.
    default_classes: Mapping[str, int] = {}
    #: Whether a missing label file means "not labelled" (True) rather than an error.
    partial_labels = False
    #: Class names per ``"classes"`` task, where the layout knows them.
    class_names: ClassVar[dict[str, list[str]]] = {}
    #: Signs that turn the stored normals into mtcp's frame (x right, y down, z forward), per
    #: axis; ``(1, 1, -1)`` for files whose z points towards the camera. See
    #: :mod:`mtcp.data.normals_frame`, which checks the declaration against the depth labels.
    normals_signs: tuple[int, int, int] = (1, 1, 1)

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        tasks: Iterable[str] | Mapping[str, int] = ("semseg",),
        transform: Transform | None = None,
        skip_errors: bool = False,
        verify: str = "header",
        ids: Sequence[str] | None = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise MtcpError(f"{self.root}: dataset folder does not exist")
        if verify not in ("none", "header", "full"):
            raise MtcpError(f"verify must be 'none', 'header' or 'full', got {verify!r}")
        if not isinstance(tasks, Mapping):
            tasks = {t: self.default_classes.get(t, get_task(t).channels) for t in tasks}
        self.tasks: dict[str, int] = resolve_tasks(tasks)
        self.split = split
        self.transform = transform
        self.skip_errors = skip_errors
        self.skipped: list[tuple[str, str]] = []
        all_ids = list(ids) if ids is not None else self.split_ids(split)
        self.ids = self._verify(unique_ids(all_ids, self.root), verify)

    # -- hooks for layouts ------------------------------------------------------------------

    def split_ids(self, split: str) -> list[str]:
        """Ids of ``split`` (from the layout's split file)."""
        return read_split(self.root / self.file_layout.split.format(split=split))

    def files(self, sample_id: str) -> dict[str, Path]:
        """Paths of the image (key ``"image"``) and of each selected task's label file."""
        rel = self.file_layout.paths(sample_id)
        for task in self.tasks:
            if task not in rel:
                raise MtcpError(
                    f"{self.root}: the {self.layout} layout has no {task!r} labels; "
                    f"available: {', '.join(self.file_layout.labels)}"
                )
        return {key: self.root / rel[key] for key in ("image", *self.tasks)}

    def decode(self, task: str, path: Path, size: tuple[int, int]) -> np.ndarray:
        """Read and decode one task's label file (image ``size = (H, W)``) into a raw map."""
        raise NotImplementedError

    def intrinsics(self, size: tuple[int, int]) -> np.ndarray:
        """Camera ``fx, fy, cx, cy`` of an image of ``size = (H, W)``; NaN when unknown."""
        return np.full(4, np.nan, dtype=np.float32)

    # -- reading ----------------------------------------------------------------------------

    def _verify(self, ids: list[str], verify: str) -> list[str]:
        kept = []
        for sample_id in ids:
            try:
                if verify == "full":
                    self.read(sample_id)
                elif verify == "header":
                    self._check_headers(sample_id)
            except MtcpError as err:
                if not self.skip_errors:
                    raise
                self.skipped.append((sample_id, str(err)))
                continue
            kept.append(sample_id)
        if self.skipped:
            self.report_skipped()
        if not kept:
            raise MtcpError(f"{self.root}: no readable sample in split {self.split!r}")
        return kept

    def _check_headers(self, sample_id: str) -> None:
        files = self.files(sample_id)
        sizes = {}
        for key, path in files.items():
            if not path.is_file():
                if key != "image" and self.partial_labels:
                    continue
                what = "image" if key == "image" else f"{key} label"
                raise MtcpError(f"{path}: {what} file of sample {sample_id!r} is missing")
            try:
                sizes[key] = file_size(path)
            except (OSError, ValueError, UnidentifiedImageError) as err:
                raise MtcpError(f"{path}: cannot read the {key} file ({err})") from None
        image_hw = sizes["image"]
        for key, hw in sizes.items():
            if hw is not None and hw != image_hw:
                raise MtcpError(_size_message(files[key], key, hw, image_hw))

    def read(self, sample_id: str) -> Sample:
        """The raw sample ``sample_id``, checked (no transform)."""
        files = self.files(sample_id)
        image = read_image(files["image"])
        hw = (int(image.shape[0]), int(image.shape[1]))
        raw: Sample = {"image": image, "id": sample_id}
        for task in self.tasks:
            path = files[task]
            if self.partial_labels and not path.is_file():
                continue
            value = self.decode(task, path, hw)
            if value.shape[:2] != hw:
                raise MtcpError(_size_message(path, task, value.shape[:2], hw))
            if get_task(task).kind == "normals" and self.normals_signs != (1, 1, 1):
                value = value * np.asarray(self.normals_signs, dtype=np.float32)
            raw[task] = value
        raw["intrinsics"] = self.intrinsics(hw)
        raw["orig_size"] = hw
        return raw

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        for attempt in range(len(self.ids)):
            sample_id = self.ids[(index + attempt) % len(self.ids)]
            try:
                raw = self.read(sample_id)
                break
            except MtcpError as err:
                if not self.skip_errors:
                    raise
                self.skipped.append((sample_id, str(err)))
                log.warning("skipping sample %r: %s", sample_id, err)
        else:
            raise MtcpError(f"{self.root}: no readable sample in split {self.split!r}")
        if self.transform is not None:
            raw = self.transform(raw)
        out = to_tensor(raw, self.tasks)
        out["orig_size"] = torch.tensor(raw["orig_size"], dtype=torch.int64)
        out["valid_size"] = torch.tensor(
            raw.get("valid_size", raw["image"].shape[:2]), dtype=torch.int64
        )
        return out

    def subset(self, ids: Sequence[str], transform: Transform | None = None) -> FolderDataset:
        """A copy restricted to ``ids`` (in that order, repeats dropped) with another transform."""
        out = copy.copy(self)
        out.ids = unique_ids(ids, self.root)
        out.transform = transform
        out.skipped = list(self.skipped)
        return out

    def report_skipped(self) -> str:
        """Log and return a summary of the samples skipped so far (in this process)."""
        return report_skipped(self.skipped, self.root)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"n={len(self)}, tasks={self.tasks})"
        )


def report_skipped(skipped: Iterable[tuple[str, str]], root: str | Path) -> str:
    """Log (warning) and return a summary of skipped ``(id, reason)`` samples of ``root``."""
    entries = list(dict.fromkeys(skipped))
    lines = [f"{len(entries)} sample(s) of {root} skipped:"]
    lines += [f"  {sid}: {reason}" for sid, reason in entries]
    summary = "\n".join(lines)
    log.warning(summary)
    return summary


def _size_message(path: Path, key: str, hw: Sequence[int], image_hw: Sequence[int]) -> str:
    return (
        f"{path}: {key} map is {hw[0]}x{hw[1]} but its image is {image_hw[0]}x{image_hw[1]}; "
        "expected the same size"
    )
