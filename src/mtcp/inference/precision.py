"""Reduced-precision inference: ``mtcp.load(path, precision="bf16")``.

================  ===========================================================================
precision         how it runs
================  ===========================================================================
``"fp32"``        the model as trained (default)
``"bf16"``        PyTorch autocast to bfloat16 on the device; convolution and linear weights
                  are stored in bf16 (half the weight memory, no cast per call). Needs native
                  bf16 matrix instructions on a CPU (AVX512_BF16 or AMX on x86, BF16 on Arm):
                  without them it falls back to fp32 with a :class:`PrecisionWarning`, because
                  emulated bf16 is slower than fp32.
``"int8"``        a statically quantized ONNX graph run by onnxruntime: write it with
                  ``mtcp export --format onnx --quantize int8`` (:mod:`mtcp.export.quantize`),
                  then load that ``.onnx`` file.
================  ===========================================================================

What stays fp32 under ``"bf16"`` (the rest — convolutions, linear layers, the attention
matrix products — runs in bf16 with fp32 accumulation inside oneDNN):

* normalisations (LayerNorm, BatchNorm, GroupNorm): inputs cast to fp32, weights kept fp32, so
  the statistics and the normalised output are fp32 (:data:`FP32_MODULES`);
* every task's output head (``model.heads``: :class:`mtcp.models.heads.FinalHead` or the
  release's heads) runs with autocast off on fp32 weights and inputs, so depth (metres),
  normals and logits leave the network in fp32 and are resized in fp32;
* softmax statistics of the CFM and Swin attention: PyTorch's CPU and CUDA softmax kernels
  compute the row maximum and the sum of exponentials of bf16 logits in fp32 (``opmath``) and
  round only the probabilities to bf16 (see :func:`mtcp.models.attention.coherence_attention`,
  which casts q, k, v to the autocast dtype once).
"""

from __future__ import annotations

import contextlib
import functools
import platform
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from mtcp.errors import MtcpError

PRECISIONS = ("fp32", "bf16", "int8")
#: modules whose inputs are cast to fp32 (and whose weights stay fp32) under ``"bf16"``
FP32_MODULES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._BatchNorm,
)
#: modules whose parameters are stored in bf16 under ``"bf16"`` (autocast runs them in bf16)
BF16_MODULES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)
INT8_HINT = (
    "int8 runs as a statically quantized ONNX graph through onnxruntime: write one with "
    "'mtcp export CKPT --format onnx --quantize int8 --out model.int8.onnx' and load that file"
)


class PrecisionWarning(UserWarning):
    """A requested precision is not available here; the model runs in another one."""


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_bf16_support() -> str | None:
    """The native bf16 matrix instructions of this CPU (``"AMX"``, ``"AVX512_BF16"``,
    ``"ARM_BF16"``), or None when bf16 would be emulated (slower than fp32)."""
    cpu = torch.cpu
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        return "AMX"
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "AVX512_BF16"
    flags = _cpu_flags()
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512_BF16"
    if "bf16" in flags and platform.machine().lower() in ("aarch64", "arm64"):
        return "ARM_BF16"
    return None


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """The precision a torch model will run in on ``device`` for the requested ``precision``.

    ``"bf16"`` on a CPU without native bf16 instructions (or a GPU without bf16) falls back to
    ``"fp32"`` with a :class:`PrecisionWarning` saying why. ``"int8"`` is refused for a torch
    model (it needs a quantized ONNX graph, see :data:`INT8_HINT`).

    Raises:
        MtcpError: an unknown precision, or ``"int8"``.
    """
    if precision not in PRECISIONS:
        raise MtcpError(f"unknown precision {precision!r}; accepted: {', '.join(PRECISIONS)}")
    if precision == "int8":
        raise MtcpError(INT8_HINT)
    if precision == "bf16":
        kind = torch.device(device).type
        if kind == "cpu" and cpu_bf16_support() is None:
            capability = torch.backends.cpu.get_cpu_capability()
            warnings.warn(
                "precision bf16 requested, but this CPU has no native bf16 instructions "
                f"(AVX512_BF16 or AMX; torch reports {capability}): emulated bf16 runs slower "
                "than fp32, so the model runs in fp32",
                PrecisionWarning,
                stacklevel=2,
            )
            return "fp32"
        if kind == "cuda" and not torch.cuda.is_bf16_supported():
            warnings.warn(
                "precision bf16 requested, but this GPU has no bf16 support: the model runs in "
                "fp32",
                PrecisionWarning,
                stacklevel=2,
            )
            return "fp32"
    return precision


