"""Speed and memory of mtcp models, measured the same way on a CPU and on a GPU.

:func:`run_benchmark` builds a registered model and reports

- parameters (all and trainable);
- GFLOPs per image of one forward, counted by :class:`torch.utils.flop_counter.FlopCounterMode`
  (a multiply-add counts 2);
- the training step (forward, :class:`mtcp.losses.MultiTaskLoss` summed over tasks, backward,
  AdamW step, zero_grad) in images/s, and inference (eval mode, no autograd) in images/s:
  warm-up runs, then ``repeats`` timed runs, medians reported. On a GPU each run is timed with
  CUDA events and the host synchronises once after all runs (never inside a step); on a CPU
  wall time and process CPU time are both recorded (``cpu_s``: on a shared machine
  ``cpu_s / threads`` estimates the wall time on idle cores);
- peak memory of each phase: ``torch.cuda.max_memory_allocated`` on a GPU; the process's peak
  resident set (``VmHWM``, reset before each phase through ``/proc/self/clear_refs``; the
  lifetime ``ru_maxrss`` where that is unavailable) on a CPU — it includes the Python process
  and the libraries (~0.5 GiB).

Options: bf16 autocast, channels-last memory format, ``torch.compile``, model overrides
(e.g. ``grad_checkpointing=True``). :func:`format_markdown` renders results with the machine's
description as a Markdown table.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from mtcp.errors import MtcpError
from mtcp.inference.precision import cpu_bf16_support
from mtcp.tasks import get_task, resolve_tasks

NYUD_TASKS: dict[str, int] = {"semseg": 40, "depth": 1, "normals": 3}
PRECISIONS = ("fp32", "bf16")
DEVICES = ("cpu", "cuda")
GIB = 2**30
PHASES = ("train", "inference")


@dataclass
class BenchmarkConfig:
    """What to measure. ``size`` is ``(H, W)`` in pixels; ``model_args`` are overrides passed to
    :func:`mtcp.models.create_model` (e.g. ``{"grad_checkpointing": True}``)."""

    model: str = "mtcp_tiny"
    size: tuple[int, int] = (240, 320)
    batch: int = 1
    tasks: Mapping[str, int] | Sequence[str] = field(default_factory=lambda: dict(NYUD_TASKS))
    device: str = "cpu"
    precision: str = "fp32"
    compile: bool = False
    channels_last: bool = False
    warmup: int = 1
    repeats: int = 3
    train: bool = True
    inference: bool = True
    flops: bool = True  # count GFLOPs (one more forward of one image)
    model_args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`MtcpError` for settings that cannot be measured."""
        if self.device not in DEVICES:
            raise MtcpError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise MtcpError("device 'cuda' requested but torch sees no CUDA GPU")
        if self.precision not in PRECISIONS:
            raise MtcpError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.batch < 1 or self.repeats < 1 or self.warmup < 0:
            raise MtcpError(
                f"batch and repeats must be >= 1 and warmup >= 0; got batch={self.batch}, "
                f"repeats={self.repeats}, warmup={self.warmup}"
            )
        if min(self.size) < 1:
            raise MtcpError(f"size must be positive, got {self.size}")


# ----------------------------------------------------------------------------- machine


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


# ----------------------------------------------------------------------------- memory


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


# ----------------------------------------------------------------------------- timing


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


def _summary(runs: dict[str, Any], batch: int) -> dict[str, Any]:
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


# ----------------------------------------------------------------------------- inputs


def random_batch(
    tasks: Mapping[str, int], batch: int, size: tuple[int, int], device: str = "cpu", seed: int = 0
) -> dict[str, Any]:
    """A random batch following the conventions of :mod:`mtcp.tasks` (image and targets).

    Shapes: ``image [B, 3, H, W]``; class tasks ``[B, H, W]`` int64; others ``[B, C, H, W]``.
    """
    g = torch.Generator().manual_seed(seed)
    h, w = size
    out: dict[str, Any] = {"image": torch.randn(batch, 3, h, w, generator=g)}
    for task, channels in tasks.items():
        kind = get_task(task).kind
        if kind == "classes":
            out[task] = torch.randint(0, channels, (batch, h, w), generator=g)
        elif kind == "depth":
            out[task] = 0.5 + 9.5 * torch.rand(batch, 1, h, w, generator=g)
        elif kind == "normals":
            normals = F.normalize(torch.randn(batch, 3, h, w, generator=g), dim=1)
            out[task] = normals * -normals[:, 2:].sign()  # facing the camera: z <= 0
        else:  # binary maps: edge, sal
            out[task] = (torch.rand(batch, 1, h, w, generator=g) > 0.8).float()
    return {k: v.to(device, non_blocking=True) for k, v in out.items()}


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


