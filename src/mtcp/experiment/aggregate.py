"""Numbers of a study from its result files: per-seed values, mean ± spread, claim verdicts,
and whether training converged.

Values of one run (``flat_values``): every test metric as ``<task>/<metric>`` and
``coherence/<name>``, ``delta_m`` and its per-task terms ``delta_m/<task>`` (against the
reference configuration of the same seed), ``params``, ``train_seconds`` and
``seconds_per_step``. Spread = sample standard deviation over seeds (n − 1; none for one seed).

Claims (:func:`judge`) are decided by the paired hierarchical bootstrap of :mod:`.stats` on
the per-image values the result files keep (:mod:`mtcp.metrics.per_image`), on the seeds that both
configurations (and, for Δm, the reference) ran.

Convergence (:func:`flattening`): with ``g_1 … g_E`` the per-epoch ``val/gm_error`` of a
model and ``k = max(1, round(E / 5))``, the relative change over the last fifth of training
is ``|g_E − g_{E−k}| / g_{E−k}``; a curve has flattened when it is below
:data:`FLAT_TOLERANCE` (2 %).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtcp.engine.module import is_count
from mtcp.errors import MtcpError
from mtcp.experiment import stats
from mtcp.experiment.runner import result_path
from mtcp.experiment.stats import FAILS, HOLDS, INCONCLUSIVE, MIN_SEEDS, NOT_RUN
from mtcp.experiment.study import Claim, Study
from mtcp.io import read_json
from mtcp.metrics import DELTA_M_METRICS, delta_m_terms
from mtcp.metrics import direction as metric_direction
from mtcp.metrics import higher_is_better as metric_higher_is_better

#: the run values this module adds to the metrics (:func:`flat_values`): all lower is better
RUN_COSTS = ("params", "train_seconds", "seconds_per_step")

#: relative change of val/gm_error over the last fifth of training below which a curve is flat
FLAT_TOLERANCE = 0.02


def direction(key: str) -> bool | None:
    """Better direction of a value key such as ``depth/rmse`` or ``coherence/boundary_F``: the
    one its metric declares (:func:`mtcp.metrics.direction`; None for settings such as
    ``edge/odsT``); run costs are lower-is-better; ``delta_m_worst`` (the lowest Δm term of a
    run, :mod:`.stats`) is signed like Δm."""
    if key in RUN_COSTS:
        return False
    return metric_direction("delta_m" if key == "delta_m_worst" else key)


def higher_is_better(key: str) -> bool:
    """:func:`direction` of a key that is a score (:func:`mtcp.metrics.higher_is_better`)."""
    if key in RUN_COSTS:
        return False
    return metric_higher_is_better("delta_m" if key == "delta_m_worst" else key)


def collect(study: Study, out_dir: str | Path) -> dict[str, dict[int, dict[str, Any]]]:
    """``{configuration: {seed: result}}`` of the finished runs (missing runs left out)."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for name in study.configurations:
        for seed in study.seeds:
            result = read_json(result_path(out_dir, name, seed))
            if result is not None and result.get("fingerprint") == study.fingerprint(name, seed):
                found.setdefault(name, {})[seed] = result
    return found


def flat_values(
    result: Mapping[str, Any], reference: Mapping[str, Any] | None, tasks: list[str]
) -> dict[str, float]:
    """All values of one run (module docstring); NaN where a metric is undefined."""
    values: dict[str, float] = {}
    metrics = result["metrics"]
    for group, named in metrics.items():
        for metric, value in named.items():
            if not is_count(metric):
                values[f"{group}/{metric}"] = math.nan if value is None else float(value)
    if reference is not None:
        try:
            terms = delta_m_terms(metrics, reference["metrics"], tasks=tasks)
        except (MtcpError, TypeError):  # a reference metric missing, null or 0
            terms = {}
        if terms and all(math.isfinite(v) for v in terms.values()):
            values |= {f"delta_m/{t}": v for t, v in terms.items()}
            values["delta_m"] = sum(terms.values()) / len(terms)
    values["params"] = float(result["params"])
    values["train_seconds"] = float(result["train_seconds"])
    values["seconds_per_step"] = float(result["train_seconds"]) / max(int(result["steps"]), 1)
    return values


