"""``mtcp evaluate CKPT``: every metric of the checkpoint's tasks, coherence and Δm.

Images are fed at the network's training size and the predictions resized back to each
label map's own size before scoring (the release's protocol). The default data is the
checkpoint's own source and its *test* split (for synthetic scenes: a pool of scenes never
used in training). The table goes to the screen, everything to a JSON file (atomically).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtcp.errors import MtcpError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a checkpoint: metrics, coherence, Δm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="a checkpoint of mtcp train (.ckpt) or .safetensors")
    parser.add_argument("--data", help="'synthetic' or a dataset folder (default: the run's)")
    parser.add_argument(
        "--split", default="test", help="test (default), val (carved from train), train"
    )
    parser.add_argument("--protocol", choices=("mtinet", "atrc"), help="default: the run's")
    parser.add_argument("--references", help="single-task results JSON (file or folder) for Δm")
    parser.add_argument("--out", help="JSON results file (default: next to the checkpoint)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--limit", type=int, help="evaluate only the first N images")
    parser.add_argument("--trust", action="store_true", help="allow pickled checkpoints")
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


def evaluate(
    checkpoint: str | Path,
    data: str | None = None,
    split: str = "test",
    protocol: str | None = None,
    references: str | Mapping | None = None,
    batch_size: int = 4,
    limit: int | None = None,
    trust: bool = False,
    groups: str | Path | None = None,
    scenes: int | None = None,
    review: str = "all",
    review_rate: float | None = None,
    review_threshold: float | None = None,
) -> dict[str, Any]:
    """Evaluate ``checkpoint``; returns the JSON-ready report (see :func:`run`).

    ``groups``: a groups CSV (:mod:`mtcp.inference.groups`); ``scenes``: size of the synthetic
    test pool; ``review``: ``"all"`` / ``"basic"`` / ``"none"`` review score report
    (:mod:`mtcp.inference.review_check`) with the budget ``review_rate`` / ``review_threshold``.
    """
    import torch
    from torch.utils.data import DataLoader, Subset

    from mtcp.data.build import build_dataset
    from mtcp.engine.callbacks import target_coherence_metrics
    from mtcp.engine.config import config_from_dict
    from mtcp.inference import load_checkpoint_model
    from mtcp.metrics import build_metrics, delta_m, delta_m_terms, load_references

    model, tasks, meta = load_checkpoint_model(checkpoint, trust=trust)
    cfg = config_from_dict(meta["config"], str(checkpoint))
    source = data or cfg.data.source
    protocol = protocol or cfg.eval.protocol
    size = tuple(cfg.data.size)
    # synthetic scenes are rendered at the training size; real data keeps its own size
    dataset = build_dataset(
        source,
        split,
        tasks,
        recipe=None,
        size=size if source == "synthetic" else None,
        val_fraction=cfg.data.val_fraction,
        seed=cfg.trainer.seed,
        n=cfg.data.synthetic_scenes if source == "synthetic" and split != "test" else scenes,
    )
    _check_tasks(dict(getattr(dataset, "tasks", tasks)), tasks, checkpoint, source)
    if limit:
        dataset = Subset(dataset, range(min(limit, len(dataset))))
    layout = getattr(getattr(dataset, "dataset", dataset), "layout", "")
    metric_dataset = "pascal" if layout == "PASCAL_MT" else "nyud"
    metrics = build_metrics(tasks, protocol, dataset=metric_dataset)
    targets = target_coherence_metrics(tasks)
    grouped, group_ids = None, set()
    if groups is not None:
        from mtcp.inference.groups import GroupedMetrics, read_groups

        assignment = read_groups(groups)
        grouped = GroupedMetrics(
            assignment, lambda: build_metrics(tasks, protocol, dataset=metric_dataset)
        )
    model.eval()
    start = time.monotonic()
    loader = DataLoader(dataset, batch_size=batch_size if source == "synthetic" else 1)
    n_images = 0
    with torch.no_grad():
        for batch in loader:
            image = batch["image"]
            net_in = torch.nn.functional.interpolate(
                image, size=size, mode="bilinear", align_corners=False, antialias=True
            )
            outputs = model(net_in)
            outputs = {
                t: torch.nn.functional.interpolate(
                    outputs[t].float(), size=image.shape[-2:], mode="bilinear", align_corners=False
                )
                for t in tasks
            }
            metrics.update(outputs, batch)
            if grouped is not None:
                grouped.update(outputs, batch)
                group_ids.update(str(i) for i in batch["id"])
            if targets is not None:
                targets.update({}, batch)
            n_images += image.shape[0]
    results = metrics.compute()
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "model": meta["model"].get("name"),
        "data": str(source),
        "split": split,
        "n_images": n_images,
        "protocol": metrics.describe(),
        "seconds": round(time.monotonic() - start, 2),
        "metrics": results,
        "details": metrics.details(),
        "targets": targets.compute() if targets is not None else {},
    }
    if grouped is not None:
        from mtcp.inference.groups import check_groups

        check_groups(assignment, group_ids, groups)
        report["groups"] = grouped.compute()
    if review != "none":
        from mtcp.inference.review_check import review_check

        report["review"] = review_check(
            model,
            dataset,
            tasks,
            size,
            meta.get("intrinsics"),
            meta.get("review"),
            protocol=protocol,
            metric_dataset=metric_dataset,
            corruptions=review == "all",
            photos=review == "all",
            rate=review_rate,
            threshold=review_threshold,
            batch_size=batch_size,
        )
    if references:
        refs = load_references(references)
        report["delta_m"] = delta_m(results, refs, tasks=list(tasks))
        report["delta_m_terms"] = delta_m_terms(results, refs, tasks=list(tasks))
    return report


def _check_tasks(data_tasks: dict, tasks: dict, checkpoint: Any, source: str) -> None:
    for task, channels in tasks.items():
        if task not in data_tasks:
            raise MtcpError(
                f"{checkpoint}: the model predicts {task!r}, which {source} has no labels for"
            )
        if data_tasks[task] != channels:
            raise MtcpError(
                f"{checkpoint}: task {task!r} has {channels} classes in the model but "
                f"{data_tasks[task]} in {source}; evaluate on data with the same task set"
            )


def run(args: argparse.Namespace) -> int:
    from mtcp.engine.callbacks import metrics_table
    from mtcp.io import atomic_write_text

    report = evaluate(
        args.checkpoint,
        data=args.data,
        split=args.split,
        protocol=args.protocol,
        references=args.references,
        batch_size=args.batch_size,
        limit=args.limit,
        trust=args.trust,
        groups=args.groups,
        scenes=args.scenes,
        review=args.review_checks,
        review_rate=args.review_rate,
        review_threshold=args.review_threshold,
    )
    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(f".{args.split}.json")
    atomic_write_text(out, json.dumps(report, indent=2))
    print(
        f"{report['model']} on {report['data']} ({report['split']}, {report['n_images']} "
        f"images, {report['seconds']:.1f} s)"
    )
    print(metrics_table({"value": report["metrics"], "targets": report["targets"]}))
    if "delta_m" in report:
        terms = ", ".join(f"{t} {v:+.2f}%" for t, v in report["delta_m_terms"].items())
        print(f"Δm vs single-task references: {report['delta_m']:+.2f}% ({terms})")
    if "groups" in report:
        from mtcp.inference.groups import describe_groups

        print(describe_groups(report["groups"], metrics_table))
    if "review" in report:
        from mtcp.inference.review_check import describe_review

        print("\n".join(describe_review(report["review"])))
    print(f"results: {out}")
    return 0