def _autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_train_step(
    model: nn.Module,
    batch: Mapping[str, Any],
    tasks: Mapping[str, int],
    device: str,
    precision: str = "fp32",
    lr: float = 1e-5,
) -> Callable[[], None]:
    """A closure running one training step on ``batch``: forward (under autocast for bf16),
    :class:`mtcp.losses.MultiTaskLoss` summed over ``tasks``, backward, AdamW step, zero_grad.
    Nothing in it reads a value back to the host."""
    from mtcp.losses import MultiTaskLoss

    loss_fn = MultiTaskLoss(tasks)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, fused=device == "cuda")
    image = batch["image"]

    def step() -> None:
        with _autocast(device, precision):
            losses = loss_fn(model(image), batch)
        torch.stack([v.float() for v in losses.values()]).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def make_inference(model: nn.Module, image: Tensor, device: str, precision: str) -> Callable:
    """A closure running one eval-mode forward without autograd."""
    no_grad = torch.no_grad if hasattr(model, "_orig_mod") else torch.inference_mode

    def infer() -> None:
        with no_grad(), _autocast(device, precision):
            model(image)

    return infer


# ----------------------------------------------------------------------------- main entry


def run_benchmark(config: BenchmarkConfig, command: str | None = None) -> dict[str, Any]:
    """Measure ``config``; returns a JSON-serialisable dict (see the module docstring)."""
    from mtcp.models import create_model

    config.check()
    device = config.device
    tasks = resolve_tasks(config.tasks)
    torch.manual_seed(config.seed)
    model = create_model(config.model, tasks, **config.model_args).to(device)
    batch = random_batch(tasks, config.batch, config.size, device, config.seed)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    n_all, n_train = count_parameters(model)
    result: dict[str, Any] = {
        "config": {**asdict(config), "tasks": tasks, "size": list(config.size)},
        "machine": machine_info(device, command),
        "parameters": n_all,
        "trainable_parameters": n_train,
    }
    if config.flops:  # FLOPs are linear in the batch: count one image
        result["gflops_per_image"] = forward_gflops(model.eval(), batch["image"][:1])
    runner: nn.Module = torch.compile(model) if config.compile else model
    if config.train:
        model.train()
        step = make_train_step(runner, batch, tasks, device, config.precision)
        with PeakMemory(device) as mem:
            runs = time_runs(step, device, config.warmup, config.repeats)
        result["train"] = {
            **_summary(runs, config.batch),
            "peak_memory_gib": mem.gib,
            "memory": mem.kind,
        }
    if config.inference:
        model.eval()
        infer = make_inference(runner, batch["image"], device, config.precision)
        with PeakMemory(device) as mem:
            runs = time_runs(infer, device, config.warmup, config.repeats)
        result["inference"] = {
            **_summary(runs, config.batch),
            "peak_memory_gib": mem.gib,
            "memory": mem.kind,
        }
    return result


# ----------------------------------------------------------------------------- attention


