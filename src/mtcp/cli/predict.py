"""``mtcp predict CKPT INPUTS... --out DIR``: dense maps for images, folders and videos.

``CKPT`` is a checkpoint of ``mtcp train`` (``.ckpt``), a ``.safetensors`` or ``.onnx`` file of
``mtcp export``. ``mtcp predict --onnx FILE INPUTS... --out DIR`` (no CKPT) runs the exported
ONNX graph through onnxruntime on the CPU (needs ``pip install 'mtcp[export]'``); passing the
``.onnx`` file as CKPT does the same.

For every input image (``<name>`` = file stem; video frames ``<video>_f<frame>``) it writes into
``DIR/<name>/``:

==================  =========================================================================
``panel.png``       input and every task's colourised prediction side by side, with scales
``input.png``       the input image
``<task>_color.png`` colourised map: class palette, depth colormap (turbo, near = blue),
                    normals as RGB ((n + 1) / 2), edge / saliency probability as grey
``legend.json``     the scales: depth range (metres) of the colours, class names per id
raw values          ``--raw png`` (default): ``semseg.png`` class ids as 8-bit PNG,
                    ``depth_mm.png`` 16-bit millimetres (0 = none, saturates at 65.535 m),
                    ``edge_prob.png`` / ``sal_prob.png`` probability × 255, ``normals.npy``
                    float32 [H, W, 3]; ``--raw npy`` writes every map as ``<task>.npy``
==================  =========================================================================

``--outputs maps`` writes only the raw values and ``legend.json`` (no pictures): for pipelines
that read the maps, faster.

``DIR/predictions.csv`` has one row per input with its status, size and the per-image
coherence scores (SPEC §7; at the network's input size, with ``--refine`` of the refined maps
at the image's size, see :mod:`mtcp.inference.outputs`): ``depth_normal_deg`` (mean angle
between predicted normals and the normals implied by the predicted depth; lower is better) and
``boundary_f`` (agreement of segmentation and depth boundaries; higher is better; ``nan`` =
undefined: neither map has a boundary, as in constant maps). ``review_score`` (in [0, 1],
higher = more likely wrong) and ``review = 1`` come from the
review score calibrated at the end of ``mtcp train`` (:mod:`mtcp.inference.review`): by default
the checkpoint's review budget (``review.rate``, e.g. one image in ten of the validation images),
``--review-rate`` or ``--review-threshold`` to change it; ``reason`` says why in words. A model
without a calibration (older checkpoints) is flagged by the legacy rule (depth-normal > 30° or
boundary F < 0.2) and says so. An input that cannot be read or predicted is reported, listed
with status ``unreadable`` or ``failed`` and its error, and skipped; the others go on.

``--refine`` adjusts each image's depth and normals jointly so that they agree
(:mod:`mtcp.inference.refine`; seconds per image) before they are written and scored; the model
must predict both and store its training camera.

``DIR`` must be new or empty; ``--overwrite`` replaces the files mtcp predict writes there and
leaves any other file alone. Images are decoded in ``--workers`` processes and written in
``--writer-threads`` threads while the model runs; a progress bar with images/s is shown on a
terminal.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mtcp.errors import MtcpError
from mtcp.inference.outputs import OUTPUT_SETS, RAW_FORMATS


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
    parser.add_argument("--out", required=True, help="output folder (new or empty)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty --out, replacing the files mtcp predict writes",
    )
    parser.add_argument("--raw", choices=RAW_FORMATS, default="png", help="raw value format")
    parser.add_argument(
        "--outputs",
        choices=OUTPUT_SETS,
        default="all",
        help="all (default): pictures, panel and raw values; maps: raw values and legend.json "
        "only (faster; the review page then has no pictures)",
    )
    parser.add_argument("--every", type=int, default=1, help="videos: keep every N-th frame")
    parser.add_argument(
        "--review-rate",
        type=float,
        default=None,
        help="review budget: flag the share of images the calibration's validation images "
        "would have above the threshold (default: the checkpoint's review.rate)",
    )
    parser.add_argument(
        "--review-threshold",
        type=float,
        default=None,
        help="flag images whose review score exceeds this value in [0, 1] (instead of a rate)",
    )
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass")
    parser.add_argument(
        "--workers", type=int, default=None, help="image decoding processes (0 = none; default 2)"
    )
    parser.add_argument(
        "--writer-threads",
        type=int,
        default=None,
        help="threads scoring and writing the predicted images while the model runs (0 = in "
        "turn with the model; default 2, 1 on a one-core machine)",
    )
    parser.add_argument(
        "--refine",
        action="store_true",
        help="adjust depth and normals jointly so that they agree (seconds per image)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16", "int8"),
        default=None,
        help="fp32 (default), bf16 (autocast; fp32 fallback without native bf16) or int8 (an "
        "int8 .onnx of mtcp export --quantize int8); see README 'Precision'",
    )
    parser.add_argument("--trust", action="store_true", help="allow pickled checkpoints")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mtcp.inference import load
    from mtcp.inference.folder import check_output_folder, predict_to_folder

    if args.onnx is not None:
        if args.device != "cpu":
            raise MtcpError(f"--onnx runs on the CPU (onnxruntime); got --device {args.device}")
        model_file, inputs = args.onnx, args.paths
    else:
        model_file, inputs = args.paths[0], args.paths[1:]
        if not inputs:
            raise MtcpError("no INPUTS given: mtcp predict CKPT INPUTS... --out DIR")
    check_output_folder(args.out, args.overwrite)  # before the (slow) model load
    predictor = load(model_file, device=args.device, trust=args.trust, precision=args.precision)
    summary = predict_to_folder(
        predictor,
        inputs,
        args.out,
        raw=args.raw,
        outputs=args.outputs,
        every=args.every,
        review_rate=args.review_rate,
        review_threshold=args.review_threshold,
        overwrite=args.overwrite,
        refine=args.refine,
        batch_size=args.batch_size,
        workers=args.workers,
        writer_threads=args.writer_threads,
        progress=sys.stderr.isatty(),
        report=lambda message: print(f"mtcp predict: {message}", file=sys.stderr),
    )
    rate = summary.n_ok / summary.seconds if summary.seconds > 0 else 0.0
    calibrated = "" if predictor.review_calibration else "; review score uncalibrated: legacy rule"
    print(
        f"predicted {summary.n_ok} image(s) into {summary.out} in {summary.seconds:.1f} s "
        f"({rate:.1f} images/s; {summary.n_flagged} flagged for review, {summary.n_failed} "
        f"skipped{calibrated}); summary: {summary.csv}"
    )
    if summary.n_ok == 0:
        raise MtcpError("no input could be read")
    return 0