def per_seed(
    study: Study, results: Mapping[str, Mapping[int, Mapping[str, Any]]]
) -> dict[str, dict[str, dict[int, float]]]:
    """``{configuration: {key: {seed: value}}}`` with Δm against the same seed's reference."""
    refs = results.get(study.reference, {})
    tasks = [t for t in study.tasks if t in DELTA_M_METRICS]
    table: dict[str, dict[str, dict[int, float]]] = {}
    for name, seeds in results.items():
        for seed, result in seeds.items():
            for key, value in flat_values(result, refs.get(seed), tasks).items():
                table.setdefault(name, {}).setdefault(key, {})[seed] = value
    return table


@dataclass(frozen=True)
class Stats:
    """Mean and spread (sample std, None for one value) of the finite values of seeds."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Mapping[int, float] | None) -> Stats:
        finite = [v for v in (values or {}).values() if math.isfinite(v)]
        if not finite:
            return cls(math.nan, None, 0)
        mean = sum(finite) / len(finite)
        if len(finite) < 2:
            return cls(mean, None, 1)
        var = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)
        return cls(mean, math.sqrt(var), len(finite))


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim: :func:`stats.compare` on its per-image values."""

    claim: Claim
    outcome: str
    comparison: stats.Comparison | None  # None when not run


def claim_components(study: Study, metric: str) -> tuple[list[str], list[bool]]:
    """Per-image keys a claim's ``metric`` is computed from, and their directions."""
    if metric in stats.DELTA_M_CLAIM_METRICS:
        tasks = [t for t in study.tasks if t in DELTA_M_METRICS]
        return [f"{t}/{DELTA_M_METRICS[t][0]}" for t in tasks], [
            DELTA_M_METRICS[t][1] > 0 for t in tasks
        ]
    return [metric], [higher_is_better(metric)]


def _per_image(result: Mapping[str, Any], keys: list[str]) -> Any:
    values = result.get("per_image") or {}
    if any(k not in values for k in keys):
        return None
    return np.stack([np.asarray(values[k], dtype=float) for k in keys], axis=-1)  # [N, T]


def judge(
    claim: Claim, study: Study, results: Mapping[str, Mapping[int, Mapping[str, Any]]]
) -> Verdict:
    """Decide ``claim`` on the result files ``results`` (``{configuration: {seed: result}}``)."""
    keys, directions = claim_components(study, claim.metric)
    sides = [claim.better, claim.than]
    if claim.metric in stats.DELTA_M_CLAIM_METRICS:
        sides.append(study.reference)
    per_seed = {}
    for seed in study.seeds:
        arrays = [results.get(n, {}).get(seed) for n in sides]
        arrays = [None if r is None else _per_image(r, keys) for r in arrays]
        if all(a is not None for a in arrays) and len({a.shape for a in arrays}) == 1:
            per_seed[seed] = arrays
    if not per_seed:
        return Verdict(claim, NOT_RUN, None)
    stacked = [np.stack([per_seed[s][i] for s in sorted(per_seed)]) for i in range(len(sides))]
    reference = stacked[2] if len(stacked) > 2 else None
    comparison = stats.compare(claim.metric, stacked[0], stacked[1], directions, reference)
    return Verdict(claim, comparison.outcome, comparison)


def flattening(result: Mapping[str, Any]) -> float | None:
    """Largest relative change of ``val/gm_error`` over the last fifth of training among the
    models of a run (module docstring); None without a curve of at least two epochs."""
    changes = []
    for curve in result.get("curves") or []:
        values = [r["val"]["gm_error"] for r in curve["epochs"] if "gm_error" in r["val"]]
        if len(values) < 2:
            continue
        k = max(1, round(len(values) / 5))
        start, end = values[-1 - k], values[-1]
        changes.append(abs(end - start) / abs(start) if start else math.inf)
    return max(changes) if changes else None


__all__ = [
    "FAILS",
    "FLAT_TOLERANCE",
    "HOLDS",
    "INCONCLUSIVE",
    "MIN_SEEDS",
    "NOT_RUN",
    "Stats",
    "Verdict",
    "collect",
    "flat_values",
    "flattening",
    "judge",
    "per_seed",
]
