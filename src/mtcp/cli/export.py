"""``mtcp export``: a trained model as ONNX or as weights-only ``.safetensors``."""

from __future__ import annotations

import argparse

from mtcp.errors import MtcpError

FORMATS = ("onnx", "safetensors")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a trained model to ONNX or safetensors",
        description="Export a checkpoint of mtcp train (or a .safetensors weights file) to ONNX "
        "(run with onnxruntime, e.g. mtcp predict --onnx) or to weights-only safetensors with "
        "the model config in its metadata (no pickle; mtcp.load rebuilds the model).",
    )
    parser.add_argument("checkpoint", metavar="CKPT", help=".ckpt of mtcp train or .safetensors")
    parser.add_argument(
        "--format", required=True, choices=FORMATS, help="output format: onnx or safetensors"
    )
    parser.add_argument("--out", required=True, help="output file")
    parser.add_argument(
        "--size",
        default=None,
        help="input size HxW (default: the training size stored in CKPT); fixed in a static "
        "ONNX graph, the preferred inference size otherwise",
    )
    parser.add_argument(
        "--dynamic", action="store_true", help="ONNX: leave batch, height and width free"
    )
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    parser.add_argument(
        "--quantize",
        choices=("int8",),
        default=None,
        help="ONNX: static int8 quantization with onnxruntime (fixed input size), calibrated on "
        "training images; run it with mtcp predict / mtcp.load like any .onnx",
    )
    parser.add_argument(
        "--calibration",
        default=None,
        metavar="SOURCE",
        help="--quantize: 'synthetic' or a dataset folder whose train split calibrates the "
        "activation ranges (default: the data CKPT was trained on)",
    )
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=None,
        metavar="N",
        help="--quantize: number of calibration images (default 32)",
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help="allow a checkpoint that needs full unpickling (only for files you trust)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mtcp.export import ONNX_OPSET, export_onnx, save_safetensors
    from mtcp.inference import load
    from mtcp.sizes import parse_size

    if args.format not in FORMATS:  # argparse checks it; kept for programmatic callers
        raise MtcpError(f"unknown format {args.format!r}; accepted: {', '.join(FORMATS)}")
    if args.format == "safetensors" and (args.dynamic or args.opset is not None or args.quantize):
        raise MtcpError("--dynamic, --opset and --quantize apply to --format onnx only")
    if args.quantize and args.dynamic:
        raise MtcpError("--quantize int8 needs a fixed input size: drop --dynamic")
    if not args.quantize and (args.calibration or args.calibration_images):
        raise MtcpError("--calibration and --calibration-images apply to --quantize only")
    size = parse_size(args.size, "--size") if args.size is not None else None
    predictor = load(args.checkpoint, trust=args.trust)
    size = size or predictor.size
    intrinsics = predictor.camera(size)
    if args.quantize:
        from mtcp.export import quantize

        source, seed = (args.calibration, 0)
        if source is None:
            source, seed = quantize.training_source(args.checkpoint, trust=args.trust)
        n = args.calibration_images or quantize.CALIBRATION_IMAGES
        images = quantize.calibration_images(source, size, predictor.tasks, n=n, seed=seed)
        out = quantize.export_int8(
            predictor.model,
            args.out,
            size,
            images,
            intrinsics=intrinsics,
            opset=args.opset or ONNX_OPSET,
            calibration_note=f"{len(images)} train images of {source}",
            review=predictor.review_calibration,
        )
        shape = (
            f"int8, [1, 3, {size[0]}, {size[1]}], calibrated on {len(images)} images of {source}"
        )
    elif args.format == "onnx":
        out = export_onnx(
            predictor.model,
            args.out,
            size=size,
            dynamic=args.dynamic,
            opset=args.opset or ONNX_OPSET,
            intrinsics=intrinsics,
            review=predictor.review_calibration,
        )
        shape = "dynamic [B, 3, H, W]" if args.dynamic else f"[1, 3, {size[0]}, {size[1]}]"
    else:
        out = save_safetensors(
            predictor.model,
            args.out,
            size=size,
            intrinsics=intrinsics,
            review=predictor.review_calibration,
        )
        shape = f"preferred input {size[0]}x{size[1]}"
    print(
        f"exported {predictor.model.config['name']} ({', '.join(predictor.tasks)}) from "
        f"{args.checkpoint} to {out} ({args.format}, {shape})"
    )
    return 0
