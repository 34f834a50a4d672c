"""An exported ONNX graph run by onnxruntime on the CPU, called like the PyTorch model.

The graph and its metadata are described in :mod:`mtcp.export` (the writer). onnxruntime is
optional (``pip install 'mtcp[export]'``), imported when a graph is opened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtcp.errors import MtcpError
from mtcp.inference.formats import INPUT_NAME, METADATA_KEY, require_export


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
        (ort,) = require_export("onnxruntime")
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
