"""Numbers of a study from its result files: per-seed values, mean ± spread, claim verdicts.

Values of one run (``flat_values``): every test metric as ``<task>/<metric>`` and
``coherence/<name>``, ``delta_m`` and its per-task terms ``delta_m/<task>`` (against the
reference configuration of the same seed), ``params``, ``train_seconds`` and
``seconds_per_step``. Spread = sample standard deviation over seeds (n − 1; none for one seed).

Claim rule (:func:`judge`), on the seeds both configurations ran: with ``d_s`` the difference
of seed ``s`` signed so that positive favours the claim, ``D`` their mean and ``N`` =
√(std_better² + std_than²) the combined seed spread, the claim

* **holds** when ``D > N`` and ``d_s > 0`` in every seed;
* **does not hold** when ``−D > N`` and ``d_s < 0`` in every seed (the opposite is measured);
* is **inconclusive** otherwise (the difference is within the seed-to-seed spread), and
  always with fewer than :data:`MIN_SEEDS` seeds (no spread to compare with).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtcp.engine.module import is_count
from mtcp.errors import MtcpError
from mtcp.experiment.runner import result_path
from mtcp.experiment.study import Claim, Study
from mtcp.io import read_json
from mtcp.metrics import DELTA_M_METRICS, delta_m_terms
from mtcp.metrics import direction as metric_direction
from mtcp.metrics import higher_is_better as metric_higher_is_better

#: the run values this module adds to the metrics (:func:`flat_values`): all lower is better
RUN_COSTS = ("params", "train_seconds", "seconds_per_step")

HOLDS, FAILS, INCONCLUSIVE, NOT_RUN = "holds", "does not hold", "inconclusive", "not run"
#: seeds a claim needs before it can be decided
MIN_SEEDS = 2


def direction(key: str) -> bool | None:
    """Better direction of a value key such as ``depth/rmse`` or ``coherence/boundary_F``: the
    one its metric declares (:func:`mtcp.metrics.direction`; None for settings such as
    ``edge/odsT``); run costs are lower-is-better."""
    return False if key in RUN_COSTS else metric_direction(key)


def higher_is_better(key: str) -> bool:
    """:func:`direction` of a key that is a score (:func:`mtcp.metrics.higher_is_better`)."""
    return False if key in RUN_COSTS else metric_higher_is_better(key)


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
    """The outcome of one claim (see the module docstring for the rule)."""

    claim: Claim
    outcome: str
    better: Stats
    than: Stats
    difference: float  # D, positive = in the claim's favour
    noise: float  # N
    favourable: int  # seeds with d_s > 0
    seeds: int  # seeds both configurations ran


def judge(claim: Claim, table: Mapping[str, Mapping[str, Mapping[int, float]]]) -> Verdict:
    """Apply the claim rule to the per-seed values ``table`` (see :func:`per_seed`)."""
    a = table.get(claim.better, {}).get(claim.metric, {})
    b = table.get(claim.than, {}).get(claim.metric, {})
    seeds = sorted(s for s in a if s in b and math.isfinite(a[s]) and math.isfinite(b[s]))
    a, b = {s: a[s] for s in seeds}, {s: b[s] for s in seeds}
    sa, sb = Stats.of(a), Stats.of(b)
    if not seeds:
        return Verdict(claim, NOT_RUN, sa, sb, math.nan, math.nan, 0, 0)
    sign = 1.0 if higher_is_better(claim.metric) else -1.0
    diffs = [sign * (a[s] - b[s]) for s in seeds]
    d = sum(diffs) / len(diffs)
    noise = math.sqrt((sa.std or 0.0) ** 2 + (sb.std or 0.0) ** 2)
    favourable = sum(x > 0 for x in diffs)
    if len(seeds) < MIN_SEEDS:
        outcome = INCONCLUSIVE
    elif d > noise and favourable == len(seeds):
        outcome = HOLDS
    elif -d > noise and sum(x < 0 for x in diffs) == len(seeds):
        outcome = FAILS
    else:
        outcome = INCONCLUSIVE
    return Verdict(claim, outcome, sa, sb, d, noise, favourable, len(seeds))
