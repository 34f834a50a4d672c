"""Dynamic Weight Average (Liu, Johns and Davison, CVPR 2019)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from mtcp.errors import MtcpError
from mtcp.losses.weighting.base import WeightingScheme


class DWAWeighting(WeightingScheme):
    """Weights from the rate at which each task's mean loss falls.

    With ``L̄_t(k)`` the mean of ``L_t`` over window k (an epoch by default),
    ``r_t = L̄_t(k) / L̄_t(k−1)`` and the next window uses
    ``w_t = K · exp(r_t / T) / Σ_i exp(r_i / T)`` with K the number of tasks and
    temperature ``T = 2``. Until two windows exist (the first two epochs) ``w_t = 1``.
    A task whose previous mean is 0 gets ``r_t = 1``. Total ``L = Σ_t w_t L_t``.

    Args:
        temperature: T (default 2).

    State: the previous window means, the current weights and the shared bookkeeping; history
    records hold ``loss`` (window means), ``r`` (None for the first window) and ``w``.
    """

    name = "dwa"

    def __init__(
        self, tasks: Iterable[str] | Mapping[str, int], temperature: float = 2.0, **kwargs: Any
    ) -> None:
        super().__init__(tasks, **kwargs)
        if not temperature > 0:
            raise MtcpError(f"DWA temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self._prev: list[float] | None = None

    def _combine(self, losses: list[Tensor]) -> Tensor:
        stacked = torch.stack(losses)
        return (self._weight_tensor(stacked) * stacked).sum()

    def _update(self, means: list[float]) -> dict[str, Any]:
        r = None
        if self._prev is not None:
            r = [m / p if p > 0 else 1.0 for m, p in zip(means, self._prev)]
            e = [math.exp((x - max(r)) / self.temperature) for x in r]  # stable softmax
            self._set_weights([len(e) * x / sum(e) for x in e])
        self._prev = list(means)
        return {
            "loss": dict(zip(self.tasks, means)),
            "r": None if r is None else dict(zip(self.tasks, r)),
        }

    def _extra_state(self) -> dict[str, Any]:
        return {"prev": self._prev}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self._prev = state["prev"]
