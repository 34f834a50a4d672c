"""Describe a dataset before anyone trains on it: :func:`data_report` (``mtcp data-report``).

For each mtcp split of a source (``train_full`` = the whole training split, from which
``val`` is carved, and ``test``) it reads every sample as stored (no augmentation) and
reports:

* the number of images, and per task the images with a valid label (partial labels);
* class frequencies (share of the labelled pixels) of the class-map tasks;
* the depth distribution (share of valid pixels per :data:`DEPTH_BINS` bin, quantiles, metres);
* the normal distribution: share of valid pixels per angle between the normal and the
  direction towards the camera (:data:`ANGLE_BINS`, degrees) and per orientation (floor-like,
  ceiling-like, vertical, other; mtcp frame: y down);
* the positive share of the binary tasks;
* images whose decoded pixels are identical (SHA-256 of the pixel array) across or within splits;
* warnings where a class, a depth range or a normal range is nearly absent from train
  (under :data:`NEARLY_ABSENT` of its test share) but present in test (at least
  :data:`PRESENT` of the test pixels).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mtcp.data.base import FolderDataset
from mtcp.data.build import build_dataset
from mtcp.data.coverage import has_valid_pixel
from mtcp.errors import MtcpError
from mtcp.tasks import IGNORE_INDEX, get_task

log = logging.getLogger(__name__)

#: The splits described, in mtcp's vocabulary (``val`` is carved out of ``train_full``).
REPORT_SPLITS = ("train_full", "test")
#: Depth histogram edges in metres (the last bin is open).
DEPTH_BINS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 20.0, float("inf"))
#: Bins of the angle (degrees) between a normal and the direction towards the camera (-z).
ANGLE_BINS = (0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0, 180.0)
#: A bin or class holding at least this share of the test pixels is "present in test".
PRESENT = 0.005
#: ... and "nearly absent from train" below this fraction of its test share.
NEARLY_ABSENT = 0.1


def _bin_names(edges: Iterable[float], unit: str) -> list[str]:
    pairs = itertools.pairwise(edges)
    return [f"{a:g}-{b:g}{unit}" if np.isfinite(b) else f">{a:g}{unit}" for a, b in pairs]


class _SplitStats:
    """Running sums of one split (pixel counts per class / bin)."""

    def __init__(self, tasks: dict[str, int]):
        self.tasks = tasks
        self.images = 0
        self.labelled = dict.fromkeys(tasks, 0)
        self.counts: dict[str, np.ndarray] = {}
        self.orientation: dict[str, np.ndarray] = {}
        self.depth_values: list[np.ndarray] = []
        self.hashes: dict[str, list[str]] = {}

    def add(self, sample_id: str, raw: dict[str, Any]) -> None:
        self.images += 1
        image = np.ascontiguousarray(raw["image"])
        digest = hashlib.sha256(repr(image.shape).encode() + image.tobytes()).hexdigest()
        self.hashes.setdefault(digest, []).append(sample_id)
        for task, channels in self.tasks.items():
            label = raw.get(task)
            if label is None or not has_valid_pixel(task, label):
                continue
            self.labelled[task] += 1
            kind = get_task(task).kind
            if kind == "classes":
                values = label[label != IGNORE_INDEX].astype(np.int64).ravel()
                add = np.bincount(np.minimum(values, channels), minlength=channels + 1)
                self._sum(task, add[:channels])
            elif kind == "depth":
                d = label[label > 0]
                self._sum(task, np.histogram(d, bins=DEPTH_BINS)[0])
                step = max(1, d.size // 2000)  # a thinned copy for the quantiles
                self.depth_values.append(d[::step])
            elif kind == "normals":
                n = label[np.abs(label).sum(-1) > 0]
                angle = np.degrees(np.arccos(np.clip(-n[:, 2], -1, 1)))
                self._sum(task, np.histogram(angle, bins=ANGLE_BINS)[0])
                floor, ceiling = n[:, 1] < -0.7, n[:, 1] > 0.7
                vertical = np.abs(n[:, 1]) < 0.3
                other = ~(floor | ceiling | vertical)
                parts = np.array([m.sum() for m in (floor, ceiling, vertical, other)])
                self.orientation[task] = self.orientation.get(task, 0) + parts
            else:
                valid = label[label != IGNORE_INDEX]
                self._sum(task, np.array([(valid <= 0.5).sum(), (valid > 0.5).sum()]))

    def _sum(self, task: str, counts: np.ndarray) -> None:
        self.counts[task] = self.counts.get(task, 0) + counts.astype(np.int64)


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.zeros(len(counts))


def _describe(stats: _SplitStats, class_names: dict[str, list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {"images": stats.images, "tasks": {}}
    for task in stats.tasks:
        entry: dict[str, Any] = {
            "labelled": stats.labelled[task],
            "coverage": stats.labelled[task] / stats.images if stats.images else 0.0,
        }
        counts = stats.counts.get(task)
        kind = get_task(task).kind
        if counts is not None:
            shares = _shares(counts)
            if kind == "classes":
                names = class_names.get(task) or [f"class {c}" for c in range(len(shares))]
                entry["class_share"] = {names[c]: float(s) for c, s in enumerate(shares)}
            elif kind == "depth":
                entry["depth_share"] = dict(zip(_bin_names(DEPTH_BINS, " m"), shares.tolist()))
                d = np.concatenate(stats.depth_values)
                q = np.quantile(d, [0.0, 0.05, 0.5, 0.95, 1.0])
                entry["depth_quantiles_m"] = dict(zip(("min", "p5", "median", "p95", "max"), q))
            elif kind == "normals":
                entry["angle_share"] = dict(zip(_bin_names(ANGLE_BINS, "°"), shares.tolist()))
                orient = _shares(stats.orientation[task])
                names = ("floor-like", "ceiling-like", "vertical", "other")
                entry["orientation_share"] = dict(zip(names, orient.tolist()))
            else:
                entry["positive_share"] = float(shares[1])
        out["tasks"][task] = entry
    return out


def _absent_in_train(train: dict, test: dict, key: str, what: str, task: str) -> list[str]:
    warnings = []
    for name, share in test.get(key, {}).items():
        in_train = train.get(key, {}).get(name, 0.0)
        if share >= PRESENT and in_train < NEARLY_ABSENT * share:
            warnings.append(
                f"{task}: {what} {name!r} is {100 * share:.2f}% of the test pixels but only "
                f"{100 * in_train:.3f}% of the training pixels"
            )
    return warnings


def _bias_warnings(splits: dict[str, dict]) -> list[str]:
    if not {"train_full", "test"} <= set(splits):
        return []
    out = []
    train, test = splits["train_full"]["tasks"], splits["test"]["tasks"]
    for task, entry in test.items():
        if task not in train:
            continue
        for key, what in (
            ("class_share", "class"),
            ("depth_share", "depth range"),
            ("angle_share", "normal angle range"),
            ("orientation_share", "normal orientation"),
        ):
            out += _absent_in_train(train[task], entry, key, what, task)
        if entry["labelled"] and not train[task]["labelled"]:
            out.append(f"{task}: labelled in test but in no training image")
    return out


def _duplicates(stats: dict[str, _SplitStats]) -> list[dict[str, list[str]]]:
    where: dict[str, dict[str, list[str]]] = {}
    for split, s in stats.items():
        for digest, ids in s.hashes.items():
            where.setdefault(digest, {})[split] = ids
    return [
        splits
        for splits in where.values()
        if len(splits) > 1 or any(len(ids) > 1 for ids in splits.values())
    ]


def data_report(
    source: str | Path,
    tasks: Iterable[str] | None = None,
    splits: Iterable[str] = REPORT_SPLITS,
    limit: int | None = None,
) -> dict[str, Any]:
    """A description of dataset ``source`` (see the module docstring), JSON-ready.

    Args:
        source: a dataset folder (layout detected) or ``"synthetic"``.
        tasks: tasks to describe; ``None`` = the layout's usual tasks.
        splits: mtcp split names; a split the source does not have is listed under
            ``"missing_splits"``.
        limit: read at most this many images per split (``None`` = all).

    Returns:
        ``{"source", "layout", "splits": {split: {"images", "tasks": {task: {...}}}},
        "duplicates": [{split: [ids]}], "warnings": [str], "missing_splits": [str]}``.
        Shares are fractions of the valid pixels of the split, in [0, 1].
    """
    stats: dict[str, _SplitStats] = {}
    layout, class_names, missing = "", {}, []
    for split in splits:
        try:
            dataset = build_dataset(source, split, tasks, recipe=None, check_labels=False)
        except MtcpError as err:
            if "split file" not in str(err):
                raise
            missing.append(split)
            continue
        layout = getattr(dataset, "layout", layout)
        class_names = dict(getattr(dataset, "class_names", {}) or class_names)
        s = stats[split] = _SplitStats(dict(dataset.tasks))
        count = len(dataset) if limit is None else min(limit, len(dataset))
        for index in range(count):
            sample_id, raw = _raw(dataset, index)
            s.add(sample_id, raw)
    if not stats:
        raise MtcpError(f"{source}: none of the splits {', '.join(splits)} exists")
    described = {split: _describe(s, class_names) for split, s in stats.items()}
    report = {
        "source": str(source),
        "layout": layout,
        "splits": described,
        "duplicates": _duplicates(stats),
        "warnings": _bias_warnings(described),
        "missing_splits": missing,
    }
    for dup in report["duplicates"]:
        report["warnings"].append(
            "identical images: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in dup.items())
        )
    return report


def _raw(dataset: Any, index: int) -> tuple[str, dict[str, Any]]:
    """Sample ``index`` as stored: a folder's raw sample, or a synthetic one in raw layout."""
    if isinstance(dataset, FolderDataset):
        sample_id = dataset.ids[index]
        return sample_id, dataset.read(sample_id)
    item = dataset[index]
    raw: dict[str, Any] = {"image": item["image"].numpy()}
    for task in dataset.tasks:
        if not item["labelled"].get(task, True):
            continue
        value = item[task].numpy()
        if get_task(task).kind == "normals":
            raw[task] = np.moveaxis(value, 0, -1)
        else:
            raw[task] = value[0] if value.ndim == 3 else value
    return str(item.get("id") or index), raw
