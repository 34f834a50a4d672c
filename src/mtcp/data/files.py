"""Checked reading of dataset files: images, label files (PNG, NPY, MAT), split files.

Every reader and decoder raises :class:`~mtcp.errors.MtcpError` naming the file, the task and
what was expected; decoders turn stored values into the raw-sample conventions of
:mod:`mtcp.data.sample` (invalid → 0 or 255).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import scipy.io.matlab
from PIL import Image, UnidentifiedImageError

from mtcp.errors import MtcpError
from mtcp.tasks import IGNORE_INDEX

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- file readers


def read_image(path: Path) -> np.ndarray:
    """RGB image → uint8 ``[H, W, 3]``; an unreadable file raises :class:`MtcpError`."""
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except FileNotFoundError:
        raise MtcpError(f"{path}: image file is missing") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise MtcpError(f"{path}: cannot read image ({err}); expected a JPEG or PNG") from None


def read_png(path: Path, task: str) -> np.ndarray:
    """A label PNG as stored (``uint8``/``uint16``, ``[H, W]`` or ``[H, W, 3]``)."""
    try:
        with Image.open(path) as img:
            return np.array(img)
    except FileNotFoundError:
        raise MtcpError(f"{path}: {task} label file is missing") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise MtcpError(f"{path}: cannot read {task} label PNG ({err})") from None


def read_npy(path: Path, task: str) -> np.ndarray:
    """A ``.npy`` label map (no pickles)."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise MtcpError(f"{path}: {task} label file is missing") from None
    except (OSError, ValueError, EOFError) as err:
        raise MtcpError(f"{path}: cannot read {task} .npy file ({err})") from None


def read_mat(path: Path, task: str, **kwargs: Any) -> dict[str, Any]:
    """A MATLAB ``.mat`` file as :func:`scipy.io.loadmat` (``kwargs``) returns it."""
    try:
        return scipy.io.loadmat(path, **kwargs)
    except FileNotFoundError:
        raise MtcpError(f"{path}: {task} label file is missing") from None
    except (
        OSError,
        ValueError,
        TypeError,
        NotImplementedError,
        scipy.io.matlab.MatReadError,
    ) as err:
        raise MtcpError(
            f"{path}: cannot read {task} .mat file ({err}); expected a MATLAB .mat file"
        ) from None


