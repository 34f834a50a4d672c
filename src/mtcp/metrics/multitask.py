"""Multi-task scores: Δm against single-task references (SPEC §6) and the reference-free
geometric-mean error used for model selection without references.

``Δm = (1/T) Σ_t s_t · (M_t − M_t^single) / M_t^single × 100`` (percent), where ``M_t`` is task
``t``'s *main metric* and ``s_t = +1`` when higher is better, ``−1`` when lower is better.
Positive Δm means the multi-task model beats the single-task models on average.

Main metrics used in Δm (:data:`DELTA_M_METRICS`, following the MT-CP release):

=============  ============  ====
task           metric        sign
=============  ============  ====
semseg         ``mIoU``      +1
human_parts    ``mIoU``      +1
depth          ``rmse``      −1
normals        ``mean``      −1
edge           ``odsF``      +1
sal            ``mIoU``      +1
=============  ============  ====

The sign is the direction the metric class declares (:mod:`mtcp.metrics.registry`).
Saliency enters Δm through its **mIoU** (the release's choice), although ``maxF`` is the main
metric reported for model selection in :mod:`mtcp.tasks`; pass ``main_metrics`` to change it.

``gm_error`` (:func:`gm_error`): the geometric mean over tasks of each task's *error* on its
main metric (``1 − M`` for mIoU / odsF / maxF, which lie in [0, 1]; ``M`` itself for depth RMSE
in metres and normals mean angle in degrees). Lower is better. Because it is a geometric mean,
halving any one task's error lowers it by the same factor whatever that task's units are, so
the ranking of checkpoints does not depend on units or on a reference model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from mtcp.errors import MtcpError
from mtcp.metrics.registry import task_metric
from mtcp.tasks import get_task

#: better direction of the multi-task scores (higher is better: True)
DIRECTIONS: dict[str, bool] = {"delta_m": True, "gm_error": False}


def _signed(task: str, metric: str) -> tuple[str, int]:
    return metric, +1 if task_metric(task).cls.directions[metric] else -1


DELTA_M_METRICS: dict[str, tuple[str, int]] = {
    task: _signed(task, metric)
    for task, metric in {
        "semseg": "mIoU",
        "human_parts": "mIoU",
        "depth": "rmse",
        "normals": "mean",
        "edge": "odsF",
        "sal": "mIoU",
    }.items()
}

Results = Mapping[str, Mapping[str, float]]


def delta_m_terms(
    results: Results,
    references: Results,
    tasks: Iterable[str] | None = None,
    main_metrics: Mapping[str, tuple[str, int]] | None = None,
) -> dict[str, float]:
    """Per-task signed relative change ``s_t (M_t − M_t^single) / M_t^single × 100`` (percent).

    Args:
        results: ``{task: {metric: value}}`` of the multi-task model (e.g. ``compute()``).
        references: the same for the single-task models (see :func:`load_references`).
        tasks: tasks to include; default: every task of ``results`` that has a main metric.
        main_metrics: ``{task: (metric, sign)}`` overriding :data:`DELTA_M_METRICS`.
    """
    table = {**DELTA_M_METRICS, **(main_metrics or {})}
    names = list(tasks) if tasks is not None else [t for t in results if t in table]
    if not names:
        raise MtcpError(f"Δm: no task with a main metric in the results ({', '.join(results)})")
    terms: dict[str, float] = {}
    for task in names:
        if task not in table:
            raise MtcpError(f"Δm: task {task!r} has no main metric; known: {', '.join(table)}")
        metric, sign = table[task]
        value = _lookup(results, task, metric, "results")
        ref = _lookup(references, task, metric, "single-task references")
        if ref == 0 or not math.isfinite(ref):
            raise MtcpError(f"Δm: single-task reference {task}/{metric} is {ref}, cannot divide")
        terms[task] = sign * (value - ref) / ref * 100.0
    return terms


def delta_m(
    results: Results,
    references: Results,
    tasks: Iterable[str] | None = None,
    main_metrics: Mapping[str, tuple[str, int]] | None = None,
) -> float:
    """Δm in percent: the mean of :func:`delta_m_terms` over the tasks."""
    terms = delta_m_terms(results, references, tasks, main_metrics)
    return sum(terms.values()) / len(terms)


def gm_error(results: Results, tasks: Iterable[str]) -> float:
    """Geometric mean over ``tasks`` of the error on each task's main metric (module doc)."""
    logs = []
    for task in tasks:
        metric = get_task(task).main_metric
        value = float(results[task][metric])
        err = 1.0 - value if task_metric(task).cls.directions[metric] else value
        logs.append(math.log(max(err, 1e-6)) if math.isfinite(err) else math.inf)
    return math.exp(sum(logs) / len(logs))


def _lookup(table: Results, task: str, metric: str, what: str) -> float:
    if task not in table:
        raise MtcpError(f"Δm: task {task!r} missing from the {what} (has: {', '.join(table)})")
    if metric not in table[task]:
        raise MtcpError(f"Δm: {what} for task {task!r} have no {metric!r} (main metric)")
    return float(table[task][metric])


def load_references(
    source: str | Path | Mapping | Iterable[str | Path],
) -> dict[str, dict[str, float]]:
    """Single-task references ``{task: {metric: value}}`` from JSON files or a dict.

    ``source`` is a dict, a JSON file, a folder (every ``*.json`` inside) or a list of files,
    e.g. the metrics files of several single-task ``mtcp`` runs. Each JSON holds either
    ``{task: {metric: value}}``, the same under a top-level ``"metrics"`` key (an ``mtcp``
    results file), or ``{task: value}`` giving the task's Δm main metric directly. Files are
    merged; a task given twice with different values is an error.
    """
    if isinstance(source, Mapping):
        return _parse(source, "the references dict")
    if isinstance(source, (str, Path)):
        path = Path(source)
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        if not files:
            raise MtcpError(f"{path}: no *.json single-task results in this folder")
    else:
        files = [Path(p) for p in source]
    merged: dict[str, dict[str, float]] = {}
    for file in files:
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError) as err:
            raise MtcpError(f"{file}: cannot read single-task references as JSON ({err})") from err
        for task, metrics in _parse(data, str(file)).items():
            old = merged.setdefault(task, {})
            for name, value in metrics.items():
                if name in old and old[name] != value:
                    raise MtcpError(f"{file}: task {task!r} {name} conflicts with another file")
                old[name] = value
    return merged


def _parse(data: object, where: str) -> dict[str, dict[str, float]]:
    if isinstance(data, Mapping) and isinstance(data.get("metrics"), Mapping):
        data = data["metrics"]
    if not isinstance(data, Mapping):
        raise MtcpError(f"{where}: expected a JSON object {{task: {{metric: value}}}}")
    out: dict[str, dict[str, float]] = {}
    for task, metrics in data.items():
        if isinstance(metrics, (int, float)) and not isinstance(metrics, bool):
            if task not in DELTA_M_METRICS:
                raise MtcpError(f"{where}: task {task!r} has no main metric to assign a value to")
            metrics = {DELTA_M_METRICS[task][0]: metrics}
        if not isinstance(metrics, Mapping):
            raise MtcpError(f"{where}: task {task!r} should map metric names to numbers")
        out[task] = {
            str(k): float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    return out
