"""Homoscedastic uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mtcp.losses.consistency import TERM_KINDS
from mtcp.losses.weighting.base import WeightingScheme
from mtcp.tasks import get_task

REGRESSION_KINDS = ("depth", "normals")


class UncertaintyWeighting(WeightingScheme):
    """Learned per-task log-variances ``s_t = log σ_t²``.

    Total ``L = Σ_t c_t · exp(−s_t) · L_t + ½ s_t`` where
    ``c_t = ½`` for regression tasks (``depth``, ``normals``: Gaussian likelihood,
    ``L_t/(2σ²) + log σ``) and ``c_t = 1`` for classification tasks (``semseg``,
    ``human_parts``, ``edge``, ``sal``: softmax/Bernoulli likelihood with temperature,
    ``L_t/σ² + log σ``). The effective weight of task t is ``w_t = c_t · exp(−s_t)``.

    The ``s_t`` are :class:`torch.nn.Parameter` (``log_vars``, shape ``[T]``): **add
    ``scheme.parameters()`` to the optimizer** (no weight decay). They are saved in the
    ``state_dict``.

    Args:
        init_log_var: initial ``s_t`` (default 0, i.e. ``σ = 1``).

    State: ``log_vars`` and the shared bookkeeping; history records hold the window mean loss
    and the effective weights at the window end.
    """

    name = "uncertainty"

    def __init__(
        self,
        tasks: Iterable[str] | Mapping[str, int],
        init_log_var: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(tasks, **kwargs)
        self.log_vars = nn.Parameter(torch.full((len(self.tasks),), float(init_log_var)))
        kinds = [TERM_KINDS.get(t) or get_task(t).kind for t in self.tasks]
        scale = [0.5 if kind in REGRESSION_KINDS else 1.0 for kind in kinds]
        self.register_buffer("scale", torch.tensor(scale), persistent=False)

    def _combine(self, losses: list[Tensor]) -> Tensor:
        stacked = torch.stack(losses)
        log_vars = self.log_vars.to(stacked.dtype)
        precision = self.scale.to(stacked) * torch.exp(-log_vars)
        return (precision * stacked + 0.5 * log_vars).sum()

    @property
    def weights(self) -> dict[str, float]:
        w = self.scale * torch.exp(-self.log_vars.detach().to(self.scale))
        return dict(zip(self.tasks, w.tolist()))
