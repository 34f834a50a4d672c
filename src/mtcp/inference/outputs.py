"""What ``mtcp predict`` writes per image, the per-image coherence scores and the legacy review
flag.

For an image ``<name>`` (file stem; video frames ``<video>_f<frame>``), ``DIR/<name>/`` holds:

==================== ========================================================================
``panel.png``        input and every task's colourised prediction side by side, each with its
                     scale underneath (:func:`mtcp.viz.legend`: depth colour bar in metres,
                     the classes present with their names, the normals key)
``input.png``        the input image
``<task>_color.png`` colourised map (:func:`mtcp.viz.colorize`)
``legend.json``      the scales: ``{"depth": {"vmin", "vmax", "unit", "cmap"}, "classes":
                     {task: [name per class id]}}``
raw values, ``png``  ``semseg.png`` (``human_parts.png``): argmax class ids, 8-bit PNG (16-bit
                     above 256 classes); ``depth_mm.png``: ``round(1000 · depth)`` as 16-bit
                     PNG (0 = none, saturates at 65.535 m); ``edge_prob.png`` / ``sal_prob.png``:
                     ``round(255 · p)``; ``normals.npy``: float32 ``[H, W, 3]``
raw values, ``npy``  every map as ``<task>.npy`` (the arrays of :mod:`mtcp.inference.maps`)
==================== ========================================================================

``outputs="maps"`` (:data:`OUTPUT_SETS`) writes only the raw values and ``legend.json`` (the
class names; no depth range) and removes the pictures an earlier run left in the image's
folder: for a pipeline that reads the maps and wants the throughput (the review page then shows
the scores without pictures).

Every file is written atomically (:mod:`mtcp.io`) but not flushed to disk one by one (two
``fsync`` calls per file cost more than the encoding on a local disk, far more on a network
drive): :func:`mtcp.inference.folder.predict_to_folder` flushes them all once, before it writes
``predictions.csv``. ``predictions.csv`` has one row per input
(:data:`CSV_COLUMNS`): its status (``ok``, ``unreadable`` or ``failed`` with the error in
``reason``), size and the coherence scores (SPEC §7): ``depth_normal_deg`` (mean angle between
the predicted normals and those implied by the predicted depth; lower is better) and
``boundary_f`` (agreement of segmentation and depth boundaries; higher is better; ``nan`` =
undefined, e.g. constant maps, not flagged). They are those of the network's maps at its input
size with the training camera — the resolution the model predicts at, and the values its review
score uses (:func:`mtcp.inference.review.coherence_of`); with ``refine``, those of the refined
maps as written, at the image's size with the camera scaled to it (:func:`coherence_scores`).
``boundary_f`` matches boundaries within a tolerance in pixels, so scores at two resolutions are
not directly comparable.
``review_score`` (in [0, 1], higher = more likely wrong), ``review = 1`` and ``reason`` (why, in
words) come from the review score calibrated at the end of ``mtcp train``
(:mod:`mtcp.inference.review`; the checkpoint's budget ``review.rate`` unless a rate or a
threshold is given). A model without a calibration (older checkpoints) is flagged by the legacy
rule (:func:`mtcp.inference.review.review_flag`: depth-normal > 30° or boundary F < 0.2) and
``reason`` says so.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtcp import viz
from mtcp.io import atomic_write_bytes, atomic_write_text, write_json, write_png
from mtcp.tasks import get_task

RAW_FORMATS = ("png", "npy")
#: what is written per image: everything, or the raw values and ``legend.json`` only
OUTPUT_SETS = ("all", "maps")
#: per image: the scale of its pictures (depth range in metres, class names), read by the review
#: page (:func:`mtcp.inference.review_queue.legends`)
LEGEND_FILE = "legend.json"
#: zlib level of the PNGs written per image: fast (about 30 ms instead of 90 ms per image at
#: 240x320), files about 1.4x larger than at PIL's default 6
PNG_LEVEL = 1
CSV_COLUMNS = (
    "input",
    "output",
    "status",
    "height",
    "width",
    "depth_normal_deg",
    "boundary_f",
    "review_score",
    "review",
    "reason",
)


def npy_bytes(value: np.ndarray) -> bytes:
    """``value`` in the ``.npy`` format."""
    buf = io.BytesIO()
    np.save(buf, value)
    return buf.getvalue()


def _classes_png(task: str, value: np.ndarray, channels: int) -> tuple[str, np.ndarray]:
    return f"{task}.png", value.astype(np.uint8 if channels <= 256 else np.uint16)


def _depth_png(task: str, value: np.ndarray, channels: int) -> tuple[str, np.ndarray]:
    return f"{task}_mm.png", np.clip(np.round(value * 1000.0), 0, 65535).astype(np.uint16)


def _probability_png(task: str, value: np.ndarray, channels: int) -> tuple[str, np.ndarray]:
    return f"{task}_prob.png", np.round(value * 255).astype(np.uint8)


#: task kind → ``(task, map, channels)`` → ``(file name, PNG array)`` of ``--raw png``; kinds
#: not listed (normals) are written as ``.npy``
RAW_PNG: dict[str, Callable[[str, np.ndarray, int], tuple[str, np.ndarray]]] = {
    "classes": _classes_png,
    "depth": _depth_png,
    "binary": _probability_png,
}


def write_outputs(
    folder: str | Path,
    rgb: np.ndarray,
    maps: Mapping[str, np.ndarray],
    tasks: Mapping[str, int],
    raw: str = "png",
    class_names: Mapping[str, Sequence[str]] | None = None,
    pictures: bool = True,
) -> list[Path]:
    """Raw values and ``legend.json`` of one image into ``folder``, with ``pictures`` also the
    input, the colourised PNGs and the panel (module table).

    Args:
        rgb: the input image, ``uint8 [H, W, 3]``.
        maps: ``{task: map}`` from :func:`mtcp.inference.maps.to_numpy_maps`.
        tasks: ``{task: channels}``.
        raw: ``"png"`` or ``"npy"``.
        class_names: ``{task: [name per class id]}`` for the class keys (ids otherwise).
        pictures: False: only the raw values and ``legend.json`` (``outputs="maps"``); pictures
            of an earlier run in ``folder`` are removed, so none is shown with these maps.

    Returns:
        the files written.
    """
    folder = Path(folder)
    written: list[Path] = []
    class_names = class_names or {}
    shown = {"input": rgb}
    legends: dict[str, np.ndarray] = {}
    scales: dict[str, Any] = {"classes": {t: list(n) for t, n in class_names.items()}}
    if pictures:
        written.append(_png(folder / "input.png", rgb))
    else:
        for name in ["input.png", "panel.png"] + [f"{task}_color.png" for task in maps]:
            (folder / name).unlink(missing_ok=True)
    for task, value in maps.items():
        if pictures:
            span: dict[str, float] = {}
            if get_task(task).kind == "depth":  # one range for the colours, the bar and the file
                lo, hi = viz.depth_range(value)
                span = {"vmin": lo, "vmax": hi}
                scales["depth"] = {**span, "unit": "m", "cmap": "turbo"}
            colour = viz.colorize(task, value, n_classes=tasks[task], **span)
            shown[task] = colour
            names = class_names.get(task)
            legends[task] = viz.legend(task, value, colour.shape[1], tasks[task], names, **span)
            written.append(_png(folder / f"{task}_color.png", colour))
        encode = RAW_PNG.get(get_task(task).kind) if raw == "png" else None
        if encode is None:
            written.append(
                atomic_write_bytes(folder / f"{task}.npy", npy_bytes(value), durable=False)
            )
        else:
            name, picture = encode(task, value, tasks[task])
            written.append(_png(folder / name, picture))
    if pictures:
        panel = viz.panel(shown, legends=legends)
        written.append(_png(folder / "panel.png", panel))
    written.append(write_json(folder / LEGEND_FILE, scales, durable=False))
    return written


def _png(path: Path, image: np.ndarray) -> Path:
    return write_png(path, image, PNG_LEVEL, durable=False)  # flushed once per run (module doc)


def coherence_scores(maps: Mapping[str, np.ndarray], intrinsics: Any) -> dict[str, float]:
    """Per-image coherence ``{"depth_normal_deg", "boundary_f"}`` (NaN when the tasks or the
    camera needed are missing)."""
    # lazy: numba kernels load only when scoring, keeps `mtcp --help` fast
    from mtcp.metrics import coherence

    scores = {"depth_normal_deg": math.nan, "boundary_f": math.nan}
    if "depth" in maps and "normals" in maps and intrinsics is not None:
        scores["depth_normal_deg"] = float(
            coherence.depth_normal_coherence(maps["depth"], maps["normals"], intrinsics)
        )
    if "semseg" in maps and "depth" in maps:
        scores["boundary_f"] = float(
            coherence.boundary_coherence(
                maps["semseg"], maps["depth"], maps.get("normals"), intrinsics
            )
        )
    return scores


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """``predictions.csv`` (:data:`CSV_COLUMNS`, empty cells for missing values), atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(CSV_COLUMNS), restval="", extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())
