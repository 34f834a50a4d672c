"""Pictures of dense predictions: class palettes, depth colormap, normals as RGB, panels.

Every function takes numpy maps in image layout (``[H, W]`` or ``[H, W, 3]``) in the physical
units of :mod:`mtcp.tasks` (class ids, metres, unit normals, probabilities) and returns
``uint8 [H, W, 3]`` RGB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mtcp import io
from mtcp.tasks import IGNORE_INDEX, get_task

#: colour of ignored / invalid pixels
INVALID_RGB = (0, 0, 0)
LABEL_HEIGHT = 14


def class_palette(n: int) -> np.ndarray:
    """``n`` well-separated RGB colours, ``uint8 [n, 3]`` (tab20, then golden-ratio hues)."""
    from matplotlib import colormaps
    from matplotlib.colors import hsv_to_rgb

    if n <= 20:
        colours = colormaps["tab20"](np.arange(n) * (2 if n <= 10 else 1) % 20)[:, :3]
    else:
        hues = (np.arange(n) * 0.618033988749895) % 1.0
        sat = 0.55 + 0.45 * ((np.arange(n) // 3) % 2)
        val = 0.95 - 0.35 * ((np.arange(n) // 2) % 2)
        colours = hsv_to_rgb(np.stack([hues, sat, val], axis=1))
    return (np.asarray(colours) * 255).round().astype(np.uint8)


def colorize_classes(ids: np.ndarray, n_classes: int) -> np.ndarray:
    """Class-id map ``[H, W]`` → RGB; ignore (255) and out-of-range ids are black."""
    ids = np.asarray(ids).astype(np.int64)
    palette = np.concatenate([class_palette(n_classes), np.array([INVALID_RGB], np.uint8)])
    index = np.where((ids >= 0) & (ids < n_classes), ids, n_classes)
    return palette[index]


def depth_range(depth: np.ndarray) -> tuple[float, float]:
    """The default colour range of a depth map: 2nd–98th percentile of its valid pixels (m)."""
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0) & (depth != IGNORE_INDEX)
    if not valid.any():
        return (0.0, 0.0)
    lo, hi = np.percentile(depth[valid], [2, 98])
    return float(lo), float(hi)


def colorize_depth(
    depth: np.ndarray, vmin: float | None = None, vmax: float | None = None, cmap: str = "turbo"
) -> np.ndarray:
    """Depth in metres ``[H, W]`` → RGB (near = blue … far = red); ``<= 0`` / non-finite black.

    The range defaults to the 2nd–98th percentile of the valid pixels.
    """
    from matplotlib import colormaps

    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0) & (depth != IGNORE_INDEX)
    out = np.zeros((*depth.shape, 3), np.uint8)
    if not valid.any():
        return out
    lo, hi = depth_range(depth)
    lo = lo if vmin is None else vmin
    hi = hi if vmax is None else vmax
    scaled = np.clip((depth - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    rgb = (colormaps[cmap](scaled)[..., :3] * 255).round().astype(np.uint8)
    out[valid] = rgb[valid]
    return out


def colorize_normals(normals: np.ndarray) -> np.ndarray:
    """Unit normals ``[H, W, 3]`` → RGB with (x, y, z) ∈ [-1, 1] mapped to (R, G, B) ∈ [0, 255].

    Zero vectors (invalid) are black.
    """
    n = np.asarray(normals, dtype=np.float32)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    unit = np.where(norm > 1e-6, n / np.maximum(norm, 1e-6), 0.0)
    rgb = ((unit + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
    rgb[norm[..., 0] <= 1e-6] = INVALID_RGB
    return rgb


def colorize_probability(prob: np.ndarray) -> np.ndarray:
    """Probability / binary map ``[H, W]`` in [0, 1] → grey RGB (white = 1); ignore (255) red."""
    p = np.asarray(prob, dtype=np.float32)
    ignored = p == IGNORE_INDEX
    grey = (np.clip(p, 0.0, 1.0) * 255).round().astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb[ignored] = (96, 0, 0)
    return rgb


def colorize(task: str, value: np.ndarray, n_classes: int | None = None, **kwargs) -> np.ndarray:
    """Colourise one task's map by its kind (see :mod:`mtcp.tasks`)."""
    spec = get_task(task)
    if spec.kind == "classes":
        return colorize_classes(value, n_classes or spec.channels)
    if spec.kind == "depth":
        return colorize_depth(value, **kwargs)
    if spec.kind == "normals":
        return colorize_normals(value)
    return colorize_probability(value)


