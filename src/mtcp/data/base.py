"""What every on-disk dataset shares: checks, transform, tensors, error skipping.

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
import torch
from PIL import UnidentifiedImageError

from mtcp.data.files import file_size, read_image, read_split, unique_ids
from mtcp.data.layouts import Layout
from mtcp.data.sample import to_tensor
from mtcp.errors import MtcpError
from mtcp.tasks import get_task, resolve_tasks

log = logging.getLogger(__name__)

Sample = dict[str, Any]
Transform = Callable[[Sample], Sample]

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

    # Everything mtcp knows about a layout is declared here, on its reader class: adding a
    # layout means adding one subclass (and listing it in mtcp.data.build.READER_CLASSES).

    #: Layout name reported by :func:`mtcp.data.build.detect_layout` (``file_layout.name``).
    layout = "folder"
    #: Relative paths of the image, label and split files of a benchmark layout.
    file_layout: ClassVar[Layout]
    #: Tasks selected when none are asked for (``None``: every task the folder labels).
    default_tasks: ClassVar[tuple[str, ...] | None] = None
    #: Default number of classes of the ``"classes"`` tasks in this layout.
    default_classes: Mapping[str, int] = {}
    #: Augmentation recipe of the training splits with ``recipe="auto"``.
    train_recipe: ClassVar[str] = "nyud_train"
    #: Evaluation size ``(H, W)`` of the benchmark (``None``: each file's own size).
    test_size: ClassVar[tuple[int, int] | None] = None
    #: Benchmark whose boundary tolerance the edge metric uses (``build_metrics(dataset=)``).
    metrics_dataset: ClassVar[str] = "nyud"
    #: What a folder of this layout holds, for the "unknown layout" message.
    signature: ClassVar[str] = ""
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

    @classmethod
    def matches(cls, root: Path) -> bool:
        """Whether folder ``root`` holds this layout (see :func:`mtcp.data.build.detect_layout`)."""
        return False

    @classmethod
    def file_split(cls, split: str) -> str:
        """The layout's split holding mtcp split ``split`` (``val`` is carved from ``train``).

        Benchmark layouts: their first split file is the training split, their last the test
        split (NYUD ``gt_sets/val.txt``, PASCAL ``ImageSets/Context/val.txt``); other folders
        name them ``train`` and ``test``.
        """
        names = cls.file_layout.splits if hasattr(cls, "file_layout") else ("train", "test")
        return names[-1] if split == "test" else names[0]

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
