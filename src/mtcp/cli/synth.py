"""``mtcp synth``: write synthetic scenes in a real dataset layout (SPEC §2.1–2.2)."""

from __future__ import annotations

import argparse

from mtcp.sizes import parse_size


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write synthetic scenes in a dataset layout",
        description="Render synthetic indoor scenes with exact labels and write them in the "
        "on-disk layout of NYUD_MT, NYUDv2 (ATRC) or PASCAL_MT, split into train and val.",
    )
    parser.add_argument("--out", required=True, help="output folder (must be new or empty)")
    parser.add_argument(
        "--layout",
        required=True,
        help="on-disk layout: NYUD_MT, NYUDv2 or PASCAL_MT (or nyud-mt, nyudv2, pascal-mt)",
    )
    parser.add_argument("--n", type=int, required=True, help="number of scenes")
    parser.add_argument("--size", default="240x320", help="image size HxW (default 240x320)")
    parser.add_argument("--seed", type=int, default=0, help="scene family (default 0)")
    parser.add_argument(
        "--val-fraction", type=float, default=0.25, help="share of scenes in val (default 0.25)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty output folder"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mtcp.data.layouts import get_layout
    from mtcp.data.synthetic.writer import split_counts, write_layout

    size = parse_size(args.size, "--size")
    out = write_layout(
        args.out,
        args.layout,
        args.n,
        size,
        seed=args.seed,
        overwrite=args.overwrite,
        val_fraction=args.val_fraction,
    )
    n_train, n_val = split_counts(args.n, args.val_fraction)
    layout = get_layout(args.layout)
    print(
        f"wrote {args.n} synthetic scenes ({size[0]}x{size[1]}, seed {args.seed}) to {out} "
        f"in the {layout.name} layout: {n_train} in "
        f"{layout.split.format(split=layout.splits[0])}, {n_val} in "
        f"{layout.split.format(split=layout.splits[1])}; tasks: {', '.join(layout.labels)}"
    )
    return 0
