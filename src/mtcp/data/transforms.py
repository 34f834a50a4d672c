"""Joint, label-aware transforms of raw samples (SPEC §2.5) and the release's recipes.

(One concept, kept in one file although over 350 lines: every transform shares the rules
below, and the recipes are only compositions of them.)

Every transform takes a raw sample (see :mod:`mtcp.data.sample`) and a
``numpy.random.Generator`` and returns a new raw sample in which the image and every label map
moved together:

* the image is resampled bilinearly (PIL, uint8 so the result stays clamped to ``[0, 255]``);
  every label map is resampled with nearest neighbour, so class ids, depths and unit normals are
  never blended;
* pixels that come from outside the source image become *invalid*: ``255`` for class maps,
  ``edge`` and ``sal`` (never background), ``0`` for ``depth`` and the zero vector for
  ``normals``; the image there is black;
* the camera intrinsics follow the geometry (see :func:`_warp`), and ``depth`` / ``normals``
  change the way the 3-D scene does: a horizontal flip negates the normals' x component, a zoom
  by ``s`` divides depth by ``s`` (the scene shrinks uniformly by ``1/s`` while the focal length
  grows by ``s``, so surface orientations are kept), an in-plane rotation by ``θ`` is a roll of
  the camera about its optical axis and rotates the normals' ``(x, y)`` by the same ``θ``.

Coordinates: pixel ``(x, y)`` has its centre at integer ``(x, y)``, the convention of
:mod:`mtcp.geometry`. Rotation exactness: a roll keeps the principal point fixed and needs
``fx == fy``; we rotate about the image centre and move the principal point with the image, which
is exact for any centre; with ``fx != fy`` (NYUD: 0.1 % apart) normals are off by a negligible
amount. The warped intrinsics keep ``fx`` and ``fy`` scaled by the zoom.

Batching and evaluation: :class:`Resize` brings any image to a fixed size and :class:`PadTo`
pads bottom/right to a fixed size, recording the unpadded size in ``sample["valid_size"]``.
Datasets also record the file's size in ``orig_size``; :func:`restore_size` maps a prediction
back to the original resolution, where it can be scored against the untransformed labels of
``dataset.read(sample_id)``.

Randomness: :class:`Compose` called without a generator draws its seed from torch's global RNG,
which the ``DataLoader`` seeds per worker and per epoch (``base_seed + worker_id``), so loading
is reproducible under ``torch.manual_seed`` / ``lightning.seed_everything`` for a fixed
number of workers, and workers never repeat each other's augmentations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mtcp.errors import MtcpError
from mtcp.tasks import IGNORE_INDEX

Sample = dict[str, Any]
Size = tuple[int, int]

#: Value of out-of-image pixels per key (image: black).
FILL: dict[str, float] = {
    "image": 0,
    "semseg": IGNORE_INDEX,
    "human_parts": IGNORE_INDEX,
    "edge": IGNORE_INDEX,
    "sal": IGNORE_INDEX,
    "depth": 0.0,
    "normals": 0.0,
}
#: Keys of a raw sample that are per-pixel maps moved by geometric transforms.
MAP_KEYS = tuple(FILL)
LABEL_KEYS = tuple(k for k in MAP_KEYS if k != "image")

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def _maps(sample: Sample) -> list[str]:
    return [k for k in LABEL_KEYS if sample.get(k) is not None]


def _has_intrinsics(sample: Sample) -> bool:
    intr = sample.get("intrinsics")
    return intr is not None and bool(np.all(np.isfinite(intr)))


def image_size(sample: Sample) -> Size:
    """``(H, W)`` of a raw sample's image."""
    h, w = sample["image"].shape[:2]
    return int(h), int(w)


# --------------------------------------------------------------------------- geometry kernels