def file_size(path: Path) -> tuple[int, ...] | None:
    """Array shape of an image/PNG/NPY file read from its header only (``None`` if unknown)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape[:2])
    if suffix in (".png", ".jpg", ".jpeg"):
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    return None


# --------------------------------------------------------------------------- decoders


def shift_void(label: np.ndarray, classes: int, path: Path, task: str) -> np.ndarray:
    """NYUD semseg: stored ``0`` = void, ``1..C`` = classes ``0..C-1`` → void becomes 255."""
    check_classes(label, classes, path, task, offset=1)
    out = label.astype(np.int16) - 1
    out[(label == 0) | (label == IGNORE_INDEX)] = IGNORE_INDEX
    return out.astype(np.uint8)


def check_classes(
    label: np.ndarray, classes: int, path: Path, task: str, offset: int = 0
) -> np.ndarray:
    """Raise unless every value of a class map is a class id or 255 (ignore).

    Files store class ``c`` as ``c + offset``; values below ``offset`` mean void (NYUD: 1).
    """
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise MtcpError(
            f"{path}: {task} labels must be a single-channel integer map, got "
            f"{label.dtype} with shape {label.shape}"
        )
    top = classes + offset
    if label.size and (int(label.max()) >= top or int(label.min()) < 0):
        bad = label[((label >= top) | (label < 0)) & (label != IGNORE_INDEX)]
        if bad.size:
            value = int(bad[0])
            what = f" (class {value - offset})" if offset else ""
            void = f"{offset - 1} (void), " if offset else ""
            raise MtcpError(
                f"{path}: {task} label value {value}{what} is outside the task's {classes} "
                f"classes; expected {void}{offset} .. {top - 1} or {IGNORE_INDEX} (ignore)"
            )
    return label.astype(np.uint8)


def decode_png_normals(value: np.ndarray, path: Path) -> np.ndarray:
    """Normals PNG (``2·value/255 − 1``) → unit float32 ``[H, W, 3]``, invalid → zero.

    8-bit quantisation leaves valid vectors within ~1 % of unit length; pixels whose decoded
    length is far from 1 (e.g. stored as 0 or 128 grey for "no normal") are invalid.
    """
    if value.ndim != 3 or value.shape[2] < 3:
        raise MtcpError(f"{path}: normals PNG must be RGB, got shape {value.shape}")
    n = value[..., :3].astype(np.float32) * np.float32(2 / 255) - 1
    length = np.linalg.norm(n, axis=2, keepdims=True)
    ok = np.abs(length - 1) < 0.1
    return np.where(ok, n / np.maximum(length, 1e-6), 0).astype(np.float32)


def decode_npy_normals(value: np.ndarray, path: Path) -> np.ndarray:
    """Normals ``.npy`` (``[H, W, 3]`` unit vectors, zero = invalid) → float32."""
    if value.ndim != 3 or value.shape[2] != 3:
        raise MtcpError(f"{path}: normals must have shape [H, W, 3], got {value.shape}")
    n = value.astype(np.float32)
    if not np.isfinite(n.sum()):  # rare: find the bad pixels only then
        n[~np.isfinite(n).all(axis=2)] = 0
    return n


def decode_depth(value: np.ndarray, path: Path, scale: float = 1.0) -> np.ndarray:
    """Depth map (``[H, W]`` or ``[H, W, 1]``) times ``scale`` → metres, invalid → 0."""
    if value.ndim == 3 and value.shape[2] == 1:
        value = value[..., 0]
    if value.ndim != 2:
        raise MtcpError(f"{path}: depth must have shape [H, W], got {value.shape}")
    d = value.astype(np.float32)
    if scale != 1:
        d *= np.float32(scale)
    if not (np.isfinite(d.sum()) and d.min() >= 0):
        d[~np.isfinite(d) | (d < 0)] = 0
    return d


def decode_binary(value: np.ndarray, path: Path, task: str, png: bool) -> np.ndarray:
    """Edge / saliency map → 0/1, keeping 255 = ignore for ``.npy`` maps.

    PNG maps store ``value/255`` (positive when > 0.5); ``.npy`` maps store values in
    ``[0, 1]`` (positive when > 0.5) and may mark ignored pixels with 255.
    """
    if value.ndim == 3:
        value = value[..., 0]
    if value.ndim != 2:
        raise MtcpError(f"{path}: {task} must be a single-channel map, got {value.shape}")
    if png:
        return (value.astype(np.float32) > 127.5).astype(np.uint8)
    ignore = value == IGNORE_INDEX
    out = (value > 0.5).astype(np.uint8)
    out[ignore] = IGNORE_INDEX
    return out


def read_split(path: Path) -> list[str]:
    """Sample ids of a split file (one per line; blank lines ignored; duplicates dropped)."""
    if not path.is_file():
        raise MtcpError(f"{path}: split file is missing")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise MtcpError(f"{path}: split file lists no samples")
    return unique_ids(ids, path)


def unique_ids(ids: Iterable[Any], source: object) -> list[Any]:
    """``ids`` without repeats (first occurrence kept, order kept); repeats are logged.

    A split that lists an id twice would put it on both sides of the validation carve-out
    and count it twice in an evaluation, so every split passes through here. ``source``
    (the split file or folder) is named in the warning.
    """
    ids = list(ids)
    unique = list(dict.fromkeys(ids))
    if len(unique) < len(ids):
        counts: dict[Any, int] = {}
        for i in ids:
            counts[i] = counts.get(i, 0) + 1
        repeated = [f"{i!s} ({c}x)" for i, c in counts.items() if c > 1]
        shown = ", ".join(repeated[:10]) + (" ..." if len(repeated) > 10 else "")
        log.warning(
            "%s: %d id(s) listed more than once, each kept once: %s",
            source,
            len(repeated),
            shown,
        )
    return unique
