"""``mtcp evaluate MODEL``: every metric of the model's tasks, coherence and Δm.

``MODEL`` is anything ``mtcp.load`` accepts: a checkpoint of ``mtcp train`` (``.ckpt``), or a
``.safetensors`` / ``.onnx`` file of ``mtcp export`` (these do not record their training data:
give ``--data``). Images are fed at the network's input size and the predictions resized back
to each label map's own size before scoring (the release's protocol; :func:`mtcp.evaluate`).
The default data is the checkpoint's own source and its *test* split (for synthetic scenes: a
pool of scenes never used in training). The table is printed first, then everything is written
to a JSON file (atomically): ``--out``, or beside the checkpoint, or, when that folder is not
writable, into the current folder (the message says where).

The review score report (issue 17; ``--review-checks``): how well the review score ranks the
images by their real error, the share flagged, and (``all``, the default) how many corrupted
images and real photographs it flags. ``--groups FILE.csv`` (columns ``id,group``) adds every
metric per group and the largest gap between groups.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a model: metrics, coherence, Δm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", metavar="MODEL", help=".ckpt, .safetensors or .onnx")
    parser.add_argument("--data", help="'synthetic' or a dataset folder (default: the run's)")
    parser.add_argument(
        "--split", default="test", help="test (default), val (carved from train), train"
    )
    parser.add_argument("--protocol", choices=("mtinet", "atrc"), help="default: the run's")
    parser.add_argument("--references", help="single-task results JSON (file or folder) for Δm")
    parser.add_argument("--out", help="JSON results file (default: next to the checkpoint)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--limit", type=int, help="evaluate only the first N images")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="fp32 (default) or bf16 (autocast; fp32 fallback without native bf16)",
    )
    parser.add_argument(
        "--trust", action="store_true", help="allow pickled checkpoints (.ckpt only)"
    )
    # review score and bias indicators (issue 17)
    parser.add_argument(
        "--groups",
        metavar="FILE.csv",
        help="CSV of image id -> group (columns id,group): every metric per group and the gaps",
    )
    parser.add_argument(
        "--scenes", type=int, help="synthetic data: number of held-out test scenes (default 16)"
    )
    parser.add_argument("--review-rate", type=float, help="review budget (default: the model's)")
    parser.add_argument("--review-threshold", type=float, help="explicit review score threshold")
    parser.add_argument(
        "--review-checks",
        choices=("all", "basic", "none"),
        default="all",
        help="review score report: all (with the corruption and real-photograph checks), "
        "basic (ranking and flag rates only) or none",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mtcp.engine.callbacks import metrics_table
    from mtcp.inference.evaluate import evaluate
    from mtcp.inference.evaluation_file import save_report

    report = evaluate(
        args.checkpoint,
        data=args.data,
        split=args.split,
        protocol=args.protocol,
        references=args.references,
        batch_size=args.batch_size,
        limit=args.limit,
        trust=args.trust,
        device=args.device,
        precision=args.precision,
        groups=args.groups,
        scenes=args.scenes,
        review=args.review_checks,
        review_rate=args.review_rate,
        review_threshold=args.review_threshold,
    )
    print(
        f"{report['model']} on {report['data']} ({report['split']}, {report['n_images']} "
        f"images, {report['seconds']:.1f} s)"
    )
    print(metrics_table({"value": report["metrics"], "targets": report["targets"]}))
    if "delta_m" in report:
        terms = ", ".join(f"{t} {v:+.2f}%" for t, v in report["delta_m_terms"].items())
        print(f"Δm vs single-task references: {report['delta_m']:+.2f}% ({terms})", flush=True)
    if "groups" in report:
        from mtcp.inference.groups import describe_groups

        print(describe_groups(report["groups"], metrics_table), flush=True)
    if "review" in report:
        from mtcp.inference.review_check import describe_review

        print("\n".join(describe_review(report["review"])), flush=True)
    path, note = save_report(report, args.out, args.split)
    if note:
        print(f"note: {note}")
    print(f"results: {path}")
    return 0
