"""Deployment writers: weights-only ``.safetensors`` and ONNX graphs.

The readers (:func:`~mtcp.inference.formats.load_safetensors`,
:func:`~mtcp.inference.formats.safetensors_metadata`), the onnxruntime runner
(:class:`~mtcp.inference.onnx_runtime.OnnxModel`) and the facts both sides share (the names
:data:`~mtcp.inference.formats.METADATA_KEY` and :data:`~mtcp.inference.formats.INPUT_NAME`)
live in :mod:`mtcp.inference`, the lower layer.

>>> import mtcp
>>> from mtcp.export import export_onnx, save_safetensors
>>> from mtcp.inference.onnx_runtime import OnnxModel
>>> model = mtcp.create_model("mtcp_tiny", tasks=["semseg", "depth"])
>>> save_safetensors(model, "tiny.safetensors", size=(240, 320))
>>> export_onnx(model, "tiny.onnx", size=(240, 320))
>>> OnnxModel("tiny.onnx")(image)["depth"].shape        # image: normalised [1, 3, 240, 320]

Both files carry the same JSON metadata entry ``"mtcp"`` (safetensors metadata, ONNX
``metadata_props``)::

    {"model": <model.config>, "tasks": {task: channels}, "size": [H, W] | null,
     "intrinsics": [fx, fy, cx, cy] | null, "review": <calibration> | null}

``model`` rebuilds the architecture with ``mtcp.create_model(**model)``; ``size`` is the input
size the model expects (its training size, or the export size), ``intrinsics`` the training
camera at that size. Nothing in either file needs unpickling.

ONNX graph: one input ``"image"`` (ImageNet-normalised float32 ``[B, 3, H, W]``) and one output
per task, named by the task key (``[B, C_task, H, W]``, units of :mod:`mtcp.tasks`). A static
export fixes ``B = 1`` and ``H x W``; ``dynamic=True`` leaves B, H and W free.

onnx and onnxruntime are optional (``pip install 'mtcp[export]'``) and imported lazily.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtcp.errors import MtcpError
from mtcp.inference.formats import INPUT_NAME, METADATA_KEY, require_export
from mtcp.inference.onnx_runtime import OnnxModel
from mtcp.io import atomic_path

__all__ = ["ONNX_OPSET", "ONNX_TOLERANCE", "export_onnx", "relative_error", "save_safetensors"]

#: 17 (onnxruntime >= 1.17); 20 writes GELU as one node but ran int8 no faster (BENCHMARKS.md)
ONNX_OPSET = 17
#: largest accepted ``max|onnx - torch| / max|torch|`` per task when an export is verified
ONNX_TOLERANCE = 1e-3


def _metadata(
    model: nn.Module,
    size: Sequence[int] | None,
    intrinsics: Sequence[float] | None,
    review: dict[str, Any] | None = None,
) -> dict[str, Any]:
    config = dict(getattr(model, "config", None) or {})
    if "name" not in config:
        raise MtcpError(
            f"{type(model).__name__} has no model.config to rebuild it from; build the model "
            "with mtcp.create_model(...)"
        )
    return {
        "model": config,
        "tasks": dict(model.tasks),
        "size": None if size is None else [int(size[0]), int(size[1])],
        "intrinsics": None if intrinsics is None else [float(v) for v in intrinsics],
        # the review calibration (mtcp.inference.review), None for an uncalibrated model
        "review": review,
    }


def _check_size(model: nn.Module, size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or any(int(s) != s for s in size):
        raise MtcpError(f"size must be (H, W) in pixels, got {tuple(size)}")
    h, w = int(size[0]), int(size[1])
    smallest = int(getattr(model, "min_size", 1))
    if min(h, w) < smallest:
        raise MtcpError(f"size {h}x{w} is smaller than the model's minimum {smallest}x{smallest}")
    return h, w


# ----------------------------------------------------------------------------- safetensors


def save_safetensors(
    model: nn.Module,
    path: str | os.PathLike[str],
    size: Sequence[int] | None = None,
    intrinsics: Sequence[float] | None = None,
    review: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights (parameters and buffers) as ``.safetensors``, atomically.

    Args:
        model: a model from :func:`mtcp.create_model` (it needs ``model.config``).
        path: output file.
        size: input size ``(H, W)`` the model expects (its training size), stored for
            :func:`mtcp.load`.
        intrinsics: ``(fx, fy, cx, cy)`` of the training camera at ``size``, if known.
        review: the review calibration of the checkpoint (:mod:`mtcp.inference.review`).

    Returns:
        ``path``. The config and the rest of the metadata are in the ``"mtcp"`` entry.
    """
    from safetensors.torch import save_model

    meta = _metadata(model, size, intrinsics, review)
    with atomic_path(path) as tmp:
        save_model(
            model, str(tmp), metadata={METADATA_KEY: json.dumps(meta)}, force_contiguous=True
        )
    return Path(path)


