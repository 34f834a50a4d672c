"""Speed and memory of one registered model: :func:`run_benchmark`, the same way on a CPU and
on a GPU.

:func:`run_benchmark` builds a registered model and reports

- parameters (all and trainable);
- GFLOPs per image of one forward (:func:`~mtcp.benchmark.timing.forward_gflops`);
- the training step (forward, :class:`mtcp.losses.MultiTaskLoss` summed over tasks, backward,
  AdamW step, zero_grad) in images/s, and inference (eval mode, no autograd) in images/s:
  warm-up runs, then ``repeats`` timed runs, medians reported
  (:func:`~mtcp.benchmark.timing.time_runs`);
- peak memory of each phase (:class:`~mtcp.benchmark.timing.PeakMemory`).

Options: bf16 autocast, channels-last memory format, ``torch.compile``, model overrides
(e.g. ``grad_checkpointing=True``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtcp.benchmark.machine import machine_info
from mtcp.benchmark.timing import (
    PeakMemory,
    count_parameters,
    forward_gflops,
    summarise_runs,
    time_runs,
)
from mtcp.errors import MtcpError
from mtcp.tasks import get_task, resolve_tasks

NYUD_TASKS: dict[str, int] = {"semseg": 40, "depth": 1, "normals": 3}
PRECISIONS = ("fp32", "bf16")
DEVICES = ("cpu", "cuda")
#: the timed phases of a :func:`run_benchmark` result
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
            **summarise_runs(runs, config.batch),
            "peak_memory_gib": mem.gib,
            "memory": mem.kind,
        }
    if config.inference:
        model.eval()
        infer = make_inference(runner, batch["image"], device, config.precision)
        with PeakMemory(device) as mem:
            runs = time_runs(infer, device, config.warmup, config.repeats)
        result["inference"] = {
            **summarise_runs(runs, config.batch),
            "peak_memory_gib": mem.gib,
            "memory": mem.kind,
        }
    return result
