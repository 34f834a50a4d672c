"""``mtcp data-report``: describe a dataset (splits, label coverage, distributions, bias)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data-report",
        help="describe a dataset: splits, label coverage, distributions, duplicates",
        description="Read every image of a dataset's training and test splits and report the "
        "images per split, per-task label coverage, class frequencies, depth and normal "
        "distributions, identical images across splits, and what is nearly absent from "
        "train but present in test.",
    )
    parser.add_argument("source", help="dataset folder (layout detected) or 'synthetic'")
    parser.add_argument("--tasks", help="comma-separated tasks (default: the layout's)")
    parser.add_argument("--limit", type=int, help="read at most N images per split")
    parser.add_argument("--json", help="also write the full report to this JSON file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mtcp.data.report import data_report
    from mtcp.io import write_json

    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    report = data_report(args.source, tasks=tasks, limit=args.limit)
    print(f"{report['source']} ({report['layout']} layout)")
    for split, entry in report["splits"].items():
        print(f"\n{split}: {entry['images']} images")
        for task, t in entry["tasks"].items():
            line = f"  {task:<12} labelled {t['labelled']:>6} ({100 * t['coverage']:.0f}%)"
            if "class_share" in t:
                top = sorted(t["class_share"].items(), key=lambda kv: -kv[1])[:5]
                line += "  top classes: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in top)
            if "depth_quantiles_m" in t:
                q = t["depth_quantiles_m"]
                line += f"  depth m: min {q['min']:.2f} median {q['median']:.2f} max {q['max']:.2f}"
            if "orientation_share" in t:
                line += "  " + ", ".join(
                    f"{k} {100 * v:.0f}%" for k, v in t["orientation_share"].items()
                )
            if "positive_share" in t:
                line += f"  positive {100 * t['positive_share']:.1f}%"
            print(line)
    if report["missing_splits"]:
        print(f"\nsplits not in this dataset: {', '.join(report['missing_splits'])}")
    print(f"\n{len(report['warnings'])} warning(s)")
    for warning in report["warnings"]:
        print(f"  warning: {warning}")
    if args.json:
        write_json(args.json, report)
        print(f"report written to {args.json}")
    return 0
