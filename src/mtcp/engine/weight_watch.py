"""Warnings about the loss weighting: a task pinned at a weight bound, or weights that oscillate.

LPS (SPEC §4) clamps every weight to ``[w_min, w_max]``. A task that stays at a bound for many
update windows in a row is being starved (``w_min``) or is dominating (``w_max``) the shared
gradient; weights that swing up and down from window to window mean the progress ratios are
noise rather than signal (the spread ``s`` is too large for the window). Both are worth a look
before trusting a run's per-task balance. Reported from the weighting history (one record per
window, see :mod:`mtcp.losses.weighting.base`):

* **at a bound**: ``|w_t − bound| ≤ 1e-6`` for at least ``bound_windows`` windows in a row;
* **oscillating**: at least ``flips`` changes of direction in a row among window-to-window
  changes ``Δw_t`` larger than ``min_swing`` × the mean weight.

:class:`WeightWatch` logs each finding once, when it first appears during training; the list
at the end (``TrainResult.weight_warnings``, ``metrics.json``) is the end-of-run summary.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L

log = logging.getLogger(__name__)

#: windows in a row at a bound before a warning
BOUND_WINDOWS = 5
#: changes of direction in a row before a warning
OSCILLATION_FLIPS = 4
#: smallest change counted as a swing, relative to the mean weight
MIN_SWING = 0.05


@dataclasses.dataclass(frozen=True)
class WeightWarning:
    """One finding about one task's weight."""

    task: str
    #: ``"at_min"``, ``"at_max"`` or ``"oscillating"``
    kind: str
    #: epochs (as recorded in the history) of the first and last window of the finding
    first_epoch: int
    last_epoch: int
    #: windows involved (at a bound) or changes of direction (oscillating)
    count: int
    bound: float | None = None

    def __str__(self) -> str:
        epochs = f"epochs {self.first_epoch}-{self.last_epoch}"
        if self.kind == "oscillating":
            return (
                f"loss weighting: the weight of task {self.task!r} oscillates ({self.count} "
                f"changes of direction in a row, {epochs}); the progress ratios may be noise: "
                "consider a smaller spread or a longer window"
            )
        side = "lower bound w_min" if self.kind == "at_min" else "upper bound w_max"
        return (
            f"loss weighting: task {self.task!r} stayed at the {side}={self.bound:g} for "
            f"{self.count} windows in a row ({epochs}); it is "
            f"{'starved of' if self.kind == 'at_min' else 'dominating'} the shared gradient"
        )


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """``[(start, end_inclusive)]`` of the runs of True in ``flags``."""
    runs, start = [], None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def weight_warnings(
    history: Sequence[Mapping[str, Any]],
    w_min: float | None = None,
    w_max: float | None = None,
    bound_windows: int = BOUND_WINDOWS,
    flips: int = OSCILLATION_FLIPS,
    min_swing: float = MIN_SWING,
) -> list[WeightWarning]:
    """The findings of the module docstring in a weighting history (longest run per kind)."""
    records = [r for r in history if isinstance(r.get("w"), Mapping)]
    if not records:
        return []
    tasks = list(records[0]["w"])
    epochs = [int(r.get("epoch", i)) for i, r in enumerate(records)]
    found: list[WeightWarning] = []
    for task in tasks:
        w = [float(r["w"][task]) for r in records]
        for kind, bound in (("at_min", w_min), ("at_max", w_max)):
            if bound is None:
                continue
            runs = _runs([abs(x - bound) <= 1e-6 * max(1.0, abs(bound)) for x in w])
            if runs:
                a, b = max(runs, key=lambda r: r[1] - r[0])
                if b - a + 1 >= bound_windows:
                    found.append(WeightWarning(task, kind, epochs[a], epochs[b], b - a + 1, bound))
        best: tuple[int, int, int] | None = None  # (flips, first window, last window)
        run_flips, run_start = 0, 0
        for k in range(2, len(w)):
            mean = sum(float(v) for v in records[k]["w"].values()) / len(tasks)
            d_prev, d = w[k - 1] - w[k - 2], w[k] - w[k - 1]
            swing = min(abs(d_prev), abs(d)) >= min_swing * mean
            if swing and d_prev * d < 0:
                if run_flips == 0:
                    run_start = k - 2
                run_flips += 1
                if best is None or run_flips > best[0]:
                    best = (run_flips, run_start, k)
            else:
                run_flips = 0
        if best is not None and best[0] >= flips:
            found.append(
                WeightWarning(task, "oscillating", epochs[best[1]], epochs[best[2]], best[0])
            )
    return found


class WeightWatch(L.Callback):
    """Logs :func:`weight_warnings` of the module's weighting as they appear (process 0)."""

    def __init__(self) -> None:
        self.warnings: list[WeightWarning] = []
        self._logged: set[tuple[str, str]] = set()

    def check(self, scheme: Any) -> list[WeightWarning]:
        """Update :attr:`warnings` from ``scheme.history``; log the new findings."""
        self.warnings = weight_warnings(
            scheme.history, getattr(scheme, "w_min", None), getattr(scheme, "w_max", None)
        )
        for warning in self.warnings:
            if (warning.task, warning.kind) not in self._logged:
                self._logged.add((warning.task, warning.kind))
                log.warning("%s", warning)
        return self.warnings

    # the module updates the weights in its own on_train_epoch_end, after the callbacks'
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and trainer.current_epoch > 0:
            self.check(pl_module.weighting)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.check(pl_module.weighting)