def matmul_tflops(device: str, dtype: torch.dtype = torch.bfloat16, n: int = 8192) -> float:
    """Measured dense ``n x n @ n x n`` matmul rate in TFLOP/s (median of 10 after warm-up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    runs = time_runs(lambda: torch.matmul(a, b), device, warmup=3, repeats=10)
    return 2 * n**3 / (statistics.median(runs["ms"]) / 1000) / 1e12


def attention_benchmark(
    impl: str,
    batch: int = 2,
    tokens: int = 19_200,
    query_channels: int = 512,
    value_channels: int = 256,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    backward: bool = True,
    chunk_size: int | None = None,
    warmup: int = 1,
    repeats: int = 3,
) -> dict[str, Any]:
    """Time and peak memory of one CFM attention ``softmax(Q Kᵀ) V`` (no scale).

    ``impl``: ``"dense"``, ``"chunked"`` (mtcp's exact recomputing form, ``chunk_size=None`` =
    automatic) or ``"sdpa"`` (``scaled_dot_product_attention``, scale 1). The memory figure
    includes the inputs (and their gradients with ``backward``).
    """
    from mtcp.models.attention import auto_chunk_size, chunked_attention, dense_attention

    def sdpa(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=1.0)
        return out[:, 0]

    fns: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
        "dense": dense_attention,
        "chunked": lambda q, k, v: chunked_attention(q, k, v, chunk_size),
        "sdpa": sdpa,
    }
    if impl not in fns:
        raise MtcpError(f"attention impl must be one of {sorted(fns)}, got {impl!r}")
    with PeakMemory(device) as mem:
        shapes = [(query_channels, 0.05), (query_channels, 0.05), (value_channels, 1.0)]
        q, k, v = (
            (torch.randn(batch, tokens, c, device=device) * s).to(dtype).requires_grad_(backward)
            for c, s in shapes
        )
        grad = torch.randn(batch, tokens, value_channels, device=device, dtype=dtype)

        def run() -> None:
            if backward:
                fns[impl](q, k, v).backward(grad)
                q.grad = k.grad = v.grad = None
            else:
                with torch.no_grad():
                    fns[impl](q, k, v)

        runs = time_runs(run, device, warmup, repeats)
    out = {
        "impl": impl,
        "batch": batch,
        "tokens": tokens,
        "dtype": str(dtype).removeprefix("torch."),
        "backward": backward,
        **_summary(runs, 1),
        "peak_memory_gib": mem.gib,
        "added_memory_gib": mem.added_gib,  # inputs, gradients and the op's working memory
        "memory": mem.kind,
    }
    if impl == "chunked":
        out["chunk_size"] = chunk_size or auto_chunk_size(batch, tokens, device)
    for key in ("img_per_s", "ms_per_image"):
        out.pop(key)
    return out


# ----------------------------------------------------------------------------- report


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


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


RESULT_COLUMNS = (
    "model",
    "size",
    "batch",
    "device",
    "precision",
    "compile",
    "channels-last",
    "params (M)",
    "GFLOPs/img",
    "train img/s",
    "train ms/step",
    "train CPU-s/step",
    "train peak GiB",
    "infer img/s",
    "infer ms/img",
    "infer CPU-s/batch",
    "infer peak GiB",
)


def result_row(result: Mapping[str, Any]) -> list[str]:
    """One table row (:data:`RESULT_COLUMNS`) of a :func:`run_benchmark` result."""
    c = result["config"]
    train, infer = result.get("train", {}), result.get("inference", {})
    model = c["model"] + "".join(f" {k}={v}" for k, v in c.get("model_args", {}).items())
    return [
        model,
        "x".join(map(str, c["size"])),
        str(c["batch"]),
        c["device"],
        c["precision"],
        "yes" if c["compile"] else "no",
        "yes" if c["channels_last"] else "no",
        _fmt(result["parameters"] / 1e6, 1),
        _fmt(result.get("gflops_per_image"), 1),
        _fmt(train.get("img_per_s")),
        _fmt(train.get("ms_median"), 1),
        _fmt(train.get("cpu_s_median")),
        _fmt(train.get("peak_memory_gib")),
        _fmt(infer.get("img_per_s")),
        _fmt(infer.get("ms_per_image"), 1),
        _fmt(infer.get("cpu_s_median")),
        _fmt(infer.get("peak_memory_gib")),
    ]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_markdown(results: Sequence[Mapping[str, Any]]) -> str:
    """Machine description (of the first result) and one table row per result."""
    if not results:
        return ""
    lines = machine_lines(results[0]["machine"])
    first = results[0]["config"]
    mem = ", ".join(sorted({r[p]["memory"] for r in results for p in PHASES if p in r}))
    timing = "CUDA events" if first["device"] == "cuda" else "wall clock; CPU-s = process CPU time"
    lines.append(
        f"- medians of {first['repeats']} timed run(s) after {first['warmup']} warm-up; "
        f"time: {timing}; memory: {mem}"
    )
    table = markdown_table(RESULT_COLUMNS, [result_row(r) for r in results])
    return "\n".join(lines) + "\n\n" + table


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
