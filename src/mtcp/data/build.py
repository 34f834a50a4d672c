"""One entry point to every dataset: :func:`build_dataset`.

``source`` is ``"synthetic"`` (ray-cast scenes generated on the fly) or a dataset folder whose
layout is detected (:func:`detect_layout`: NYUD_MT, NYUDv2, PASCAL_MT or an own-data folder)
and logged.

Split names are mtcp's, the same for every source:

* ``"train"``: the layout's training split minus the validation part carved out of it;
* ``"val"``: that carved part (``val_fraction`` of the training split, chosen by ``seed``), for
  model selection; never the test split;
* ``"test"``: the layout's test split (NYUD ``gt_sets/val.txt``, PASCAL
  ``ImageSets/Context/val.txt``, own data ``test``);
* ``"train_full"``: the whole training split (no validation carved).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtcp.data.base import FolderDataset, unique_ids
from mtcp.data.coverage import check_label_coverage
from mtcp.data.folder import OwnDataset
from mtcp.data.normals_frame import check_once
from mtcp.data.nyud import NYUDDataset, NYUDv2Dataset
from mtcp.data.pascal import PascalDataset
from mtcp.data.transforms import Compose, PadTo, build_recipe
from mtcp.errors import MtcpError
from mtcp.tasks import get_task, resolve_tasks

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "train_full")
#: The readers, in detection order; each declares its layout's facts (default tasks, classes,
#: recipe, test size, normals frame, metrics) on its class (:class:`FolderDataset`).
READER_CLASSES: tuple[type[FolderDataset], ...] = (
    NYUDDataset,
    NYUDv2Dataset,
    PascalDataset,
    OwnDataset,
)
READERS: dict[str, type[FolderDataset]] = {r.layout: r for r in READER_CLASSES}
#: Tasks of the built-in synthetic scenes when ``tasks=None``.
SYNTHETIC_TASKS = ("semseg", "depth", "normals", "edge")
SYNTHETIC_SIZE = (96, 128)
SYNTHETIC_N = {"train": 64, "test": 16}


def detect_layout(root: str | Path) -> str:
    """Name of the layout of dataset folder ``root``: a key of :data:`READERS`."""
    root = Path(root)
    if not root.is_dir():
        raise MtcpError(f"{root}: dataset folder does not exist")
    for reader in READER_CLASSES:
        if reader.matches(root):
            return reader.layout
    expected = ", ".join(dict.fromkeys(r.signature for r in READER_CLASSES))
    raise MtcpError(f"{root}: unknown dataset layout; expected one of: {expected}")


def carve_validation(
    ids: Sequence[Any], val_fraction: float, seed: int = 0
) -> tuple[list[Any], list[Any]]:
    """Split ``ids`` into ``(train, val)`` deterministically; both keep the input order.

    ``val`` holds ``round(val_fraction · n)`` items (at least one when ``val_fraction > 0``),
    chosen by a permutation seeded with ``seed``. Repeated ids are kept once (with a warning),
    so no validation item is ever also a training item.
    """
    if not 0 <= val_fraction < 1:
        raise MtcpError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ids = unique_ids(ids, "the training split")
    n = len(ids)
    n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
    if n_val >= n:
        raise MtcpError(f"cannot carve {n_val} validation sample(s) out of {n}")
    chosen = set(np.random.default_rng(seed).permutation(n)[:n_val].tolist())
    return [x for i, x in enumerate(ids) if i not in chosen], [ids[i] for i in sorted(chosen)]


def make_transform(
    recipe: str | None,
    split: str,
    reader: type[FolderDataset] | None,
    size: tuple[int, int] | None,
    pad_to: tuple[int, int] | None = None,
) -> Compose | None:
    """The joint transform of ``split``: ``recipe`` (``"auto"`` = the reader's train recipe
    for ``train``/``train_full``, ``"test"`` otherwise) then an optional pad.

    ``reader`` is the layout's reader class (``None``: synthetic scenes).
    """
    if recipe == "auto":
        training = split in ("train", "train_full")
        recipe = (reader.train_recipe if reader else "nyud_train") if training else "test"
    if size is None and recipe in (None, "test") and reader is not None:
        size = reader.test_size
    transform = build_recipe(recipe, size)
    if pad_to is None:
        return transform
    steps = [*(transform.transforms if transform else []), PadTo(pad_to)]
    return Compose(steps)


def build_dataset(
    source: str | Path,
    split: str = "train",
    tasks: Iterable[str] | Mapping[str, int] | None = None,
    recipe: str | None = None,
    size: tuple[int, int] | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    pad_to: tuple[int, int] | None = None,
    skip_errors: bool = False,
    verify: str = "header",
    n: int | None = None,
    check_labels: bool = True,
) -> torch.utils.data.Dataset:
    """A dataset of tensor samples (see :mod:`mtcp.tasks`) for one split.

    Args:
        source: ``"synthetic"`` or a dataset folder (layout detected and logged).
        split: ``"train"``, ``"val"`` (carved from train), ``"test"`` or ``"train_full"``.
        tasks: task names or ``{task: classes}``; ``None`` = the layout's usual tasks.
        recipe: ``"nyud_train"``, ``"pascal_train"``, ``"test"``, ``"auto"`` (the layout's
            train recipe on training splits, ``"test"`` elsewhere) or ``None`` (no
            augmentation; resize only when ``size`` is given).
        size: ``(H, W)`` the recipe resizes to; ``None`` = the recipe's / benchmark's default
            (NYUD 480x640, PASCAL 512x512, own data: the file size). For ``"synthetic"``, the
            rendering size (default 96x128).
        val_fraction, seed: how the validation split is carved from the training split.
        pad_to: pad bottom/right to this ``(H, W)`` after the recipe (e.g. 448x576 for the
            ATRC NYUDv2 evaluation).
        skip_errors, verify: see :class:`mtcp.data.base.FolderDataset`; unless ``verify`` is
            ``"none"``, training splits are checked to hold valid labels of every task
            (:func:`mtcp.data.coverage.check_label_coverage`) and the normals' camera frame is
            checked once per folder (:func:`mtcp.data.normals_frame.check_normals_frame`).
        n: synthetic only: number of scenes of the training (default 64) or test (16) pool.
        check_labels: on training splits, refuse a task without any valid label (false for
            tools that describe a dataset rather than train on it).

    Returns:
        a ``Dataset`` whose items are tensor samples plus ``orig_size`` and ``valid_size``,
        with attributes ``tasks`` (task → channels), ``layout`` and ``class_names`` (task →
        names, where known).
    """
    if split not in SPLITS:
        raise MtcpError(f"unknown split {split!r}; choose from: {', '.join(SPLITS)}")
    if split == "val" and val_fraction == 0:
        raise MtcpError("split 'val' needs val_fraction > 0")
    if str(source) == "synthetic":
        return _synthetic(split, tasks, recipe, size, val_fraction, seed, pad_to, n)
    root = Path(source)
    layout = detect_layout(root)
    log.info("%s: detected the %s layout", root, layout)
    reader = READERS[layout]
    if tasks is None:
        tasks = reader.default_tasks
    transform = make_transform(recipe, split, reader, size, pad_to)
    dataset = reader(
        root,
        reader.file_split(split),
        tasks,
        transform=transform,
        skip_errors=skip_errors,
        verify=verify,
    )
    if verify != "none":
        check_once(dataset)
    if split in ("train", "val") and val_fraction > 0:
        train_ids, val_ids = carve_validation(dataset.ids, val_fraction, seed)
        dataset = dataset.subset(train_ids if split == "train" else val_ids, transform)
    if check_labels and verify != "none" and split in ("train", "train_full"):
        check_label_coverage(dataset)  # fails `mtcp train` at setup, before any step
    return dataset


class _Indexed(torch.utils.data.Dataset):
    """Items ``indices`` of a synthetic pool, with ``orig_size`` / ``valid_size`` added."""

    def __init__(self, pool: torch.utils.data.Dataset, indices: Sequence[int], tasks: dict):
        self.pool, self.indices, self.tasks = pool, list(indices), tasks
        self.layout = "synthetic"
        self.class_names = {"semseg": list(pool.classes)}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        out = dict(self.pool[self.indices[index]])
        hw = torch.tensor(out["image"].shape[-2:], dtype=torch.int64)
        out.setdefault("orig_size", hw)
        out.setdefault("valid_size", hw)
        return out


def _synthetic(
    split: str,
    tasks: Iterable[str] | Mapping[str, int] | None,
    recipe: str | None,
    size: tuple[int, int] | None,
    val_fraction: float,
    seed: int,
    pad_to: tuple[int, int] | None,
    n: int | None,
) -> torch.utils.data.Dataset:
    # lazy: only synthetic sources load the numba renderer, never the real-data readers
    from mtcp.data.synthetic import SYNTHETIC_CLASSES, SyntheticScenes

    size = (int(size[0]), int(size[1])) if size else SYNTHETIC_SIZE
    if tasks is None:
        tasks = SYNTHETIC_TASKS
    if not isinstance(tasks, Mapping):
        tasks = {
            t: len(SYNTHETIC_CLASSES) if t == "semseg" else get_task(t).channels for t in tasks
        }
    resolved = resolve_tasks(tasks)
    pool_split = "test" if split == "test" else "train"
    count = n or SYNTHETIC_N[pool_split]
    # The test pool uses another seed, so its scenes never repeat training scenes.
    pool_seed = seed if pool_split == "train" else seed + 1
    transform = make_transform(recipe, split, None, size, pad_to)
    pool = SyntheticScenes(count, size=size, seed=pool_seed, tasks=resolved, transform=transform)
    indices = list(range(count))
    if split in ("train", "val") and val_fraction > 0:
        train_idx, val_idx = carve_validation(indices, val_fraction, seed)
        indices = train_idx if split == "train" else val_idx
    return _Indexed(pool, indices, resolved)
