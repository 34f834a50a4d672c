"""Metrics per group of images (``mtcp evaluate --groups FILE.csv``) and the gaps between them.

A groups file is a CSV with a header naming an image-id column (``id``, ``image`` or
``image_id``: the sample ids of the dataset, i.e. file stems; synthetic scenes are
``s<seed>_<index>``) and a ``group`` column (e.g. camera, site, lighting)::

    id,group
    0003,kitchen
    0004,office

Every metric of the evaluation is computed on each group's images alone (the same metric
objects as the whole evaluation, :func:`mtcp.metrics.build_metrics`), and for every metric the
*gap* is the largest minus the smallest value over the groups, with the groups holding them.
Images of the dataset that the file does not name are left out of every group (counted);
a file naming an image the dataset does not hold is refused.

The synthetic scenes do not expose a scene family or a lighting label per image (every test
scene comes from one family, and the renderer draws its light at random without recording it),
so there are no built-in groups: pass a file.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from mtcp.errors import MtcpError
from mtcp.tasks import TASKS, get_task

ID_COLUMNS = ("id", "image", "image_id")


def read_groups(path: str | Path) -> dict[str, str]:
    """``{image id: group}`` from a groups CSV (module docstring); check the ids against the
    evaluated images with :func:`check_groups`."""
    path = Path(path)
    if not path.is_file():
        raise MtcpError(f"groups file {path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise MtcpError(f"groups file {path}: cannot read it as CSV ({err})") from None
    id_column = next((c for c in ID_COLUMNS if c in header), None)
    if id_column is None or "group" not in header:
        raise MtcpError(
            f"groups file {path}: expected a header with an image-id column "
            f"({' / '.join(ID_COLUMNS)}) and a 'group' column, got {header}"
        )
    groups: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        image, group = row.get(id_column, ""), row.get("group", "")
        if not image or not group:
            raise MtcpError(f"groups file {path}, line {line}: empty {id_column} or group")
        if groups.get(image, group) != group:
            raise MtcpError(
                f"groups file {path}, line {line}: image {image!r} is in group "
                f"{groups[image]!r} and {group!r}"
            )
        groups[image] = group
    if not groups:
        raise MtcpError(f"groups file {path}: no rows")
    return groups


def check_groups(groups: Mapping[str, str], known_ids: Iterable[str], path: str | Path) -> None:
    """Refuse a groups file naming images that the evaluated data does not hold."""
    known = set(known_ids)
    unknown = sorted(set(groups) - known)
    if unknown:
        sample = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise MtcpError(
            f"groups file {path}: {len(unknown)} image id(s) not in the evaluated data "
            f"({sample}); ids are the sample names (file stems), e.g. "
            f"{', '.join(sorted(known)[:3])}"
        )


def _select(value: Any, index: torch.Tensor, n: int) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
        return value[index.to(value.device)]
    if isinstance(value, Mapping):
        return {k: _select(v, index, n) for k, v in value.items()}
    if isinstance(value, list | tuple) and len(value) == n:
        return [value[i] for i in index.tolist()]
    return value


class GroupedMetrics:
    """One metric collection per group, fed by the batches of the whole evaluation.

    Args:
        groups: ``{image id: group}`` (:func:`read_groups`).
        build: makes a fresh, empty metric collection (``update(outputs, batch)`` /
            ``compute() -> {task: {metric: value}}``).
    """

    def __init__(self, groups: Mapping[str, str], build: Callable[[], Any]) -> None:
        self.groups = dict(groups)
        self.metrics = {g: build() for g in sorted(set(self.groups.values()))}
        self.counts = dict.fromkeys(self.metrics, 0)
        self.unassigned = 0

    def update(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> None:
        """Add a batch (outputs at the targets' size, batch with ``"id"`` per sample)."""
        ids = list(batch["id"])
        n = len(ids)
        members: dict[str, list[int]] = {}
        for i, image in enumerate(ids):
            group = self.groups.get(str(image))
            if group is None:
                self.unassigned += 1
            else:
                members.setdefault(group, []).append(i)
        for group, rows in members.items():
            index = torch.tensor(rows)
            sub_out = {k: v[index.to(v.device)] for k, v in outputs.items()}
            sub_batch = {k: _select(v, index, n) for k, v in batch.items()}
            self.metrics[group].update(sub_out, sub_batch)
            self.counts[group] += len(rows)

    def compute(self) -> dict[str, Any]:
        """``{"groups": {group: {task: {metric: value}}}, "n_images": {group: n},
        "unassigned": n, "gaps": {task: {metric: {"gap", "max_group", "min_group"}}}}``."""
        from mtcp.metrics import to_floats  # lazy: torchmetrics, keeps `mtcp --help` fast

        results = {g: to_floats(m.compute()) for g, m in self.metrics.items() if self.counts[g]}
        gaps: dict[str, dict[str, dict[str, Any]]] = {}
        keys = {(t, k) for r in results.values() for t, values in r.items() for k in values}
        for task, metric in sorted(keys):
            values = {
                g: r[task][metric]
                for g, r in results.items()
                if metric in r.get(task, {}) and math.isfinite(r[task][metric])
            }
            if len(values) < 2:
                continue
            hi, lo = max(values, key=values.get), min(values, key=values.get)
            gaps.setdefault(task, {})[metric] = {
                "gap": values[hi] - values[lo],
                "max_group": hi,
                "min_group": lo,
            }
        return {
            "groups": results,
            "n_images": {g: self.counts[g] for g in results},
            "unassigned": self.unassigned,
            "gaps": gaps,
        }


def describe_groups(report: Mapping[str, Any], table: Callable[[Mapping], str]) -> str:
    """The per-group table (``table``: e.g. :func:`mtcp.engine.callbacks.metrics_table`, one
    column per group plus ``gap``) and the largest relative gap among the tasks' main
    metrics."""
    columns: dict[str, Any] = dict(report["groups"])
    columns["gap"] = {
        task: {m: g["gap"] for m, g in metrics.items()} for task, metrics in report["gaps"].items()
    }
    counts = ", ".join(f"{g} {n}" for g, n in report["n_images"].items())
    lines = [f"\nPer group ({counts} images; {report['unassigned']} not in any group):"]
    lines.append(table(columns))
    widest = None
    for task, metrics in report["gaps"].items():
        if task not in TASKS or get_task(task).main_metric not in metrics:
            continue
        metric = get_task(task).main_metric
        g = metrics[metric]
        hi = report["groups"][g["max_group"]][task][metric]
        rel = g["gap"] / abs(hi) if hi else math.inf
        if widest is None or rel > widest[0]:
            widest = (rel, task, metric, g)
    if widest is not None:
        rel, task, metric, g = widest
        lines.append(
            f"largest gap: {task}/{metric} {g['gap']:.4g} ({rel:.0%} of the larger value) between "
            f"{g['max_group']} and {g['min_group']}"
        )
    return "\n".join(lines)
