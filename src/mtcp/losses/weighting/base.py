"""The interface every loss-weighting scheme implements, and its shared window bookkeeping.

Usage in any training loop::

    scheme = create_weighting("lps", ["semseg", "depth"])
    for epoch in range(E):
        for batch in loader:
            total = scheme(loss_fn(model(batch["image"]), batch))  # dict[task, scalar]
            total.backward(); opt.step(); opt.zero_grad()
            scheme.step_end()
        scheme.epoch_end()

Shared state of every scheme (saved by ``state_dict`` through ``get_extra_state``): the step
and epoch counters, the running window sums of a tracked per-task quantity (the raw loss
``L_t``, or ``log(1 + L_t)`` for LPS), the window count, the current weights and the history.
A window is one epoch (``window="epoch"``) or an int number of optimizer steps. At each window
end the sums and count are all-reduced over ``torch.distributed`` (when initialised), so every
process holds identical means, and :meth:`WeightingScheme._update` turns the means into new
weights and a history record.

Host synchronisation: one per step (the finiteness check of the losses) and one per window end.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mtcp.errors import MtcpError
from mtcp.losses.consistency import TERMS
from mtcp.tasks import resolve_tasks

NONFINITE_POLICIES = ("raise", "skip")


def term_names(tasks: Iterable[str] | Mapping[str, int]) -> tuple[str, ...]:
    """The weighted terms in order: task names (checked) and consistency terms
    (:data:`mtcp.losses.consistency.TERMS`), which a scheme weights like tasks."""
    names = list(tasks)
    if isinstance(tasks, Mapping):
        resolve_tasks({n: c for n, c in tasks.items() if n not in TERMS})
    else:
        resolve_tasks([n for n in names if n not in TERMS])
    if len(set(names)) != len(names):
        raise MtcpError(f"a weighted term is listed twice in {names}")
    return tuple(names)


class WeightingScheme(nn.Module):
    """Base class: ``scheme(losses) -> total``; subclasses define ``_combine`` (and ``_update``).

    Args:
        tasks: task names or ``{task: channels}``; the order fixes the order of tensors.
        window: ``"epoch"`` or a positive int number of optimizer steps per update window.
        on_nonfinite: ``"raise"`` an :class:`MtcpError` naming the task and step when a task
            loss is NaN/Inf, or ``"skip"``: warn and return a zero total (a leaf tensor with
            ``requires_grad=True`` and no path to the model, so ``backward()`` leaves every
            gradient untouched); the losses of that step never enter the history. The error
            names the step as :attr:`step`, the number of :meth:`step_end` calls so far. Under
            DDP a skip is local to one process: the loop must skip the step on every process
            (a lone zero total leaves that process out of the gradient all-reduce).
        process_group: the ``torch.distributed`` group to average windows over (default:
            the world, when initialised).

    Attributes:
        step: optimizer steps counted by :meth:`step_end`.
        epoch: epochs counted by :meth:`epoch_end`.
        last_step_skipped: True when the last call met a non-finite loss under ``"skip"``.
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        tasks: Iterable[str] | Mapping[str, int],
        *,
        window: str | int = "epoch",
        on_nonfinite: str = "raise",
        process_group: Any = None,
    ) -> None:
        super().__init__()
        self.tasks: tuple[str, ...] = term_names(tasks)
        if window != "epoch" and not (isinstance(window, int) and window > 0):
            raise MtcpError(f"window must be 'epoch' or a positive number of steps, got {window!r}")
        if on_nonfinite not in NONFINITE_POLICIES:
            raise MtcpError(
                f"on_nonfinite must be one of {NONFINITE_POLICIES}, got {on_nonfinite!r}"
            )
        self.window = window
        self.on_nonfinite = on_nonfinite
        self.process_group = process_group
        self.step = 0
        self.epoch = 0
        self.last_step_skipped = False
        self._windows = 0
        self._sums: Tensor | None = None  # float64 [T], tracked quantity summed over the window
        self._count = 0
        self._weights = [1.0] * len(self.tasks)
        self._weight_cache: tuple[torch.device, torch.dtype, Tensor] | None = None
        self._history: list[dict[str, Any]] = []

    # --- the interface -------------------------------------------------------------------

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        """Weighted total of the task losses (scalar tensor to backpropagate).

        In training mode the detached losses are added to the current window.
        """
        values = self._ordered(losses)
        dtype = self._acc_dtype(values[0].device)
        detached = torch.stack([v.detach().reshape(()).to(dtype) for v in values])
        self.last_step_skipped = False
        if not bool(torch.isfinite(detached).all()):  # the one host sync per step
            return self._nonfinite(detached)
        if self.training:
            tracked = self._track(detached)
            self._sums = tracked if self._sums is None else self._sums.to(tracked.device) + tracked
            self._count += 1
        return self._combine(values)

    def step_end(self) -> None:
        """Call after every optimizer step; closes the window when it is counted in steps."""
        self.step += 1
        if isinstance(self.window, int) and self.step % self.window == 0:
            self._close_window()

    def epoch_end(self) -> None:
        """Call at the end of every epoch; closes the window when ``window="epoch"``."""
        self.epoch += 1
        if self.window == "epoch":
            self._close_window()

    @property
    def weights(self) -> dict[str, float]:
        """Current per-task weights (the factor on each task's loss term)."""
        return dict(zip(self.tasks, self._weights))

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per window end: ``window``, ``step``, ``epoch`` and per-task values."""
        return self._history

    # --- hooks for subclasses --------------------------------------------------------------

    def _combine(self, losses: list[Tensor]) -> Tensor:
        """Total from the task losses (same order as ``self.tasks``), keeping the graph."""
        raise NotImplementedError

    def _track(self, losses: Tensor) -> Tensor:
        """Per-task quantity averaged over a window, from detached losses ``[T]``."""
        return losses

    def _update(self, means: list[float]) -> dict[str, Any]:
        """Consume the window means; may set ``self._weights``; returns history fields.

        The record's ``"w"`` defaults to :attr:`weights` after the update.
        """
        return {"loss": dict(zip(self.tasks, means))}

    # --- helpers ---------------------------------------------------------------------------

    def _weight_tensor(self, like: Tensor) -> Tensor:
        """``self._weights`` as a constant tensor on ``like``'s device (cached until changed)."""
        cache = self._weight_cache
        if cache is None or cache[0] != like.device or cache[1] != like.dtype:
            w = torch.tensor(self._weights, dtype=like.dtype).to(like.device, non_blocking=True)
            self._weight_cache = cache = (like.device, like.dtype, w)
        return cache[2]

    def _set_weights(self, weights: list[float]) -> None:
        self._weights = [float(w) for w in weights]
        self._weight_cache = None

    def _ordered(self, losses: Mapping[str, Tensor]) -> list[Tensor]:
        missing = [t for t in self.tasks if t not in losses]
        extra = [t for t in losses if t not in self.tasks]
        if missing or extra:
            raise MtcpError(
                f"{self.name} weighting expects losses for tasks {list(self.tasks)}; "
                f"missing {missing}, unexpected {extra}"
            )
        return [losses[t] for t in self.tasks]

    def _nonfinite(self, detached: Tensor) -> Tensor:
        bad = {t: float(v) for t, v in zip(self.tasks, detached.tolist()) if not math.isfinite(v)}
        where = ", ".join(f"task {t!r} = {v}" for t, v in bad.items())
        message = f"non-finite loss at step {self.step} (epoch {self.epoch}): {where}"
        if self.on_nonfinite == "raise":
            raise MtcpError(message + "; set on_nonfinite='skip' to skip such steps")
        warnings.warn(message + "; step skipped", RuntimeWarning, stacklevel=3)
        self.last_step_skipped = True
        return torch.zeros((), device=detached.device, requires_grad=True)

    @staticmethod
    def _acc_dtype(device: torch.device) -> torch.dtype:
        return torch.float32 if device.type == "mps" else torch.float64

    def _close_window(self) -> None:
        n = len(self.tasks)
        sums = self._sums if self._sums is not None else torch.zeros(n, dtype=torch.float64)
        packed = torch.cat([sums, sums.new_tensor([float(self._count)])])
        if dist.is_available() and dist.is_initialized():
            if dist.get_backend(self.process_group) == "nccl" and packed.device.type != "cuda":
                packed = packed.to(torch.device("cuda", torch.cuda.current_device()))
            dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=self.process_group)
        totals = packed.tolist()  # the one host sync per window
        self._sums, self._count = None, 0
        count = totals[-1]
        if count == 0:  # an empty window (e.g. epoch_end with window in steps) changes nothing
            return
        record: dict[str, Any] = {"window": self._windows, "step": self.step, "epoch": self.epoch}
        record.update(self._update([s / count for s in totals[:-1]]))
        record.setdefault("w", self.weights)
        self._history.append(record)
        self._windows += 1

    # --- checkpointing -----------------------------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "tasks": list(self.tasks),
            "step": self.step,
            "epoch": self.epoch,
            "windows": self._windows,
            "sums": None if self._sums is None else self._sums.detach().cpu().clone(),
            "count": self._count,
            "weights": list(self._weights),
            "history": [dict(r) for r in self._history],
            **self._extra_state(),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if list(state["tasks"]) != list(self.tasks):
            raise MtcpError(
                f"{self.name} weighting state is for tasks {state['tasks']}, "
                f"this scheme has {list(self.tasks)}"
            )
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self._windows = int(state["windows"])
        self._sums = None if state["sums"] is None else state["sums"].clone()
        self._count = int(state["count"])
        self._set_weights(state["weights"])
        self._history = [dict(r) for r in state["history"]]
        self._load_extra_state(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def extra_repr(self) -> str:
        return f"tasks={list(self.tasks)}, window={self.window!r}"