# ----------------------------------------------------------------------------- ONNX


@contextlib.contextmanager
def _export_mode(model: nn.Module, dense_attention: bool) -> Iterator[None]:
    """Eval mode, no autograd, and (optionally) the loop-free CFM attention; restored after.

    The chunked CFM attention unrolls its query loop for the traced token count, so a graph
    with free H and W uses the dense form (same function, more memory for large inputs).
    """
    from mtcp.models.attention import CoherenceAttention

    attentions = [m for m in model.modules() if isinstance(m, CoherenceAttention)]
    impls = [m.impl for m in attentions]
    was_training = model.training
    model.eval()
    if dense_attention:
        for m in attentions:
            m.impl = "dense"
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter is deprecated in favour of dynamo=True, which takes
            # minutes instead of seconds for mtcp's Swin decoders (shape guards); its
            # TracerWarnings about Python-side shape arithmetic are checked by _verify_onnx
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            yield
    finally:
        for m, impl in zip(attentions, impls):
            m.impl = impl
        model.train(was_training)


def relative_error(actual: Tensor, expected: Tensor) -> float:
    """``max|actual - expected| / max|expected|`` (``inf`` when the shapes differ)."""
    if actual.shape != expected.shape:
        return float("inf")
    scale = expected.abs().max().clamp_min(1e-12)
    return float((actual - expected).abs().max() / scale)


_BAKED_HINT = (
    "; the model turns this input size into Python numbers while tracing, so it cannot be "
    "exported with dynamic=True (export at a fixed size instead)"
)


def _verify_onnx(model: nn.Module, tmp: Path, path: Path, sizes: Sequence[tuple[int, int]]) -> None:
    """Run the exported file ``tmp`` (to become ``path``) at each size; compare with PyTorch."""
    runner = OnnxModel(tmp)
    device = next(model.parameters()).device
    hint = _BAKED_HINT if len(sizes) > 1 else ""
    for h, w in sizes:
        image = torch.randn(1, 3, h, w, device=device)
        expected = model(image)
        try:
            actual = runner(image.cpu())
        except Exception as err:  # e.g. shapes baked into a dynamic graph
            raise MtcpError(
                f"{path}: the exported graph fails on a {h}x{w} image: {str(err).strip()}{hint}"
            ) from None
        for task in model.tasks:
            err = relative_error(actual[task], expected[task].float().cpu())
            if not err <= ONNX_TOLERANCE:
                raise MtcpError(
                    f"{path}: the ONNX output {task!r} at {h}x{w} differs from PyTorch (relative "
                    f"error {err:.2g} > {ONNX_TOLERANCE:g}){hint}"
                )


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    size: Sequence[int] = (240, 320),
    dynamic: bool = False,
    opset: int = ONNX_OPSET,
    intrinsics: Sequence[float] | None = None,
    verify: bool = True,
    review: dict[str, Any] | None = None,
) -> Path:
    """Export ``model`` (in eval mode) to ONNX, check the file and write it atomically.

    Args:
        model: a model from :func:`mtcp.create_model` (it needs ``model.config``).
        path: output ``.onnx`` file.
        size: input ``(H, W)``: fixed for a static export; for ``dynamic=True`` the size the
            graph is traced at and the preferred inference size stored in the metadata.
        dynamic: leave batch, height and width free (``[B, 3, H, W]``); otherwise ``[1, 3, H, W]``.
        opset: ONNX opset version.
        intrinsics: ``(fx, fy, cx, cy)`` of the training camera at ``size``, stored in the
            metadata.
        verify: run the file with onnxruntime on a random image and require every task to match
            PyTorch within :data:`ONNX_TOLERANCE`; a dynamic export is also checked at a second
            size that is no multiple of the backbone's stride.
        review: the review calibration of the checkpoint, stored in the metadata.

    Returns:
        ``path``.
    """
    onnx, _ = require_export("onnx", "onnxruntime")
    h, w = _check_size(model, size)
    meta = _metadata(model, (h, w), intrinsics, review)
    tasks = list(model.tasks)
    axes = {0: "batch", 2: "height", 3: "width"}
    dynamic_axes = {name: axes for name in [INPUT_NAME, *tasks]} if dynamic else None
    device = next(model.parameters()).device
    with _export_mode(model, dense_attention=dynamic), atomic_path(path) as tmp:
        torch.onnx.export(
            model,
            (torch.randn(1, 3, h, w, device=device),),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=tasks,
            opset_version=opset,
            dynamic_axes=dynamic_axes,
            dynamo=False,
        )
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(meta)})
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
        if verify:
            sizes = [(h, w), (h + 40, w + 24)] if dynamic else [(h, w)]
            _verify_onnx(model, tmp, Path(path), sizes)
    return Path(path)