def _to_fp32(module: nn.Module, args: tuple) -> tuple:
    return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


class _Fp32Region:
    """Forward hooks that run a module with autocast off and fp32 inputs."""

    def __init__(self) -> None:
        self._stack: list[contextlib.AbstractContextManager] = []

    def enter(self, module: nn.Module, args: tuple) -> tuple:
        device = next((a.device.type for a in args if torch.is_tensor(a)), "cpu")
        ctx = torch.autocast(device, enabled=False)
        ctx.__enter__()
        self._stack.append(ctx)
        return _to_fp32(module, args)

    def exit(self, module: nn.Module, args: tuple, output: object) -> None:
        self._stack.pop().__exit__(None, None, None)


def _fp32_heads(model: nn.Module) -> list[nn.Module]:
    """Every task's output head: the values of ``model.heads`` (mtcp's models and baselines
    keep them there, whichever head family, see :mod:`mtcp.models.heads`)."""
    heads = getattr(model, "heads", None)
    return list(heads.values()) if isinstance(heads, nn.ModuleDict) else []


def prepare_model(model: nn.Module, precision: str) -> nn.Module:
    """Make ``model`` (in place) ready to run in ``precision`` under :func:`autocast`.

    ``"fp32"``: unchanged. ``"bf16"``: parameters of convolutions and linear layers outside the
    fp32 parts (module docstring) are stored in bf16; forward hooks keep the fp32 parts in fp32.
    Calling it twice is harmless. Returns ``model``.
    """
    if precision != "bf16" or getattr(model, "_mtcp_precision", "fp32") == "bf16":
        return model
    heads = _fp32_heads(model)
    keep = {id(m) for head in heads for m in head.modules()}
    for module in model.modules():
        if isinstance(module, FP32_MODULES):
            module.register_forward_pre_hook(_to_fp32)
        elif isinstance(module, BF16_MODULES) and id(module) not in keep:
            module.to(torch.bfloat16)
    region = _Fp32Region()
    for head in heads:
        head.register_forward_pre_hook(region.enter)
        head.register_forward_hook(region.exit, always_call=True)
    model._mtcp_precision = "bf16"
    return model


@contextlib.contextmanager
def autocast(precision: str, device: str | torch.device = "cpu") -> Iterator[None]:
    """The context a model prepared by :func:`prepare_model` runs in (``"fp32"``: none)."""
    if precision != "bf16":
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        yield


def onnx_precision(meta: dict) -> str:
    """``"int8"`` for a graph written by :func:`mtcp.export.quantize.quantize_onnx` (its
    metadata says so), else ``"fp32"``."""
    return str(meta.get("precision", "fp32"))


def check_onnx_precision(requested: str | None, meta: dict, path: str | Path) -> str:
    """The precision of an ONNX graph, checked against the ``requested`` one (None: any).

    Raises:
        MtcpError: the graph is in another precision than requested.
    """
    actual = onnx_precision(meta)
    if requested is None or requested == actual:
        return actual
    if requested not in PRECISIONS:
        raise MtcpError(f"unknown precision {requested!r}; accepted: {', '.join(PRECISIONS)}")
    hint = f"; {INT8_HINT}" if requested == "int8" else ""
    raise MtcpError(
        f"{path}: an {actual} ONNX graph cannot run in {requested} (onnxruntime runs the graph "
        f"as exported){hint}"
    )
