"""int8 ONNX graphs: static quantization with onnxruntime, calibrated on training images.

>>> from mtcp.export.quantize import calibration_images, export_int8
>>> images = calibration_images("synthetic", size=(240, 320), tasks=model.tasks)
>>> export_int8(model, "tiny.int8.onnx", size=(240, 320), calibration=images)
>>> mtcp.load("tiny.int8.onnx").precision
'int8'

The fp32 graph of :func:`mtcp.export.export_onnx` is pre-processed (shape inference, graph
optimisation; ``onnxruntime.quantization.quant_pre_process``), then quantized statically in the
QDQ format: uint8 activations with ranges from the calibration images (min–max), int8 weights
per output channel, for Conv, Gemm and MatMul with a weight operand. Left in fp32 (the graph
keeps float ``QuantizeLinear``/``DequantizeLinear`` around them):

* each task's output convolution (depth in metres, normals, logits; :func:`output_convs`);
* matrix products of two activations — ``softmax(Q Kᵀ) V`` of the CFM and Swin attention —
  and the softmax itself (:func:`activation_matmuls`).

The file carries the fp32 graph's ``"mtcp"`` metadata plus ``"precision": "int8"`` and the
calibration's description; :func:`mtcp.load` runs it with onnxruntime like any exported graph.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtcp.errors import MtcpError
from mtcp.export import ONNX_OPSET, export_onnx
from mtcp.inference.formats import INPUT_NAME, METADATA_KEY, require_export
from mtcp.io import atomic_path

#: calibration images drawn when none are given
CALIBRATION_IMAGES = 32
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")


def calibration_images(
    source: str | os.PathLike[str],
    size: Sequence[int],
    tasks: Mapping[str, int] | Sequence[str] | None = None,
    n: int = CALIBRATION_IMAGES,
    seed: int = 0,
) -> list[np.ndarray]:
    """``n`` training images of ``source`` as the network sees them.

    Args:
        source: ``"synthetic"`` (scenes of the synthetic training pool, rendered at ``size``) or
            a dataset folder (its whole train split, each image resized to ``size``).
        size: network input ``(H, W)``.
        tasks: the model's tasks (which labels the dataset reads).
        n: number of images, spread evenly over the split.
        seed: the split's seed (as in training).

    Returns:
        ImageNet-normalised float32 arrays ``[1, 3, H, W]``.
    """
    from mtcp.data.build import build_dataset

    h, w = int(size[0]), int(size[1])
    synthetic = str(source) == "synthetic"
    dataset = build_dataset(
        source,
        "train_full",  # the whole training split (validation part included)
        tasks,
        recipe=None,
        size=(h, w) if synthetic else None,
        seed=seed,
        n=n if synthetic else None,
        check_labels=False,  # only the images are read
    )
    if len(dataset) == 0:
        raise MtcpError(f"{source}: no training images to calibrate the int8 quantization on")
    picks = np.linspace(0, len(dataset) - 1, min(n, len(dataset))).round().astype(int)
    out = []
    for i in picks:
        image = dataset[int(i)]["image"][None].float()
        if tuple(image.shape[-2:]) != (h, w):  # resizing commutes with the normalisation
            image = F.interpolate(
                image, size=(h, w), mode="bilinear", align_corners=False, antialias=True
            )
        out.append(image.numpy().astype(np.float32))
    return out


def _producers(graph: Any) -> dict[str, Any]:
    return {out: node for node in graph.node for out in node.output}


def output_convs(graph: Any) -> list[str]:
    """Names of the Conv nodes that compute the graph outputs (each task's last layer),
    found by walking back from every output through non-Conv nodes."""
    producers = _producers(graph)
    found: list[str] = []
    seen: set[str] = set()
    stack = [o.name for o in graph.output]
    while stack:
        name = stack.pop()
        node = producers.get(name)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "Conv":
            found.append(node.name)
            continue
        stack.extend(node.input)
    return sorted(found)


def activation_matmuls(graph: Any) -> list[str]:
    """Names of the MatMul nodes whose operands are both activations (attention products)."""
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [
        n.name
        for n in graph.node
        if n.op_type == "MatMul" and not any(i in constants for i in n.input)
    ]


class _Images:
    """onnxruntime's ``CalibrationDataReader`` protocol over a list of arrays."""

    def __init__(self, images: Iterable[np.ndarray]) -> None:
        self._items = iter([{INPUT_NAME: np.ascontiguousarray(x, np.float32)} for x in images])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def quantize_onnx(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    calibration: Sequence[np.ndarray],
    per_channel: bool = True,
    calibration_note: str = "",
) -> Path:
    """Statically quantize the fp32 mtcp graph ``src`` to int8 (see the module docstring) and
    write it to ``dst`` atomically.

    Args:
        src: a graph of :func:`mtcp.export.export_onnx`.
        dst: output ``.onnx``.
        calibration: normalised ``[1, 3, H, W]`` float32 images (:func:`calibration_images`).
        per_channel: one weight scale per output channel (more accurate than per tensor).
        calibration_note: where the calibration images came from (stored in the metadata).
    """
    onnx, _ = require_export("onnx", "onnxruntime")
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise MtcpError(f"{dst}: int8 quantization needs at least one calibration image")
    proto = onnx.load(str(src))
    meta = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in meta:
        raise MtcpError(f"{src}: not an mtcp ONNX graph (no {METADATA_KEY!r} metadata)")
    info = json.loads(meta[METADATA_KEY])
    if info.get("precision", "fp32") != "fp32":
        raise MtcpError(f"{src}: already quantized ({info['precision']})")
    with tempfile.TemporaryDirectory(prefix="mtcp-quantize-") as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        # a static graph: ONNX shape inference suffices (the symbolic one gives up on it)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre)).graph
        exclude = output_convs(graph) + activation_matmuls(graph)
        q.quantize_static(
            str(pre),
            str(out),
            _Images(calibration),
            quant_format=q.QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=per_channel,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=q.CalibrationMethod.MinMax,
        )
        quantized = onnx.load(str(out))
        info |= {
            "precision": "int8",
            "calibration": calibration_note or f"{len(calibration)} images",
            "fp32_nodes": exclude,
        }
        onnx.helper.set_model_props(quantized, {METADATA_KEY: json.dumps(info)})
        with atomic_path(dst) as tmp_dst:
            onnx.save(quantized, str(tmp_dst))
    return Path(dst)


def export_int8(
    model: nn.Module,
    path: str | os.PathLike[str],
    size: Sequence[int],
    calibration: Sequence[np.ndarray],
    intrinsics: Sequence[float] | None = None,
    opset: int = ONNX_OPSET,
    calibration_note: str = "",
    verify: bool = True,
    review: dict[str, Any] | None = None,
) -> Path:
    """Export ``model`` at the fixed ``size`` to ONNX, then quantize it to int8 into ``path``.

    ``calibration``: normalised ``[1, 3, H, W]`` images at ``size`` (:func:`calibration_images`);
    ``verify``: check the fp32 graph against PyTorch first (:func:`mtcp.export.export_onnx`);
    ``review``: the checkpoint's review score calibration, kept in the metadata.
    """
    h, w = int(size[0]), int(size[1])
    bad = [x.shape for x in calibration if tuple(x.shape) != (1, 3, h, w)]
    if bad:
        raise MtcpError(f"calibration images must be [1, 3, {h}, {w}], got {bad[0]}")
    with tempfile.TemporaryDirectory(prefix="mtcp-export-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        with torch.no_grad():
            export_onnx(
                model,
                fp32,
                (h, w),
                opset=opset,
                intrinsics=intrinsics,
                verify=verify,
                review=review,
            )
        return quantize_onnx(fp32, path, calibration, calibration_note=calibration_note)


def training_source(path: str | os.PathLike[str], trust: bool = False) -> tuple[str, int]:
    """``(data source, split seed)`` a checkpoint of ``mtcp train`` was trained on.

    Raises:
        MtcpError: ``path`` is no training checkpoint (a ``.safetensors`` or ``.onnx`` file
            does not record its training data: pass the calibration source explicitly).
    """
    from mtcp.inference import load_checkpoint_model

    if Path(path).suffix.lower() != ".ckpt":
        raise MtcpError(
            f"{path}: only a checkpoint of mtcp train records its training data; give the "
            "calibration images (--calibration synthetic or a dataset folder)"
        )
    _, _, meta = load_checkpoint_model(path, trust=trust)
    config = meta.get("config") or {}
    source = (config.get("data") or {}).get("source", "synthetic")
    return str(source), int((config.get("trainer") or {}).get("seed", 0))
