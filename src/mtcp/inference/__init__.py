"""Run a trained model on images: ``mtcp.load(path).predict(image)``.

>>> import mtcp
>>> predictor = mtcp.load("runs/synthetic_tiny/version_0/checkpoints/best.ckpt")
>>> maps = predictor.predict("photo.jpg")          # or a numpy array / PIL image / a list
>>> maps["depth"].shape, maps["depth"].dtype        # (H, W) of the photo, float32 metres

Accepted files:

* a training checkpoint (``.ckpt`` written by ``mtcp train``), loaded with
  ``torch.load(weights_only=True)``: tensors and primitive values only, nothing executable;
* a weights file (``.safetensors``) written by ``mtcp export --format safetensors`` or
  :func:`mtcp.export.save_safetensors` (weights plus the model config; it needs the stored
  input size);
* an ONNX graph (``.onnx``) written by ``mtcp export --format onnx``, run on the CPU by
  onnxruntime (:class:`mtcp.export.OnnxModel`; needs the ``export`` extra). A static graph
  runs at its fixed input size, a dynamic one at the size stored in its metadata.

A file that would need full unpickling is refused unless ``trust=True``.

Outputs (one dict per image, every map at the input image's size ``H × W``):

===============  =========================  ============================================
key              numpy dtype / shape        meaning
===============  =========================  ============================================
``semseg``       int64 [H, W]               class id (``human_parts`` likewise)
``depth``        float32 [H, W]             metres (>= 0)
``normals``      float32 [H, W, 3]          unit vectors, camera frame (x right, y down,
                                            z forward)
``edge``         float32 [H, W]             boundary probability in [0, 1]
``sal``          float32 [H, W]             saliency probability in [0, 1]
===============  =========================  ============================================

Images are resized to the network's input size (the training size stored in the file), and
the outputs resized back (bilinear on logits, metres and vectors; normals re-normalised).
Grayscale images are replicated to RGB, an alpha channel is dropped, 16-bit and float images
are scaled to the 8-bit range.
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
from mtcp.inference.refine import refine_depth_normals
from mtcp.tasks import IMAGENET_MEAN, IMAGENET_STD, resolve_tasks

if TYPE_CHECKING:
    from mtcp.export import OnnxModel

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


class Predictor:
    """A model ready for inference; see the module docstring for inputs and outputs.

    Attributes:
        model: the network (eval mode) on ``device``: a torch model or an
            :class:`mtcp.export.OnnxModel` (onnxruntime, CPU).
        tasks: ``{task: channels}``.
        size: network input ``(H, W)``.
        intrinsics: ``(fx, fy, cx, cy)`` of the training camera at ``size`` (or None).
    """

    def __init__(
        self,
        model: torch.nn.Module | OnnxModel,
        tasks: Mapping[str, int],
        size: Sequence[int],
        device: str | torch.device = "cpu",
        intrinsics: Sequence[float] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tasks = dict(tasks)
        self.size = (int(size[0]), int(size[1]))
        self.intrinsics = None if intrinsics is None else tuple(float(v) for v in intrinsics)

    def _prepare(self, rgb: np.ndarray) -> torch.Tensor:
        x = torch.tensor(rgb).permute(2, 0, 1).float().div_(255.0)[None]
        x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return ((x - mean) / std)[0]

    @torch.no_grad()
    def predict_raw(self, images: Sequence[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        """``uint8 [H, W, 3]`` arrays → per image, the model outputs (logits / metres /
        vectors, ``[C, H, W]`` float32 on the CPU) resized to that image's size."""
        batch = torch.stack([self._prepare(rgb) for rgb in images]).to(self.device)
        outputs = self.model(batch)
        results = []
        for i, rgb in enumerate(images):
            maps = {}
            for task in self.tasks:
                out = outputs[task][i : i + 1].float()
                out = F.interpolate(out, size=rgb.shape[:2], mode="bilinear", align_corners=False)
                maps[task] = out[0].cpu()
            results.append(maps)
        return results

    def predict(
        self,
        images: ImageLike | Iterable[ImageLike],
        batch_size: int = 4,
        refine: bool = False,
    ) -> dict[str, np.ndarray] | list[dict[str, np.ndarray]]:
        """Per-task maps in physical units for one image, or a list of dicts for a list.

        ``refine=True`` adjusts depth and normals so that they agree
        (:mod:`mtcp.inference.refine`; needs both tasks and the training camera).
        """
        from mtcp.engine.callbacks import to_numpy_maps

        single = isinstance(images, (str, Path, np.ndarray, Image.Image))
        items = [images] if single else list(images)
        arrays = [to_rgb_array(x) for x in items]
        if refine:
            self._check_refine()
        results: list[dict[str, np.ndarray]] = []
        for start in range(0, len(arrays), batch_size):
            chunk = arrays[start : start + batch_size]
            for rgb, raw in zip(chunk, self.predict_raw(chunk)):
                if refine:  # issue 15 hook: joint depth-normal refinement
                    camera = torch.from_numpy(self.camera(rgb.shape[:2]))
                    raw["depth"], raw["normals"] = refine_depth_normals(
                        raw["depth"], raw["normals"], camera
                    )
                batched = {t: v[None] for t, v in raw.items()}
                results.append(to_numpy_maps(batched, self.tasks)[0])
        return results[0] if single else results

    def _check_refine(self) -> None:
        missing = [t for t in ("depth", "normals") if t not in self.tasks]
        if missing:
            raise MtcpError(
                f"refine: the model predicts {', '.join(self.tasks)}; refining needs depth and "
                f"normals (missing {', '.join(missing)})"
            )
        if self.intrinsics is None:
            raise MtcpError("refine: the model file stores no camera (intrinsics) to refine with")

    def camera(self, size: Sequence[int]) -> np.ndarray | None:
        """The training camera scaled to an image of ``size = (H, W)`` (None when unknown)."""
        if self.intrinsics is None:
            return None
        from mtcp.geometry import scale_intrinsics

        return scale_intrinsics(self.intrinsics, self.size, (int(size[0]), int(size[1])))