def _labelled(picture: np.ndarray, label: str) -> np.ndarray:
    """Add a text strip of ``LABEL_HEIGHT`` pixels above ``picture``."""
    h, w = picture.shape[:2]
    canvas = Image.new("RGB", (w, h + LABEL_HEIGHT), (255, 255, 255))
    canvas.paste(Image.fromarray(picture), (0, LABEL_HEIGHT))
    ImageDraw.Draw(canvas).text((2, 1), label, fill=(0, 0, 0))
    return np.asarray(canvas)


def _pad_right(picture: np.ndarray, width: int) -> np.ndarray:
    return np.pad(picture, ((0, 0), (0, width - picture.shape[1]), (0, 0)), constant_values=255)


def _with_legend(tile: np.ndarray, strip: np.ndarray | None, height: int) -> np.ndarray:
    """``tile`` above its legend ``strip``, padded with white to ``height`` rows."""
    width = tile.shape[1]
    parts = [tile] if strip is None else [tile, strip[:, :width]]
    out = np.concatenate([_pad_right(p, width) for p in parts], axis=0)
    return np.pad(out, ((0, height - out.shape[0]), (0, 0), (0, 0)), constant_values=255)


def panel(
    pictures: Mapping[str, np.ndarray],
    gap: int = 2,
    legends: Mapping[str, np.ndarray | None] | None = None,
) -> np.ndarray:
    """Pictures of one size side by side, each titled with its key → ``uint8 [H', W', 3]``.

    ``legends`` (key → RGB strip, e.g. from :func:`legend`) are drawn under their picture.
    """
    legends = legends or {}
    tiles = [_labelled(np.asarray(p, np.uint8), name) for name, p in pictures.items()]
    height = max(
        t.shape[0] + (0 if legends.get(k) is None else legends[k].shape[0])
        for t, k in zip(tiles, pictures)
    )
    tiles = [_with_legend(t, legends.get(k), height) for t, k in zip(tiles, pictures)]
    h = tiles[0].shape[0]
    spacer = np.full((h, gap, 3), 255, np.uint8)
    row: list[np.ndarray] = []
    for tile in tiles:
        row += [tile, spacer]
    return np.concatenate(row[:-1], axis=1)


