"""``mtcp convert-release CKPT --out FILE``: the authors' checkpoint as an mtcp weights file."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert-release",
        help="convert a checkpoint of the MT-CP release into an mtcp_paper .safetensors file",
        description=(
            "Read a checkpoint saved by the authors' training code (plain or DDP state dict, "
            "read with weights_only), map every tensor onto mtcp_paper (NYUD or PASCAL task "
            "set), and write a .safetensors file that mtcp evaluate / predict use directly."
        ),
    )
    parser.add_argument("checkpoint", help="the release checkpoint (.pth, .pth.tar, .pt)")
    parser.add_argument("--out", required=True, help="output .safetensors file")
    parser.add_argument(
        "--size",
        default=None,
        help="input size HxW stored for prediction (default: NYUD 480x640, PASCAL 512x512)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mtcp.export.release import convert_release
    from mtcp.sizes import parse_size

    size = None if args.size is None else parse_size(args.size, "--size")
    report = convert_release(args.checkpoint, args.out, size=size)
    print(report.summary())
    return 0
