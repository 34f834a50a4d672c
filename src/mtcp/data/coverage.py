"""Does every requested task get labels? Checked on the training split before training.

A task whose label folder is misnamed (``Depth/`` for ``depth/``) or whose labels are invalid
everywhere (NaN normals) would otherwise train to the end with its head never supervised.
:func:`check_label_coverage` counts, per task, the training samples with a label file (own
data may have partial labels) and decodes some of them to see valid pixels:

* no sample with a valid label pixel in the whole split → :class:`~mtcp.errors.MtcpError`;
* fewer than :data:`FEW_LABELS` of the samples labelled → a warning naming the task and the
  count.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mtcp.data.base import FolderDataset
from mtcp.data.files import file_size
from mtcp.errors import MtcpError
from mtcp.tasks import IGNORE_INDEX, get_task

log = logging.getLogger(__name__)

#: Share of the training samples below which a task's label count draws a warning.
FEW_LABELS = 0.1
#: Labelled samples decoded per task (spread over the split); the others are decoded only
#: while no valid label pixel has been found.
PROBES = 8


def has_valid_pixel(task: str, label: np.ndarray) -> bool:
    """Whether a decoded raw label map holds at least one valid (not ignored) pixel."""
    kind = get_task(task).kind
    if kind == "depth":
        return bool((label > 0).any())
    if kind == "normals":
        return bool((np.abs(label).sum(axis=-1) > 0).any())
    return bool((label != IGNORE_INDEX).any())


def _labelled_ids(dataset: FolderDataset, task: str) -> list[str]:
    if not dataset.partial_labels:
        return list(dataset.ids)
    return [i for i in dataset.ids if dataset.files(i)[task].is_file()]


def _decode(dataset: FolderDataset, sample_id: str, task: str) -> np.ndarray:
    files = dataset.files(sample_id)
    size = file_size(files["image"])
    if size is None:  # image format without a cheap header read
        size = dataset.read(sample_id)["orig_size"]
    return dataset.decode(task, files[task], size)


def _misnamed_hint(dataset: FolderDataset, task: str, expected: Path) -> str:
    folder = expected.parent
    if folder.is_dir():
        return ""
    near = [
        p.name
        for p in folder.parent.iterdir()
        if p.is_dir() and p.name.lower() == folder.name.lower()
    ]
    return f" (found {near[0]}/ instead: folder names are case-sensitive)" if near else ""


def check_label_coverage(dataset: FolderDataset) -> dict[str, int]:
    """Per task, the number of samples of ``dataset`` with a label file; raises or warns.

    Raises:
        MtcpError: a task has no valid label pixel in any sample (names the task, the count
            and an expected file).
    """
    n = len(dataset.ids)
    counts: dict[str, int] = {}
    for task in dataset.tasks:
        ids = _labelled_ids(dataset, task)
        counts[task] = len(ids)
        if not ids:
            expected = dataset.files(dataset.ids[0])[task]
            hint = _misnamed_hint(dataset, task, expected)
            raise MtcpError(
                f"{dataset.root}: task {task!r} has no label in any of the {n} training "
                f"samples; expected label files such as {expected}{hint}"
            )
        spread = ids[:: max(1, len(ids) // PROBES)][:PROBES]
        probed = set(spread)
        n_valid = sum(has_valid_pixel(task, _decode(dataset, i, task)) for i in spread)
        found = n_valid > 0 or any(
            has_valid_pixel(task, _decode(dataset, i, task)) for i in ids if i not in probed
        )
        if not found:
            example = dataset.files(ids[0])[task]
            raise MtcpError(
                f"{dataset.root}: task {task!r} has no valid label pixel in any of the "
                f"{len(ids)} labelled training samples (e.g. {example} is all invalid: "
                "zero, NaN or ignore); expected labels with valid values"
            )
        if len(ids) < FEW_LABELS * n:
            log.warning(
                "%s: task %r is labelled in only %d of the %d training samples",
                dataset.root,
                task,
                len(ids),
                n,
            )
        elif n_valid < FEW_LABELS * len(spread):
            log.warning(
                "%s: task %r has valid label pixels in only %d of %d checked training samples",
                dataset.root,
                task,
                n_valid,
                len(spread),
            )
    return counts
