"""Measuring tools: peak memory, timed runs, FLOP and host-sync counts, parameter counts.

Timing: on a GPU each run is timed with CUDA events and the host synchronises once after all
runs (never inside a step); on a CPU wall time and process CPU time are both recorded
(``cpu_s``: on a shared machine ``cpu_s / threads`` estimates the wall time on idle cores).

Memory: ``torch.cuda.max_memory_allocated`` on a GPU; the process's peak resident set
(``VmHWM``, reset on entry through ``/proc/self/clear_refs``; the lifetime ``ru_maxrss`` where
that is unavailable) on a CPU — it includes the Python process and the libraries (~0.5 GiB).

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` (a multiply-add
counts 2).
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from mtcp.benchmark.machine import GIB


def _proc_status(key: str) -> int | None:
    """A memory figure of ``/proc/self/status`` in bytes (``VmHWM``, ``VmRSS``), or None."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    return None


class PeakMemory:
    """Peak memory of a block in bytes: CUDA allocator peak, or the process's peak RSS.

    On Linux the RSS peak (``VmHWM``) is reset on entry by writing ``5`` to
    ``/proc/self/clear_refs``; where that fails, :attr:`kind` says the figure is the
    process-lifetime ``ru_maxrss``.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.kind = "cuda max_memory_allocated" if device == "cuda" else "process peak RSS"
        self.base = 0  # memory in use on entry (allocated tensors / resident set)
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        self.base = _proc_status("VmRSS") or 0
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.kind = "process lifetime ru_maxrss"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
            return
        hwm = _proc_status("VmHWM") if self.kind == "process peak RSS" else None
        self.peak = hwm or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    @property
    def gib(self) -> float:
        """Peak in GiB."""
        return self.peak / GIB

    @property
    def added_gib(self) -> float:
        """Peak above the memory in use on entry, in GiB."""
        return (self.peak - self.base) / GIB


def time_runs(fn: Callable[[], Any], device: str, warmup: int, repeats: int) -> dict[str, Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    Returns per-run ``ms`` (CUDA events on a GPU, wall clock on a CPU) and, on a CPU, ``cpu_s``
    (process CPU seconds: all threads). On a GPU the host waits once, after the last run.
    """
    for _ in range(warmup):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(repeats)
        ]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return {"ms": [start.elapsed_time(end) for start, end in events]}
    ms, cpu_s = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        ms.append(1000 * (time.perf_counter() - wall))
        cpu_s.append(time.process_time() - cpu)
    return {"ms": ms, "cpu_s": cpu_s}


def summarise_runs(runs: dict[str, Any], batch: int) -> dict[str, Any]:
    """Medians of :func:`time_runs` output: images/s, ms per run and per image, CPU-s."""
    ms = statistics.median(runs["ms"])
    out = {
        "img_per_s": 1000 * batch / ms,
        "ms_median": ms,
        "ms_min": min(runs["ms"]),
        "ms_per_image": ms / batch,
        "runs": len(runs["ms"]),
    }
    if "cpu_s" in runs:
        out["cpu_s_median"] = statistics.median(runs["cpu_s"])
    return out


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(all, trainable)`` parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def forward_gflops(model: nn.Module, image: Tensor) -> float:
    """GFLOPs per image of one forward of ``model`` on ``image [B, 3, H, W]`` (no autograd),
    as counted by :class:`FlopCounterMode` (a multiply-add is 2 FLOPs)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image)
    return counter.get_total_flops() / image.shape[0] / 1e9


def counted_gflops(fn: Callable[[], Any]) -> float:
    """GFLOPs executed by ``fn()`` (e.g. a whole training step, recomputation included)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def count_host_syncs(fn: Callable[[], Any]) -> int:
    """Host-device synchronisations during ``fn()`` on a GPU, as reported by
    ``torch.cuda.set_sync_debug_mode`` (``.item()``, ``nonzero``, copies to the host, ...)."""
    import warnings

    before = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode(before)
    return sum("synchroniz" in str(w.message) for w in caught)