def _nearest(label: np.ndarray, inv: np.ndarray, out_size: Size, fill: float) -> np.ndarray:
    """Nearest-neighbour resampling of ``label`` ([H, W] or [H, W, C]).

    ``inv`` (2x3) maps output pixel coordinates to source coordinates.
    """
    h, w = label.shape[:2]
    oh, ow = out_size
    ys = np.arange(oh, dtype=np.float64)
    xs = np.arange(ow, dtype=np.float64)
    if inv[0, 1] == 0 and inv[1, 0] == 0:  # axis-aligned: separable, much faster
        ix = np.floor(inv[0, 0] * xs + inv[0, 2] + 0.5).astype(np.intp)
        iy = np.floor(inv[1, 1] * ys + inv[1, 2] + 0.5).astype(np.intp)
        okx = (ix >= 0) & (ix < w)
        oky = (iy >= 0) & (iy < h)
        out = label[np.clip(iy, 0, h - 1)][:, np.clip(ix, 0, w - 1)]
        if not (okx.all() and oky.all()):
            out[~oky] = fill
            out[:, ~okx] = fill
        return out
    gx, gy = np.meshgrid(xs, ys)
    sx = np.floor(inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2] + 0.5).astype(np.intp)
    sy = np.floor(inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2] + 0.5).astype(np.intp)
    ok = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    out = label[np.clip(sy, 0, h - 1), np.clip(sx, 0, w - 1)]
    out[~ok] = fill
    return out


def _warp(
    sample: Sample,
    fwd: np.ndarray,
    out_size: Size,
    *,
    depth_scale: float = 1.0,
    normal_rot: np.ndarray | None = None,
    interpolation: str | None = "bilinear",
) -> Sample:
    """Apply the affine map ``fwd`` (2x3, source pixel → output pixel) to a whole raw sample.

    ``depth`` is divided by ``depth_scale`` and the normals' ``(x, y)`` are multiplied by the 2x2
    ``normal_rot``. Intrinsics: focal lengths are scaled by the length of ``fwd``'s columns and
    the principal point is mapped by ``fwd``. ``interpolation=None`` leaves the image alone
    (the caller resamples it).
    """
    lin, t = fwd[:, :2], fwd[:, 2]
    inv_lin = np.linalg.inv(lin)
    inv = np.concatenate([inv_lin, (-inv_lin @ t)[:, None]], axis=1)
    out = dict(sample)
    oh, ow = out_size
    if interpolation is not None:
        # PIL samples at pixel centres (x + 0.5): shift the inverse map into its convention.
        pil = inv.copy()
        pil[:, 2] += 0.5 - 0.5 * inv[:, 0] - 0.5 * inv[:, 1]
        img = Image.fromarray(np.ascontiguousarray(sample["image"]))
        box = (pil[0, 2], pil[1, 2], pil[0, 0] * ow + pil[0, 2], pil[1, 1] * oh + pil[1, 2])
        if (
            inv[0, 1] == inv[1, 0] == 0
            and 0 <= box[0] < box[2] <= img.width
            and 0 <= box[1] < box[3] <= img.height
        ):  # an axis-aligned zoom inside the image: PIL's resize is much faster
            img = img.resize((ow, oh), RESAMPLE[interpolation], box=box)
        else:
            img = img.transform(
                (ow, oh),
                Image.Transform.AFFINE,
                tuple(pil.ravel()),
                resample=RESAMPLE[interpolation],
                fillcolor=(0, 0, 0),
            )
        out["image"] = np.array(img)
    for key in _maps(sample):
        out[key] = _nearest(sample[key], inv, out_size, FILL[key])
    if out.get("depth") is not None and depth_scale != 1.0:
        out["depth"] = (out["depth"] / np.float32(depth_scale)).astype(np.float32)
    if out.get("normals") is not None and normal_rot is not None:
        n = out["normals"].astype(np.float32, copy=True)
        n[..., :2] = n[..., :2] @ normal_rot.T.astype(np.float32)
        out["normals"] = n
    if _has_intrinsics(sample):
        fx, fy, cx, cy = (float(v) for v in sample["intrinsics"])
        c = lin @ np.array([cx, cy]) + t
        sx, sy = np.hypot(lin[0, 0], lin[1, 0]), np.hypot(lin[0, 1], lin[1, 1])
        out["intrinsics"] = np.array([fx * sx, fy * sy, c[0], c[1]], dtype=np.float32)
    return out


def _window(sample: Sample, top: int, left: int, size: Size) -> Sample:
    """Crop (and where the window leaves the image, pad with :data:`FILL`) a raw sample."""
    h, w = image_size(sample)
    oh, ow = size
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + oh, h), min(left + ow, w)
    out = dict(sample)
    for key in ("image", *_maps(sample)):
        src = sample[key]
        dst = np.full((oh, ow, *src.shape[2:]), FILL[key], dtype=src.dtype)
        if y1 > y0 and x1 > x0:
            dst[y0 - top : y1 - top, x0 - left : x1 - left] = src[y0:y1, x0:x1]
        out[key] = dst
    if _has_intrinsics(sample):
        fx, fy, cx, cy = (float(v) for v in sample["intrinsics"])
        out["intrinsics"] = np.array([fx, fy, cx - left, cy - top], dtype=np.float32)
    return out


