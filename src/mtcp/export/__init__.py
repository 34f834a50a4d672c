"""Deployment formats: weights-only ``.safetensors`` and ONNX, plus an onnxruntime runner.

>>> import mtcp
>>> from mtcp.export import export_onnx, OnnxModel, save_safetensors, load_safetensors
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

import numpy as np
import torch
from torch import Tensor, nn

from mtcp.errors import MtcpError
from mtcp.io import atomic_path

METADATA_KEY = "mtcp"
INPUT_NAME = "image"
ONNX_OPSET = 17
#: largest accepted ``max|onnx - torch| / max|torch|`` per task when an export is verified
ONNX_TOLERANCE = 1e-3


def _require(*modules: str) -> list[Any]:
    """Import the optional export dependencies or raise a :class:`MtcpError` naming the extra."""
    import importlib

    try:
        return [importlib.import_module(m) for m in modules]
    except ImportError as err:
        raise MtcpError(
            f"{err.name} is not installed: ONNX export and inference need the 'export' extra "
            "(pip install 'mtcp[export]')"
        ) from None


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


def safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``"mtcp"`` metadata entry of a ``.safetensors`` file (see the module docstring)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise MtcpError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise MtcpError(f"{path}: not a safetensors file ({err})") from None
    if METADATA_KEY not in metadata:
        raise MtcpError(
            f"{path}: safetensors file without the {METADATA_KEY!r} metadata entry (the model "
            "config), so the model cannot be rebuilt; write it with mtcp export --format "
            "safetensors or mtcp.export.save_safetensors"
        )
    try:
        meta = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as err:
        raise MtcpError(f"{path}: the {METADATA_KEY!r} metadata is not JSON ({err})") from None
    if not isinstance(meta, dict) or "name" not in (meta.get("model") or {}):
        raise MtcpError(f"{path}: the {METADATA_KEY!r} metadata has no model config")
    return meta


def load_safetensors(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model stored by :func:`save_safetensors`, load its weights strictly.

    Returns:
        the model in eval mode on ``device``.
    """
    from safetensors.torch import load_model

    from mtcp.models.registry import create_model

    meta = safetensors_metadata(path)
    try:
        model = create_model(**meta["model"])
    except (MtcpError, TypeError) as err:
        raise MtcpError(f"{path}: cannot rebuild the model from its stored config: {err}") from None
    try:
        load_model(model, str(path), strict=True)
    except RuntimeError as err:
        name = meta["model"]["name"]
        raise MtcpError(f"{path}: weights do not fit model {name!r}: {err}") from None
    return model.to(device).eval()


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
    onnx, _ = _require("onnx", "onnxruntime")
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


class OnnxModel:
    """An exported ONNX file run by onnxruntime, called like the PyTorch model.

    ``OnnxModel(path)(image)`` takes a normalised float ``[B, 3, H, W]`` tensor or numpy array
    and returns ``{task: Tensor [B, C_task, H, W]}`` on the CPU. A static file (batch 1) runs a
    larger batch one image at a time. ``.to()`` and ``.eval()`` return the runner itself, so
    code written for the torch model (e.g. :class:`mtcp.inference.Predictor`) accepts it.

    Attributes:
        tasks: ``{task: channels}``.
        input_size: fixed ``(H, W)`` of a static export, None for a dynamic one.
        meta: the ``"mtcp"`` metadata (model config, tasks, size, intrinsics).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int | None = None,
    ) -> None:
        (ort,) = _require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise MtcpError(f"{self.path}: no such file")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=list(providers))
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise MtcpError(f"{self.path}: not a readable ONNX model ({err})") from None
        inputs = self.session.get_inputs()
        if [i.name for i in inputs] != [INPUT_NAME]:
            raise MtcpError(
                f"{self.path}: expected one input named {INPUT_NAME!r}, got "
                f"{[i.name for i in inputs]} (export it with mtcp export)"
            )
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        self.meta: dict[str, Any] = json.loads(raw) if raw else {}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.tasks: dict[str, int] = dict(
            self.meta.get("tasks") or {o.name: o.shape[1] for o in self.session.get_outputs()}
        )
        batch, _, h, w = inputs[0].shape
        self.batch = batch if isinstance(batch, int) else None
        self.input_size = (h, w) if isinstance(h, int) and isinstance(w, int) else None

    def to(self, device: Any) -> OnnxModel:
        """No-op (onnxruntime picks its device from the providers); returns ``self``."""
        return self

    def eval(self) -> OnnxModel:
        """No-op (an exported graph is always in eval mode); returns ``self``."""
        return self

    def __call__(self, image: Tensor | np.ndarray) -> dict[str, Tensor]:
        if isinstance(image, Tensor):
            image = image.detach().cpu().numpy()
        x = np.ascontiguousarray(image, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise MtcpError(
                f"{self.path}: expects normalised RGB images [B, 3, H, W], got shape {x.shape}"
            )
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            h, w = self.input_size
            raise MtcpError(
                f"{self.path}: exported for {h}x{w} images, got {x.shape[2]}x{x.shape[3]}; "
                "resize the image or export with --dynamic"
            )
        step = self.batch or len(x)
        if len(x) % step:
            raise MtcpError(f"{self.path}: batch of {len(x)} is not a multiple of {step}")
        runs = [
            self.session.run(self.output_names, {INPUT_NAME: x[i : i + step]})
            for i in range(0, len(x), step)
        ]
        return {
            name: torch.from_numpy(np.concatenate([r[k] for r in runs]))
            for k, name in enumerate(self.output_names)
        }

    def __repr__(self) -> str:
        size = "dynamic" if self.input_size is None else "x".join(map(str, self.input_size))
        return f"OnnxModel({str(self.path)!r}, tasks={list(self.tasks)}, size={size})"
