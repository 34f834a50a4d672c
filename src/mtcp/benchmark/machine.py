"""Where and when a measurement ran: the machine's description and torch's thread count."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from mtcp.inference.precision import cpu_bf16_support

GIB = 2**30


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info(device: str = "cpu", command: str | None = None) -> dict[str, Any]:
    """Where and when a measurement ran: CPU, cores, threads, torch, GPU, date, command."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_bf16_support() or "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / GIB, 1)
        info["cuda"] = torch.version.cuda
    if command:
        info["command"] = command
    return info


def machine_lines(machine: Mapping[str, Any]) -> list[str]:
    """Markdown bullet lines describing ``machine`` (see :func:`machine_info`)."""
    keys = (
        "date",
        "cpu",
        "cores",
        "threads",
        "cpu_capability",
        "native_bf16",
        "load_average_1min",
        "gpu",
        "gpu_memory_gib",
        "cuda",
        "torch",
        "python",
        "platform",
    )
    lines = [f"- {k}: {machine[k]}" for k in keys if k in machine]
    if machine.get("command"):
        lines.append(f"- command: `{machine['command']}`")
    return lines


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (``None``: leave it)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
