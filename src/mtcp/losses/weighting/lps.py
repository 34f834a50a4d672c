"""The Loss Prioritization Scheme of MT-CP (SPEC §4)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from mtcp.errors import MtcpError
from mtcp.losses.weighting.base import WeightingScheme


class LPSWeighting(WeightingScheme):
    """Log-projected losses, weighted towards the tasks that fall behind.

    - log projection: ``ℓ_t = log(1 + L_t)``; objective ``L = Σ_t w_t ℓ_t`` with ``w_t``
      constants, so ``∂L/∂L_t = w_t / (1 + L_t)``;
    - history: ``ℓ̄_t(k)``, the mean of ``ℓ_t`` over window k (``window="epoch"`` or a number
      of optimizer steps), summed over all processes under ``torch.distributed``;
    - progress ratio: ``r_t = [ℓ̄_t(k) / ℓ̄_t(k−1)] / [ℓ̄(k) / ℓ̄(k−1)]``, ``ℓ̄ = Σ_t ℓ̄_t``
      (``r_t > 1``: task t falls behind; a task or total with a previous mean of 0 gives
      ``r_t = 1``);
    - spread: ``p_t = 1 + s · (r_t − mean_t r)``;
    - weights: ``w_t = clamp(α · clamp(p_t, w_min, w_max), w_min, w_max)`` with α > 0 chosen so
      that ``Σ_t w_t = total`` (plain clamp-then-renormalise whenever that stays in bounds;
      otherwise the tasks at a bound stay there and the others are rescaled), so weights
      always lie in ``[w_min, w_max]`` and sum to ``total``;
    - ``w_t = 1`` for window 0 and until two windows exist; the weights computed at the end
      of window k apply to window k+1.

    Args:
        spread: ``s ≥ 0`` (default 7.5, the release's NYUD value; it used 1.6 on PASCAL;
            ``s = 0`` gives equal weights).
        w_min, w_max: bounds (defaults 0.1 and 3.0: relative to the mean weight
            ``total / K``, no task falls under a tenth of or over three times an equal share
            when ``total = K``); ``K·w_min ≤ total ≤ K·w_max`` is required.
        total: ``T``, the sum of the weights (default: the number of tasks K).
        window: ``"epoch"`` (default) or an int number of steps per update.

    State: the window sums and count of ``ℓ_t``, the previous window means ``ℓ̄(k−1)``, the
    current weights, counters and history (all in ``state_dict``). History records hold
    ``lbar`` (per-task ``ℓ̄``), ``r`` (None until two windows exist) and ``w``.
    """

    name = "lps"

    def __init__(
        self,
        tasks: Iterable[str] | Mapping[str, int],
        spread: float = 7.5,
        w_min: float = 0.1,
        w_max: float = 3.0,
        total: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(tasks, **kwargs)
        k = len(self.tasks)
        total = float(k) if total is None else float(total)
        if not (spread >= 0 and math.isfinite(spread)):
            raise MtcpError(f"LPS spread s must be a finite number >= 0, got {spread}")
        if not (0 <= w_min <= w_max and k * w_min <= total <= k * w_max and total > 0):
            raise MtcpError(
                f"LPS needs 0 <= w_min <= w_max and {k}·w_min <= total <= {k}·w_max "
                f"(weights in bounds summing to total), got w_min={w_min}, w_max={w_max}, "
                f"total={total}"
            )
        self.spread, self.total = float(spread), total
        self.w_min, self.w_max = float(w_min), float(w_max)
        self._prev: list[float] | None = None

    def _track(self, losses: Tensor) -> Tensor:
        return torch.log1p(losses)

    def _combine(self, losses: list[Tensor]) -> Tensor:
        projected = torch.log1p(torch.stack(losses))
        return (self._weight_tensor(projected) * projected).sum()

    def _update(self, means: list[float]) -> dict[str, Any]:
        r = None
        if self._prev is not None:
            r = progress_ratios(means, self._prev)
            mean_r = sum(r) / len(r)
            p = [1.0 + self.spread * (x - mean_r) for x in r]
            self._set_weights(clamp_to_sum(p, self.w_min, self.w_max, self.total))
        self._prev = list(means)
        return {
            "lbar": dict(zip(self.tasks, means)),
            "r": None if r is None else dict(zip(self.tasks, r)),
        }

    def _extra_state(self) -> dict[str, Any]:
        return {"prev": self._prev}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._prev = state["prev"]


def progress_ratios(means: list[float], prev: list[float]) -> list[float]:
    """``r_t = [m_t / p_t] / [Σ m / Σ p]``; 1 where a previous mean (or Σ) is 0."""
    overall = sum(means) / sum(prev) if sum(prev) > 0 else 0.0
    if overall <= 0:
        return [1.0] * len(means)
    return [(m / p) / overall if p > 0 else 1.0 for m, p in zip(means, prev)]


def clamp_to_sum(p: list[float], lo: float, hi: float, total: float) -> list[float]:
    """``clamp(α · clamp(p, lo, hi), lo, hi)`` with α such that the result sums to ``total``.

    Iteratively rescales the entries not pinned at the bound in the needed direction; at most
    ``len(p)`` rounds. Requires ``len(p)·lo <= total <= len(p)·hi``.
    """
    w = [min(max(x, lo), hi) for x in p]
    for _ in range(len(w) + 1):
        current = sum(w)
        if math.isclose(current, total, rel_tol=1e-12, abs_tol=1e-12):
            break
        shrink = current > total
        free = [i for i, x in enumerate(w) if (x > lo if shrink else x < hi)]
        pinned = sum(x for i, x in enumerate(w) if i not in free)
        free_sum = sum(w[i] for i in free)
        if free_sum <= 0:  # every entry is 0 (lo == 0): spread the total evenly
            w = [total / len(w)] * len(w)
            continue
        scale = (total - pinned) / free_sum
        for i in free:
            w[i] = min(max(w[i] * scale, lo), hi)
    return w
