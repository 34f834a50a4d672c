"""Which way is better for every value mtcp logs or reports, read from the metrics themselves.

Every metric class declares ``directions``: for each key of its ``compute()``, True when higher
is better, False when lower is better, None for counts and settings (``n_pixels``, ``odsT``),
which are not scores. :func:`higher_is_better` resolves a logged key against those
declarations and the task table (:data:`mtcp.metrics.registry.TASK_METRICS`):

* ``<task>/<metric>``, e.g. ``val/semseg/mIoU``, ``depth/rmse``;
* ``coherence/<name>_<key>``, e.g. ``val/coherence/depth_normal_mean`` (lower is better);
* the multi-task scores of :mod:`mtcp.metrics.multitask`: ``delta_m`` (and ``delta_m/<task>``,
  higher is better) and ``gm_error`` (lower is better);

each with an optional stage prefix ``train/``, ``val/`` or ``test/``. Anything else is an error
that lists the known keys: a direction is never guessed from a name.
"""

from __future__ import annotations

from mtcp.errors import MtcpError
from mtcp.metrics.multitask import DIRECTIONS as MULTITASK_DIRECTIONS
from mtcp.metrics.registry import COHERENCE_METRICS, task_metric
from mtcp.tasks import TASKS

STAGES = ("train", "val", "test")


def _direction(parts: list[str]) -> tuple[bool, bool | None]:
    """(known, direction) of a key split at ``/`` without its stage."""
    if len(parts) == 1 and parts[0] in MULTITASK_DIRECTIONS:
        return True, MULTITASK_DIRECTIONS[parts[0]]
    if len(parts) == 2 and parts[0] == "delta_m" and parts[1] in TASKS:
        return True, MULTITASK_DIRECTIONS["delta_m"]  # a term of Δm, signed like Δm
    if len(parts) == 2 and parts[0] == "coherence":
        for name in sorted(COHERENCE_METRICS, key=len, reverse=True):
            cls = COHERENCE_METRICS[name].cls
            if parts[1] == name:
                return True, bool(cls.higher_is_better)
            if parts[1].startswith(f"{name}_") and parts[1][len(name) + 1 :] in cls.directions:
                return True, cls.directions[parts[1][len(name) + 1 :]]
        return False, None
    if len(parts) == 2 and parts[0] in TASKS:
        directions = task_metric(parts[0]).cls.directions
        if parts[1] in directions:
            return True, directions[parts[1]]
    return False, None


def scored_keys() -> list[str]:
    """Every key (without stage) that has a direction, for error messages and docs."""
    keys = [k for k, v in MULTITASK_DIRECTIONS.items() if v is not None]
    keys += [f"delta_m/{t}" for t in TASKS]
    for task in TASKS:
        keys += [
            f"{task}/{m}" for m, v in task_metric(task).cls.directions.items() if v is not None
        ]
    for name, entry in COHERENCE_METRICS.items():
        keys += [f"coherence/{name}_{k}" for k, v in entry.cls.directions.items() if v is not None]
    return keys


def _split(logged_key: str) -> list[str]:
    parts = logged_key.split("/")
    return parts[1:] if len(parts) > 1 and parts[0] in STAGES else parts


def _error(logged_key: str, what: str) -> MtcpError:
    return MtcpError(
        f"metric key {logged_key!r} {what}, so it has no better direction; known keys (with an "
        f"optional {'/, '.join(STAGES)}/ prefix): {', '.join(scored_keys())}"
    )


def direction(logged_key: str) -> bool | None:
    """True / False as :func:`higher_is_better`, None for a reported count or setting
    (``depth/n_pixels``, ``edge/odsT``): shown in tables, never ranked.

    Raises:
        MtcpError: for a key that no metric reports, listing the known ones.
    """
    known, better = _direction(_split(logged_key))
    if not known:
        raise _error(logged_key, "is not reported by any metric")
    return better


def higher_is_better(logged_key: str) -> bool:
    """True when a larger value of ``logged_key`` is better (module docstring for the keys).

    Raises:
        MtcpError: for a key that no metric reports, or that is a count or a setting.
    """
    better = direction(logged_key)
    if better is None:
        raise _error(logged_key, "is a count or a setting, not a score")
    return better