def _build(meta: Mapping[str, Any], state: Mapping[str, torch.Tensor], where: str) -> Any:
    from mtcp.models.registry import create_model

    config = dict(meta["model"])
    name = config.pop("name")
    config.pop("tasks", None)
    tasks = resolve_tasks(dict(meta["tasks"]))
    model = create_model(name, tasks=tasks, **config)
    try:
        missing, unexpected = model.load_state_dict(dict(state), strict=False)
    except RuntimeError as err:  # tensor shapes differ
        first = str(err).splitlines()[1:2] or [str(err)]
        raise MtcpError(
            f"{where}: weights do not fit model {name!r} as this mtcp version builds it "
            f"({first[0].strip()})"
        ) from None
    if missing or unexpected:
        raise MtcpError(
            f"{where}: weights do not fit model {name!r} (missing {list(missing)[:5]}, "
            f"unexpected {list(unexpected)[:5]})"
        )
    return model, tasks


def load_checkpoint_model(path: str | Path, trust: bool = False) -> tuple[Any, dict, dict]:
    """(model, tasks, the checkpoint's ``mtcp`` section) of an ``mtcp train`` checkpoint."""
    from mtcp.engine.module import CHECKPOINT_KEY
    from mtcp.io import load_checkpoint

    ckpt = load_checkpoint(path, trust=trust)
    meta = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if meta is None or "state_dict" not in ckpt:
        raise MtcpError(f"{path}: not an mtcp checkpoint (no {CHECKPOINT_KEY!r} section)")
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    model, tasks = _build(meta, state, str(path))
    return model, tasks, meta


def load(path: str | Path, device: str | torch.device = "cpu", trust: bool = False) -> Predictor:
    """Load a checkpoint, weights file or ONNX graph (see module docstring) as a
    :class:`Predictor`.

    Args:
        path: ``.ckpt`` of ``mtcp train``, ``.safetensors`` or ``.onnx`` (``mtcp export``).
        device: where the model runs (``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...); an ONNX graph
            always runs on the CPU through onnxruntime.
        trust: allow full unpickling of a checkpoint that needs it. Only for files of
            trusted origin: unpickling can execute arbitrary code.
    """
    path = Path(path)
    if not path.is_file():
        raise MtcpError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from mtcp.export import OnnxModel

        runner = OnnxModel(path)
        size = runner.input_size or runner.meta.get("size")
        if size is None:
            raise MtcpError(f"{path}: ONNX graph with free H and W and no stored input size")
        return Predictor(
            runner, runner.tasks, size, device="cpu", intrinsics=runner.meta.get("intrinsics")
        )
    if suffix == ".safetensors":
        from mtcp.export import load_safetensors, safetensors_metadata

        meta = safetensors_metadata(path)
        if meta.get("size") is None:
            raise MtcpError(
                f"{path}: no input size in the 'mtcp' metadata; write it with "
                "mtcp.export.save_safetensors(model, path, size=(H, W))"
            )
        model = load_safetensors(path)
        return Predictor(model, model.tasks, meta["size"], device, meta.get("intrinsics"))
    model, tasks, meta = load_checkpoint_model(path, trust=trust)
    size = meta["config"]["data"]["size"]
    return Predictor(model, tasks, size, device=device, intrinsics=meta.get("intrinsics"))
