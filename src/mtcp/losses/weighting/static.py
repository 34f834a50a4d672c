"""Schemes without learned or adaptive weights: equal, fixed and log-sum."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from mtcp.errors import MtcpError
from mtcp.losses.weighting.base import WeightingScheme


class EqualWeighting(WeightingScheme):
    """``L = Σ_t L_t`` (all ``w_t = 1``).

    State: only the shared bookkeeping of :class:`WeightingScheme`; each history record holds
    the window mean of every raw task loss (``"loss"``) and ``w``.
    """

    name = "equal"

    def _combine(self, losses: list[Tensor]) -> Tensor:
        return torch.stack(losses).sum()


class FixedWeighting(WeightingScheme):
    """``L = Σ_t w_t L_t`` with user-given constant weights ``w_t ≥ 0``.

    Args:
        weights: ``{task: w_t}`` for every task (missing tasks are an error).

    State: the weights (saved) and the shared bookkeeping; history as :class:`EqualWeighting`.
    """

    name = "fixed"

    def __init__(
        self,
        tasks: Iterable[str] | Mapping[str, int],
        weights: Mapping[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(tasks, **kwargs)
        weights = weights or {}
        missing = [t for t in self.tasks if t not in weights]
        unknown = [t for t in weights if t not in self.tasks]
        if missing or unknown:
            raise MtcpError(
                f"fixed weighting needs one weight per task {list(self.tasks)}; "
                f"missing {missing}, unknown {unknown}"
            )
        values = [float(weights[t]) for t in self.tasks]
        if any(not (w >= 0 and w < float("inf")) for w in values):
            raise MtcpError(f"fixed weights must be finite and >= 0, got {dict(weights)}")
        self._set_weights(values)

    def _combine(self, losses: list[Tensor]) -> Tensor:
        stacked = torch.stack(losses)
        return (self._weight_tensor(stacked) * stacked).sum()


class LogSumWeighting(WeightingScheme):
    """``L = Σ_t log(L_t + ε)``: gradient ``1 / (L_t + ε)`` per task, i.e. scale invariant.

    ``ε`` (default 1e-8) keeps a task whose loss is exactly 0 (no labelled pixel in the
    batch, which also means no gradient path) finite.

    State: the shared bookkeeping. ``weights`` reports the effective weights ``1 / (L_t + ε)``
    of the last call (1 before any call; reading it synchronises with the device); history
    records hold the window mean loss and ``w_t = 1 / (mean L_t + ε)`` of that mean.
    """

    name = "logsum"

    def __init__(
        self, tasks: Iterable[str] | Mapping[str, int], eps: float = 1e-8, **kwargs: Any
    ) -> None:
        super().__init__(tasks, **kwargs)
        if not eps > 0:
            raise MtcpError(f"logsum eps must be > 0, got {eps}")
        self.eps = float(eps)
        self._last: Tensor | None = None

    def _combine(self, losses: list[Tensor]) -> Tensor:
        stacked = torch.stack(losses)
        self._last = stacked.detach()
        return torch.log(stacked + self.eps).sum()

    @property
    def weights(self) -> dict[str, float]:
        if self._last is None:
            return super().weights
        return dict(zip(self.tasks, (1.0 / (self._last + self.eps)).tolist()))

    def _update(self, means: list[float]) -> dict[str, Any]:
        w = {t: 1.0 / (m + self.eps) for t, m in zip(self.tasks, means)}
        return {**super()._update(means), "w": w}
