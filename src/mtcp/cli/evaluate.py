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
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="fp32 (default) or bf16 (autocast; fp32 fallback without native bf16)",
    )
    parser.add_argument("--trust", action="store_true", help="allow pickled checkpoints")
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
    precision: str = "fp32",
) -> dict[str, Any]:
    """Evaluate ``checkpoint``; returns the JSON-ready report (see :func:`run`)."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from mtcp.data.build import build_dataset
    from mtcp.engine.callbacks import target_coherence_metrics
    from mtcp.engine.config import config_from_dict
    from mtcp.inference import load_checkpoint_model
    from mtcp.inference import precision as prec
    from mtcp.metrics import build_metrics, delta_m, delta_m_terms, load_references, to_floats

    model, tasks, meta = load_checkpoint_model(checkpoint, trust=trust)
    precision = prec.resolve_precision(precision, "cpu")  # precision hook (issue 18)
    prec.prepare_model(model, precision)
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
        n=cfg.data.synthetic_scenes if source == "synthetic" and split != "test" else None,
    )
    _check_tasks(dict(getattr(dataset, "tasks", tasks)), tasks, checkpoint, source)
    if limit:
        dataset = Subset(dataset, range(min(limit, len(dataset))))
    layout = getattr(getattr(dataset, "dataset", dataset), "layout", "")
    metrics = build_metrics(tasks, protocol, dataset="pascal" if layout == "PASCAL_MT" else "nyud")
    targets = target_coherence_metrics(tasks)
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
            with prec.autocast(precision):
                outputs = model(net_in)
            outputs = {
                t: torch.nn.functional.interpolate(
                    outputs[t].float(), size=image.shape[-2:], mode="bilinear", align_corners=False
                )
                for t in tasks
            }
            metrics.update(outputs, batch)
            if targets is not None:
                targets.update({}, batch)
            n_images += image.shape[0]
    results = to_floats(metrics.compute())
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "model": meta["model"].get("name"),
        "data": str(source),
        "split": split,
        "precision": precision,
        "n_images": n_images,
        "protocol": metrics.describe(),
        "seconds": round(time.monotonic() - start, 2),
        "metrics": results,
        "details": metrics.details(),
        "targets": to_floats(targets.compute()) if targets is not None else {},
    }
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
        precision=args.precision,
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
    print(f"results: {out}")
    return 0