# --------------------------------------------------------------------------- transforms


class Compose:
    """Apply transforms in order with one generator (drawn from torch's RNG when not given)."""

    def __init__(self, transforms: Sequence[Callable[[Sample, np.random.Generator], Sample]]):
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        if rng is None:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        for t in self.transforms:
            sample = t(sample, rng)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomHFlip:
    """Flip left-right with probability ``p``; negates the normals' x component."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        return hflip(sample)

    def __repr__(self) -> str:
        return f"RandomHFlip(p={self.p})"


def hflip(sample: Sample) -> Sample:
    """Deterministic horizontal flip of a raw sample (see :class:`RandomHFlip`)."""
    out = dict(sample)
    for key in ("image", *_maps(sample)):
        out[key] = sample[key][:, ::-1]  # a view: later steps copy anyway
    if out.get("normals") is not None:
        out["normals"] = out["normals"] * np.array([-1, 1, 1], dtype=np.float32)
    if _has_intrinsics(sample):
        fx, fy, cx, cy = (float(v) for v in sample["intrinsics"])
        w = image_size(sample)[1]
        out["intrinsics"] = np.array([fx, fy, w - 1 - cx, cy], dtype=np.float32)
    return out


def scale_rotate(
    sample: Sample, scale: float = 1.0, degrees: float = 0.0, interpolation: str = "bilinear"
) -> Sample:
    """Zoom by ``scale`` and rotate by ``degrees`` about the image centre, keeping the size.

    ``scale > 1`` zooms in (depth divided by ``scale``); uncovered pixels become invalid.
    Positive ``degrees`` turn the picture clockwise on screen (x right, y down); the normals'
    ``(x, y)`` turn by the same angle.
    """
    if scale <= 0:
        raise MtcpError(f"zoom factor must be positive, got {scale}")
    h, w = image_size(sample)
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    th = math.radians(degrees)
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    lin = scale * rot
    fwd = np.concatenate([lin, (c - lin @ c)[:, None]], axis=1)
    return _warp(
        sample,
        fwd,
        (h, w),
        depth_scale=scale,
        normal_rot=rot if degrees else None,
        interpolation=interpolation,
    )


class RandomScaleRotate:
    """Random zoom and in-plane rotation about the image centre (size kept).

    Args:
        scales: discrete zoom factors to choose from uniformly (NYUD release: 1.0, 1.2, 1.5).
        scale_range: ``(lo, hi)`` to draw the zoom uniformly instead (PASCAL: 0.75, 1.25).
        degrees: rotation drawn uniformly in ``[-degrees, degrees]`` (PASCAL: 20).
    """

    def __init__(
        self,
        scales: Sequence[float] | None = None,
        scale_range: tuple[float, float] | None = None,
        degrees: float = 0.0,
        interpolation: str = "bilinear",
    ):
        if (scales is None) == (scale_range is None):
            raise MtcpError("give exactly one of scales (discrete) or scale_range (uniform)")
        self.scales = None if scales is None else tuple(float(s) for s in scales)
        self.scale_range = scale_range
        self.degrees = float(degrees)
        self.interpolation = interpolation

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if self.scales is not None:
            s = float(self.scales[rng.integers(len(self.scales))])
        else:
            s = float(rng.uniform(*self.scale_range))
        deg = float(rng.uniform(-self.degrees, self.degrees)) if self.degrees else 0.0
        if s == 1.0 and deg == 0.0:
            return sample
        return scale_rotate(sample, s, deg, self.interpolation)

    def __repr__(self) -> str:
        zoom = f"scales={self.scales}" if self.scales else f"scale_range={self.scale_range}"
        return f"RandomScaleRotate({zoom}, degrees={self.degrees})"


class Resize:
    """Resize to ``size = (H, W)``: image bilinear/bicubic (antialiased), labels nearest.

    Intrinsics are scaled with :func:`mtcp.geometry.scale_intrinsics`'s convention; depth is
    unchanged (a resize is a change of pixel size, not of the scene).
    """

    def __init__(self, size: Size, interpolation: str = "bilinear"):
        self.size = (int(size[0]), int(size[1]))
        self.interpolation = interpolation

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        h, w = image_size(sample)
        oh, ow = self.size
        if (h, w) == (oh, ow):
            return sample
        sx, sy = ow / w, oh / h
        fwd = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
        out = _warp(sample, fwd, self.size, interpolation=None)
        # PIL's resize low-pass filters when shrinking, which its affine warp does not.
        img = Image.fromarray(np.ascontiguousarray(sample["image"]))
        out["image"] = np.array(img.resize((ow, oh), RESAMPLE[self.interpolation]))
        return out

    def __repr__(self) -> str:
        return f"Resize({self.size}, {self.interpolation!r})"


class RandomCrop:
    """Random ``size`` window; pads with invalid values where the image is smaller."""

    def __init__(self, size: Size):
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        h, w = image_size(sample)
        oh, ow = self.size
        top = int(rng.integers(0, h - oh + 1)) if h > oh else 0
        left = int(rng.integers(0, w - ow + 1)) if w > ow else 0
        return _window(sample, top, left, self.size)

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


class PadTo:
    """Pad bottom/right to ``size`` with invalid values; records ``valid_size`` (H, W) before.

    Images larger than ``size`` raise an error: resize them first.
    """

    def __init__(self, size: Size):
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        h, w = image_size(sample)
        if h > self.size[0] or w > self.size[1]:
            raise MtcpError(
                f"sample {sample.get('id', '?')!r}: image {h}x{w} is larger than the pad size "
                f"{self.size[0]}x{self.size[1]}; resize it first"
            )
        out = _window(sample, 0, 0, self.size)
        out["valid_size"] = sample.get("valid_size", (h, w))
        return out

    def __repr__(self) -> str:
        return f"PadTo({self.size})"


# --------------------------------------------------------------------------- recipes

#: Default sizes (H, W) of the release's recipes.
RECIPE_SIZES: dict[str, Size] = {"nyud_train": (480, 640), "pascal_train": (512, 512)}
RECIPES = ("nyud_train", "pascal_train", "test")


def build_recipe(name: str | None, size: Size | None = None) -> Compose | None:
    """The release's named augmentation recipes (SPEC §2.5).

    * ``"nyud_train"``: flip, zoom ``s ∈ {1.0, 1.2, 1.5}``, resize (default 480x640);
    * ``"pascal_train"``: flip, rotation ±20°, zoom ``s ~ U(0.75, 1.25)``, resize (512x512);
    * ``"test"``: resize to ``size`` only (no-op without a size);
    * ``None``: no transform at all, or only a resize when ``size`` is given.
    """
    if name is not None and name not in RECIPES:
        raise MtcpError(f"unknown transform recipe {name!r}; choose from: {', '.join(RECIPES)}")
    size = size or RECIPE_SIZES.get(name or "")
    if name == "nyud_train":
        steps: list[Any] = [RandomHFlip(), RandomScaleRotate(scales=(1.0, 1.2, 1.5))]
    elif name == "pascal_train":
        steps = [RandomHFlip(), RandomScaleRotate(scale_range=(0.75, 1.25), degrees=20.0)]
    else:
        steps = []
    if size is not None:
        steps.append(Resize(size))
    return Compose(steps) if steps else None


# --------------------------------------------------------------------------- evaluation


def restore_size(
    pred: torch.Tensor,
    orig_size: torch.Tensor | Sequence[int],
    valid_size: torch.Tensor | Sequence[int] | None = None,
    mode: str = "bilinear",
) -> torch.Tensor:
    """Map one prediction ``[C, h, w]`` back to the file's resolution ``orig_size = (H, W)``.

    The padded border (outside ``valid_size``, top-left anchored) is cut off first. Use
    ``mode="nearest"`` for class ids; logits and continuous maps use ``"bilinear"``. Returns
    ``[C, H, W]``. Batches of different original sizes are restored one sample at a time.
    """
    if valid_size is not None:
        vh, vw = (int(v) for v in valid_size)
        pred = pred[..., :vh, :vw]
    oh, ow = (int(v) for v in orig_size)
    if tuple(pred.shape[-2:]) == (oh, ow):
        return pred
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    x = pred[None].float() if mode == "nearest" else pred[None]
    out = F.interpolate(x, size=(oh, ow), mode=mode, **kwargs)[0]
    return out.to(pred.dtype) if mode == "nearest" else out