def stack(rows: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Stack panels vertically (padding narrower ones with white)."""
    width = max(r.shape[1] for r in rows)
    out: list[np.ndarray] = []
    for r in rows:
        pad = np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)
        out += [np.concatenate([r, pad], axis=1), np.full((gap, width, 3), 255, np.uint8)]
    return np.concatenate(out[:-1], axis=0)


def png_bytes(picture: np.ndarray) -> bytes:
    """Encode ``uint8 [H, W, 3]``, ``uint8 [H, W]`` or ``uint16 [H, W]`` as PNG bytes."""
    return io.png_bytes(np.ascontiguousarray(picture))


def save_png(path: str | Path, picture: np.ndarray) -> Path:
    """Write a PNG atomically (:func:`mtcp.io.write_png`); returns ``path``."""
    return io.write_png(path, np.ascontiguousarray(picture))


def _text_strip(width: int, lines: Sequence[tuple[tuple[int, int, int] | None, str]]) -> np.ndarray:
    """White strip of ``width`` px with one line per entry: an optional colour swatch, a text."""
    canvas = Image.new("RGB", (width, LABEL_HEIGHT * len(lines) + 2), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for row, (colour, text) in enumerate(lines):
        y = row * LABEL_HEIGHT + 1
        x = 2
        if colour is not None:
            draw.rectangle([2, y + 2, 11, y + 11], fill=tuple(colour), outline=(80, 80, 80))
            x = 15
        draw.text((x, y), text, fill=(0, 0, 0))
    return np.asarray(canvas)


def colour_bar(vmin: float, vmax: float, width: int, cmap: str = "turbo") -> np.ndarray:
    """Depth colour bar ``uint8 [h, width, 3]``: the colormap from ``vmin`` to ``vmax`` metres,
    labelled at both ends and the middle."""
    from matplotlib import colormaps

    ramp = colormaps[cmap](np.linspace(0.0, 1.0, width))[:, :3]
    bar = np.repeat((ramp * 255).round().astype(np.uint8)[None], 8, axis=0)
    labels = Image.new("RGB", (width, LABEL_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(labels)
    mid = (vmin + vmax) / 2
    draw.text((1, 1), f"{vmin:.2f}", fill=(0, 0, 0))
    draw.text((width // 2 - 12, 1), f"{mid:.2f}", fill=(0, 0, 0))
    right = f"{vmax:.2f} m"
    draw.text((max(width - 6 * len(right) - 1, 0), 1), right, fill=(0, 0, 0))
    return np.concatenate([bar, np.asarray(labels)], axis=0)


def class_key(
    ids: np.ndarray,
    n_classes: int,
    width: int,
    names: Sequence[str] | None = None,
    most: int = 6,
) -> np.ndarray:
    """Swatches and names of the (at most ``most``) largest classes present in ``ids``."""
    ids = np.asarray(ids).astype(np.int64)
    present, counts = np.unique(ids[(ids >= 0) & (ids < n_classes)], return_counts=True)
    palette = class_palette(n_classes)
    order = present[np.argsort(-counts, kind="stable")][:most]
    lines = []
    for k in order:
        name = names[k] if names is not None and k < len(names) else f"class {k}"
        lines.append((tuple(int(c) for c in palette[k]), f"{k} {name}"))
    return _text_strip(width, lines or [(None, "no class")])


def normals_key(size: int = 48) -> np.ndarray:
    """A half sphere seen from the camera, coloured as normals maps are (``uint8 [s, s, 3]``)."""
    v, u = np.mgrid[0:size, 0:size].astype(np.float32)
    x, y = (u + 0.5) / size * 2 - 1, (v + 0.5) / size * 2 - 1
    r2 = x**2 + y**2
    inside = r2 < 1
    n = np.stack([x, y, -np.sqrt(np.clip(1 - r2, 0, 1))], -1) * inside[..., None]
    rgb = colorize_normals(n)
    rgb[~inside] = 255
    return rgb


def legend(
    task: str,
    value: np.ndarray,
    width: int,
    n_classes: int | None = None,
    names: Sequence[str] | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """The scale of one task's picture (as :func:`colorize` drew it), ``uint8 [h, width, 3]``:
    a colour bar in metres for depth (``vmin``/``vmax`` as passed to :func:`colorize`), the
    classes present for class maps, a key for normals, the grey scale for probabilities."""
    kind = get_task(task).kind
    if kind == "depth":
        lo, hi = depth_range(value)
        return colour_bar(lo if vmin is None else vmin, hi if vmax is None else vmax, width)
    if kind == "classes":
        return class_key(value, n_classes or get_task(task).channels, width, names)
    if kind == "normals":
        key = normals_key(min(48, width))
        text = _text_strip(width, [(None, "RGB = (xyz+1)/2"), (None, "x right y down z fwd")])
        return np.concatenate([_pad_right(key, width), text], axis=0)
    return _text_strip(width, [(None, "black 0 ... white 1")])
