"""``mtcp predict CKPT INPUTS... --out DIR``: dense maps for images, folders and videos.

``CKPT`` is a checkpoint of ``mtcp train`` (``.ckpt``), a ``.safetensors`` or ``.onnx`` file of
``mtcp export``. ``mtcp predict --onnx FILE INPUTS... --out DIR`` (no CKPT) runs the exported
ONNX graph through onnxruntime on the CPU (needs ``pip install 'mtcp[export]'``); passing the
``.onnx`` file as CKPT does the same.

For every input image (``<name>`` = file stem; video frames ``<video>_f<frame>``) it writes into
``DIR/<name>/``:

==================  =========================================================================
``panel.png``       input and every task's colourised prediction side by side
``<task>_color.png`` colourised map: class palette, depth colormap (turbo, near = blue),
                    normals as RGB ((n + 1) / 2), edge / saliency probability as grey
raw values          ``--raw png`` (default): ``semseg.png`` class ids as 8-bit PNG,
                    ``depth_mm.png`` 16-bit millimetres (0 = none, saturates at 65.535 m),
                    ``edge_prob.png`` / ``sal_prob.png`` probability × 255, ``normals.npy``
                    float32 [H, W, 3]; ``--raw npy`` writes every map as ``<task>.npy``
==================  =========================================================================

``DIR/predictions.csv`` has one row per input with its status, size and the per-image
coherence scores (SPEC §7; the camera is assumed to be the training camera scaled to the
image): ``depth_normal_deg`` (mean angle between predicted normals and the normals implied by
the predicted depth; lower is better) and ``boundary_f`` (agreement of segmentation and depth
boundaries; higher is better; ``nan`` = undefined: neither map has a boundary, as in constant
maps, and not flagged). ``review = 1`` flags images whose predictions disagree with
each other: ``depth_normal_deg > --max-angle`` (default 30°) or ``boundary_f < --min-boundary-f``
(default 0.2). An unreadable input is reported, listed with status ``unreadable`` and skipped.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mtcp.errors import MtcpError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
MAX_ANGLE = 30.0
MIN_BOUNDARY_F = 0.2


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict dense maps for images, folders or videos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="mtcp predict [options] CKPT INPUTS... --out DIR\n"
        "       mtcp predict [options] --onnx FILE INPUTS... --out DIR",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="CKPT INPUTS",
        help="CKPT (.ckpt of mtcp train, .safetensors or .onnx; omitted with --onnx), then "
        "image files, folders of images, videos",
    )
    parser.add_argument(
        "--onnx",
        metavar="FILE",
        default=None,
        help="run this ONNX graph (mtcp export --format onnx) with onnxruntime on the CPU "
        "instead of a CKPT",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--raw", choices=("png", "npy"), default="png", help="raw value format")
    parser.add_argument("--every", type=int, default=1, help="videos: keep every N-th frame")
    parser.add_argument(
        "--max-angle",
        type=float,
        default=MAX_ANGLE,
        help=f"review flag: depth-normal angle above this (default {MAX_ANGLE})",
    )
    parser.add_argument(
        "--min-boundary-f",
        type=float,
        default=MIN_BOUNDARY_F,
        help=f"review flag: boundary F below this (default {MIN_BOUNDARY_F})",
    )
    parser.add_argument(
        "--refine",
        action="store_true",
        help="adjust depth and normals jointly so that they agree (seconds per image)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--trust", action="store_true", help="allow pickled checkpoints")
    parser.set_defaults(run=run)


# --- inputs ------------------------------------------------------------------------------------


def iter_inputs(inputs: list[str], every: int = 1) -> Iterator[tuple[str, Any]]:
    """Yield ``(name, image)`` for files, folders (sorted, non-recursive) and video frames.

    ``image`` is a path, a numpy frame, or an :class:`MtcpError` for an unreadable input.
    """
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
            if not files:
                yield str(path), MtcpError(f"{path}: folder holds no image files")
            for file in files:
                yield str(file), file
        elif path.suffix.lower() in VIDEO_EXTS:
            yield from _video_frames(path, every)
        else:
            yield str(path), path


def _video_frames(path: Path, every: int) -> Iterator[tuple[str, Any]]:
    if not path.is_file():
        yield str(path), MtcpError(f"{path}: no such file")
        return
    try:
        frames = _open_video(path)
        for i, frame in enumerate(frames):
            if i % every == 0:
                yield f"{path}#{i}", np.asarray(frame)
    except MtcpError as err:
        yield str(path), err
    except Exception as err:  # decoder errors of av / imageio have no common base class
        yield str(path), MtcpError(f"{path}: cannot decode the video ({err})")


def _open_video(path: Path) -> Iterator[np.ndarray]:
    """RGB frames of a video through PyAV or imageio (optional dependencies, imported lazily)."""
    try:
        import av
    except ImportError:
        av = None
    if av is not None:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
        return
    try:
        import imageio.v3 as iio
    except ImportError:
        raise MtcpError(
            f"{path}: reading videos needs PyAV or imageio: pip install av (or imageio[pyav])"
        ) from None
    yield from iio.imiter(path)


# --- outputs -----------------------------------------------------------------------------------


def _unique_name(name: str, used: set[str]) -> str:
    stem = name.split("#")[0]
    base = Path(stem).stem + (f"_f{int(name.split('#')[1]):06d}" if "#" in name else "")
    candidate, k = base, 1
    while candidate in used:
        candidate, k = f"{base}_{k}", k + 1
    used.add(candidate)
    return candidate


def write_outputs(
    folder: Path, rgb: np.ndarray, maps: dict[str, np.ndarray], tasks: dict[str, int], raw: str
) -> None:
    """Colourised PNGs, raw values and the panel of one image into ``folder`` (atomically)."""
    from mtcp import viz
    from mtcp.io import atomic_write_bytes
    from mtcp.tasks import get_task

    pictures = {"input": rgb}
    for task, value in maps.items():
        colour = viz.colorize(task, value, n_classes=tasks[task])
        pictures[task] = colour
        viz.save_png(folder / f"{task}_color.png", colour)
        kind = get_task(task).kind
        if raw == "npy" or kind == "normals":
            buf = io.BytesIO()
            np.save(buf, value)
            atomic_write_bytes(folder / f"{task}.npy", buf.getvalue())
        elif kind == "classes":
            dtype = np.uint8 if tasks[task] <= 256 else np.uint16
            viz.save_png(folder / f"{task}.png", value.astype(dtype))
        elif kind == "depth":
            mm = np.clip(np.round(value * 1000.0), 0, 65535).astype(np.uint16)
            viz.save_png(folder / f"{task}_mm.png", mm)
        else:
            viz.save_png(folder / f"{task}_prob.png", np.round(value * 255).astype(np.uint8))
    viz.save_png(folder / "panel.png", viz.panel(pictures))


def coherence_scores(maps: dict[str, np.ndarray], intrinsics: Any) -> dict[str, float]:
    """Per-image coherence (NaN when the tasks needed are not predicted)."""
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


def review_flag(scores: dict[str, float], max_angle: float, min_boundary_f: float) -> str:
    """Reasons to send an image to human review ('' = none)."""
    reasons = []
    if scores["depth_normal_deg"] > max_angle:
        reasons.append(f"depth-normal {scores['depth_normal_deg']:.1f} deg > {max_angle:g}")
    if scores["boundary_f"] < min_boundary_f:
        reasons.append(f"boundary F {scores['boundary_f']:.2f} < {min_boundary_f:g}")
    return "; ".join(reasons)


def run(args: argparse.Namespace) -> int:
    from mtcp.inference import load, to_rgb_array
    from mtcp.io import atomic_write_text

    if args.onnx is not None:
        if args.device != "cpu":
            raise MtcpError(f"--onnx runs on the CPU (onnxruntime); got --device {args.device}")
        model_file, inputs = args.onnx, args.paths
    else:
        model_file, inputs = args.paths[0], args.paths[1:]
        if not inputs:
            raise MtcpError("no INPUTS given: mtcp predict CKPT INPUTS... --out DIR")
    predictor = load(model_file, device=args.device, trust=args.trust)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    used: set[str] = set()
    failed = 0
    for name, item in iter_inputs(inputs, max(args.every, 1)):
        row: dict[str, Any] = {"input": name, "output": "", "status": "ok"}
        try:
            if isinstance(item, MtcpError):
                raise item
            rgb = to_rgb_array(item)
            maps = predictor.predict(rgb, refine=args.refine)
        except MtcpError as err:
            failed += 1
            print(f"mtcp predict: skipped {err}", file=sys.stderr)
            rows.append(row | {"status": "unreadable", "reason": str(err)})
            continue
        folder = out / _unique_name(name, used)
        write_outputs(folder, rgb, maps, predictor.tasks, args.raw)
        scores = coherence_scores(maps, predictor.camera(rgb.shape[:2]))
        reason = review_flag(scores, args.max_angle, args.min_boundary_f)
        rows.append(
            row
            | {
                "output": str(folder),
                "height": rgb.shape[0],
                "width": rgb.shape[1],
                **{k: round(v, 4) for k, v in scores.items()},
                "review": int(bool(reason)),
                "reason": reason,
            }
        )
    columns = [
        "input",
        "output",
        "status",
        "height",
        "width",
        "depth_normal_deg",
        "boundary_f",
        "review",
        "reason",
    ]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "predictions.csv", buf.getvalue())
    done = len(rows) - failed
    flagged = sum(int(r.get("review", 0) or 0) for r in rows)
    print(
        f"predicted {done} image(s) into {out} ({flagged} flagged for review, {failed} skipped); "
        f"summary: {out / 'predictions.csv'}"
    )
    if done == 0:
        raise MtcpError("no input could be read")
    return 0
