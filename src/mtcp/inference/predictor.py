"""A model ready for inference (:class:`Predictor`) and :func:`load`, which builds one from a
file; inputs, outputs and accepted files are described in :mod:`mtcp.inference`. (One
concept: the predictor and the resize policy it applies; precision, review and refinement are
delegated to their own modules.)

The one resize policy of mtcp's inference and evaluation:

1. the RGB image (``uint8``) is scaled to [0, 1] and normalised with ``IMAGENET_MEAN/STD``;
2. resized to the network input size (bilinear, antialiased) when it differs;
3. the outputs (logits, metres, vectors) are resized back to the image's size (bilinear).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from mtcp.errors import MtcpError
from mtcp.geometry import scale_intrinsics
from mtcp.inference import precision as prec
from mtcp.inference.formats import load_checkpoint_model, load_safetensors, safetensors_metadata
from mtcp.inference.maps import to_numpy_maps
from mtcp.inference.onnx_runtime import OnnxModel
from mtcp.inference.refine import refine_depth_normals
from mtcp.tasks import IMAGENET_MEAN, IMAGENET_STD, get_task

if TYPE_CHECKING:
    from mtcp.inference.review import Review

ImageLike = str | Path | np.ndarray | Image.Image


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """A path, PIL image or numpy array → ``uint8 [H, W, 3]`` RGB.

    numpy input: ``[H, W]`` grayscale, ``[H, W, 1|3|4]``; ``uint8``, ``uint16`` (scaled by
    1/257) or float in [0, 1].
    """
    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as img:
                img.load()
                return to_rgb_array(img)
        except FileNotFoundError:
            raise MtcpError(f"{image}: no such file") from None
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
            raise MtcpError(f"{image}: cannot read the image ({err})") from None
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            return to_rgb_array(np.asarray(image).astype(np.uint16))
        if image.mode == "F":
            return to_rgb_array(np.asarray(image, dtype=np.float32))
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4) or min(array.shape[:2]) < 1:
        raise MtcpError(
            f"image array of shape {array.shape}: expected [H, W], [H, W, 1], [H, W, 3] or "
            "[H, W, 4]"
        )
    array = array[..., :3]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.uint16:
        return (array / 257.0).round().astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating) or array.dtype == bool:
        return (
            (np.clip(np.nan_to_num(array.astype(np.float32)), 0, 1) * 255).round().astype(np.uint8)
        )
    if np.issubdtype(array.dtype, np.integer):
        return np.clip(array, 0, 255).astype(np.uint8)
    raise MtcpError(f"image array of dtype {array.dtype}: expected uint8, uint16 or float")


def normalize(rgb: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W, 3]`` RGB → float32 ``[3, H, W]`` normalised with ImageNet mean / std."""
    x = torch.tensor(rgb).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def to_network(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Normalised ``[B, 3, h, w]`` → ``[B, 3, H, W]`` at the network's ``size`` (bilinear,
    antialiased; unchanged when the sizes agree)."""
    size = (int(size[0]), int(size[1]))
    if tuple(images.shape[-2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


def to_image(output: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """A task's output ``[B, C, H, W]`` → float32 ``[B, C, h, w]`` at the image's ``size``
    (bilinear on logits, metres and vectors; unchanged when the sizes agree)."""
    output = output.float()
    size = (int(size[0]), int(size[1]))
    if tuple(output.shape[-2:]) == size:
        return output
    return F.interpolate(output, size=size, mode="bilinear", align_corners=False)


def prepare(rgb: np.ndarray, size: Sequence[int]) -> torch.Tensor:
    """``uint8 [H, W, 3]`` RGB → the network input ``[3, *size]`` (steps 1–2 of the policy)."""
    return to_network(normalize(rgb)[None], size)[0]


class Predictor:
    """A model ready for inference; see :mod:`mtcp.inference` for inputs and outputs.

    Attributes:
        model: the network (eval mode) on ``device``: a torch model or an
            :class:`mtcp.inference.onnx_runtime.OnnxModel` (onnxruntime, CPU).
        tasks: ``{task: channels}``.
        size: network input ``(H, W)``.
        intrinsics: ``(fx, fy, cx, cy)`` of the training camera at ``size`` (or None).
        config: the training config of a checkpoint of ``mtcp train`` (``{"data": ...,
            "eval": ..., ...}``), None for exported files.
        name: the model's registered name (``"mtcp_tiny"`` ...), None when unknown.
        precision: what the model runs in, ``"fp32"``, ``"bf16"`` or ``"int8"`` (see
            :mod:`mtcp.inference.precision`; ``"bf16"`` falls back to ``"fp32"`` on a CPU
            without native bf16); None = fp32, or an ONNX graph's own precision.
        review_calibration: the review score calibration stored with the model (None:
            uncalibrated, e.g. an older checkpoint), see :mod:`mtcp.inference.review`.
    """

    def __init__(
        self,
        model: torch.nn.Module | OnnxModel,
        tasks: Mapping[str, int],
        size: Sequence[int],
        device: str | torch.device = "cpu",
        intrinsics: Sequence[float] | None = None,
        config: Mapping[str, Any] | None = None,
        precision: str | None = None,
        review: Mapping[str, Any] | None = None,
        class_names: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if isinstance(model, torch.nn.Module):
            self.precision = prec.resolve_precision(precision or "fp32", self.device)
            prec.prepare_model(self.model, self.precision)
        else:  # an ONNX graph runs in the precision it was exported in
            self.precision = prec.check_onnx_precision(precision, model.meta, model.path)
        self.tasks = dict(tasks)
        self.size = (int(size[0]), int(size[1]))
        self.intrinsics = None if intrinsics is None else tuple(float(v) for v in intrinsics)
        self.config = None if config is None else dict(config)
        model_config = getattr(model, "config", None) or getattr(model, "meta", {}).get("model")
        self.name: str | None = (model_config or {}).get("name")
        self.review_calibration = dict(review) if review else None
        self.class_names = {t: list(n) for t, n in (class_names or {}).items()}

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised images ``[B, 3, h, w]`` (any size) → ``{task: float32 [B, C, h, w]}`` on
        the CPU, following the module's resize policy."""
        with prec.autocast(self.precision, self.device):
            outputs = self.model(to_network(images, self.size).to(self.device))
        return {t: to_image(outputs[t], images.shape[-2:]).cpu() for t in self.tasks}

    @torch.no_grad()
    def forward_network(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Network inputs ``[B, 3, *size]`` (from :func:`prepare`) → the outputs at the
        network's size, ``{task: float32 [B, C, *size]}`` on the CPU."""
        with prec.autocast(self.precision, self.device):
            outputs = self.model(batch.to(self.device))
        return {t: outputs[t].float().cpu() for t in self.tasks}

    @torch.no_grad()
    def forward_prepared(
        self,
        batch: torch.Tensor,
        sizes: Sequence[Sequence[int]],
        outputs: Mapping[str, torch.Tensor] | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Network inputs ``[B, 3, *size]`` (from :func:`prepare`) → per image, the outputs
        ``[C, h, w]`` (float32, CPU) resized back to that image's ``(h, w)`` in ``sizes``
        (``outputs``: those of :meth:`forward_network` on ``batch``, when already computed)."""
        if outputs is None:
            outputs = self.forward_network(batch)
        return [
            {t: to_image(outputs[t][i : i + 1], hw)[0].cpu() for t in self.tasks}
            for i, hw in enumerate(sizes)
        ]

    def predict_raw(self, images: Sequence[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        """``uint8 [H, W, 3]`` arrays → per image, the model outputs (logits / metres /
        vectors, ``[C, H, W]`` float32 on the CPU) resized to that image's size."""
        batch = torch.stack([prepare(rgb, self.size) for rgb in images])
        return self.forward_prepared(batch, [rgb.shape[:2] for rgb in images])

    def review(
        self,
        batch: torch.Tensor,
        outputs: Mapping[str, torch.Tensor],
        rate: float | None = None,
        threshold: float | None = None,
    ) -> list[Review]:
        """The review of each image of a batch: network inputs ``[B, 3, *size]`` and their
        outputs at the network's size (:meth:`forward_network`), scored with the model's
        review calibration; ``rate`` / ``threshold`` override its budget (see
        :mod:`mtcp.inference.review`)."""
        from mtcp.inference.review import review_batch  # lazy: numba kernels of the coherence

        return review_batch(
            batch,
            outputs,
            self.tasks,
            self.intrinsics,
            self.review_calibration,
            rate=rate,
            threshold=threshold,
        )

    def predict(
        self,
        images: ImageLike | Iterable[ImageLike],
        batch_size: int = 4,
        review: bool = False,
        review_rate: float | None = None,
        review_threshold: float | None = None,
        probabilities: bool = False,
        refine: bool = False,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Per-task maps in physical units for one image, or a list of dicts for a list.

        With ``review=True`` each dict also holds ``"review"``: a
        :class:`mtcp.inference.review.Review` (score in [0, 1], flag, reasons, parts) from the
        model's review calibration; ``review_rate`` / ``review_threshold`` override its budget.
        With ``probabilities=True`` each class task also gets ``"<task>_probs"``: the softmax,
        float32 ``[H, W, C]`` (binary tasks are probabilities already).
        ``refine=True`` adjusts depth and normals at the image's size so that they agree
        (:mod:`mtcp.inference.refine`; needs both tasks and the training camera); the review
        scores the network's own outputs.
        """
        single = isinstance(images, (str, Path, np.ndarray, Image.Image))
        items = [images] if single else list(images)
        arrays = [to_rgb_array(x) for x in items]
        if refine:
            self.check_refine()
        results: list[dict[str, Any]] = []
        for start in range(0, len(arrays), batch_size):
            chunk = arrays[start : start + batch_size]
            batch = torch.stack([prepare(rgb, self.size) for rgb in chunk])
            outputs = self.forward_network(batch)
            raws = self.forward_prepared(batch, [rgb.shape[:2] for rgb in chunk], outputs)
            reviews = (
                self.review(batch, outputs, review_rate, review_threshold)
                if review
                else [None] * len(raws)
            )
            for rgb, raw, verdict in zip(chunk, raws, reviews):
                if refine:
                    raw = self.refine(raw, rgb.shape[:2])
                maps: dict[str, Any] = to_numpy_maps(
                    {t: v[None] for t, v in raw.items()}, self.tasks
                )[0]
                if review:
                    maps["review"] = verdict
                if probabilities:
                    for task in self.tasks:
                        if get_task(task).kind == "classes":
                            probs = raw[task].softmax(0).permute(1, 2, 0)
                            maps[f"{task}_probs"] = probs.numpy().astype(np.float32)
                results.append(maps)
        return results[0] if single else results

    def check_refine(self) -> None:
        """Raise :class:`MtcpError` unless the model can be refined (depth, normals, camera)."""
        missing = [t for t in ("depth", "normals") if t not in self.tasks]
        if missing:
            raise MtcpError(
                f"refine: the model predicts {', '.join(self.tasks)}; refining needs depth and "
                f"normals (missing {', '.join(missing)})"
            )
        if self.intrinsics is None:
            raise MtcpError("refine: the model file stores no camera (intrinsics) to refine with")

    def refine(
        self, raw: Mapping[str, torch.Tensor], size: Sequence[int]
    ) -> dict[str, torch.Tensor]:
        """One image's outputs ``{task: [C, h, w]}`` at its ``size = (h, w)`` with depth and
        normals refined to agree (:func:`mtcp.inference.refine.refine_depth_normals`, the
        training camera scaled to ``size``); the other tasks unchanged."""
        camera = torch.from_numpy(np.asarray(self.camera(size), dtype=np.float32))
        out = dict(raw)
        out["depth"], out["normals"] = refine_depth_normals(raw["depth"], raw["normals"], camera)
        return out

    def camera(self, size: Sequence[int]) -> np.ndarray | None:
        """The training camera scaled to an image of ``size = (H, W)`` (None when unknown)."""
        if self.intrinsics is None:
            return None
        return scale_intrinsics(self.intrinsics, self.size, (int(size[0]), int(size[1])))


def load(
    path: str | Path,
    device: str | torch.device = "cpu",
    trust: bool = False,
    precision: str | None = None,
) -> Predictor:
    """Load a checkpoint, weights file or ONNX graph (see :mod:`mtcp.inference`) as a
    :class:`Predictor`.

    Args:
        path: ``.ckpt`` of ``mtcp train``, ``.safetensors`` or ``.onnx`` (``mtcp export``).
        device: where the model runs (``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...); an ONNX graph
            always runs on the CPU through onnxruntime.
        trust: allow full unpickling of a checkpoint that needs it. Only for files of
            trusted origin: unpickling can execute arbitrary code. Not needed (and ignored)
            for ``.safetensors`` and ``.onnx``, which never unpickle.
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"int8"`` (an int8-quantized ONNX
            graph); None = fp32, or the ONNX graph's own precision. See
            :mod:`mtcp.inference.precision`.
    """
    path = Path(path)
    if not path.is_file():
        raise MtcpError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        runner = OnnxModel(path)
        size = runner.input_size or runner.meta.get("size")
        if size is None:
            raise MtcpError(f"{path}: ONNX graph with free H and W and no stored input size")
        intrinsics = runner.meta.get("intrinsics")
        review = runner.meta.get("review")
        return Predictor(
            runner, runner.tasks, size, "cpu", intrinsics, precision=precision, review=review
        )
    if suffix == ".safetensors":
        meta = safetensors_metadata(path)
        if meta.get("size") is None:
            raise MtcpError(
                f"{path}: no input size in the 'mtcp' metadata; write it with "
                "mtcp.export.save_safetensors(model, path, size=(H, W))"
            )
        model = load_safetensors(path)
        intrinsics = meta.get("intrinsics")
        return Predictor(
            model,
            model.tasks,
            meta["size"],
            device,
            intrinsics,
            precision=precision,
            review=meta.get("review"),
        )
    model, tasks, meta = load_checkpoint_model(path, trust=trust)
    config = meta.get("config") or {}
    size = (config.get("data") or {}).get("size")
    if size is None:
        raise MtcpError(f"{path}: the checkpoint's config has no data.size (the input size)")
    intrinsics = meta.get("intrinsics")
    return Predictor(
        model,
        tasks,
        size,
        device,
        intrinsics,
        config=config,
        precision=precision,
        review=meta.get("review"),
        class_names=meta.get("class_names"),
    )
