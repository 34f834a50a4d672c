"""``mtcp train [CONFIG] [section.key=value ...]``: train, evaluate before and after.

Without arguments it trains ``mtcp_tiny`` on synthetic scenes on the CPU (the packaged
``synthetic`` config). ``CONFIG`` is a YAML file or a packaged config name (``nyud_base``,
``pascal_paper`` …); overrides such as ``trainer.max_epochs=5`` or ``data.size=64x96`` apply
on top. ``--resume`` continues a run from its ``checkpoints/last.ckpt`` (exactly: model,
optimizer, schedule, loss-weighting state, epoch and random state) in the same run folder.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from mtcp.errors import MtcpError


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--print-config", action="store_true", help="print the config and exit")
    parser.add_argument("--devices", help="devices per node (int, 'auto' or ids '0,1')")
    parser.add_argument("--num-nodes", type=int, help="number of nodes")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="CKPT|RUN_DIR",
        help="continue a run: a checkpoint, a run folder, or (no value) the newest run "
        "of run.name that has checkpoints/last.ckpt",
    )


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (default: mtcp_tiny on synthetic scenes, CPU)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_options(parser)
    # REMAINDER so that options may also follow the config and the overrides
    parser.add_argument(
        "args",
        nargs=argparse.REMAINDER,
        metavar="CONFIG | section.key=value",
        help="a YAML config (file or packaged name) followed by overrides",
    )
    parser.set_defaults(run=run)


def _reparse(args: argparse.Namespace) -> argparse.Namespace:
    """Options that came after the first positional word, merged into ``args``."""
    parser = argparse.ArgumentParser(prog="mtcp train", add_help=False)
    _add_options(parser)
    parser.add_argument("words", nargs="*")
    late = parser.parse_intermixed_args(args.args)
    for key, value in vars(late).items():
        if key != "words" and value not in (None, False):
            setattr(args, key, value)
    args.args = late.words
    return args


def split_args(items: list[str]) -> tuple[str | None, list[str]]:
    """Positional words → (config or None, overrides)."""
    config = None
    overrides = []
    for i, item in enumerate(items):
        if "=" in item:
            overrides.append(item)
        elif i == 0:
            config = item
        else:
            raise MtcpError(
                f"unexpected argument {item!r}: give the config first, then section.key=value"
            )
    return config, overrides


def run(args: argparse.Namespace) -> int:
    from mtcp.engine.resume import resolve_run

    args = _reparse(args)
    if args.resume and "=" in args.resume:  # "--resume trainer.max_epochs=20": an override
        args.args.append(args.resume)
        args.resume = "latest"
    config, overrides = split_args(args.args)
    if args.devices is not None:
        devices = int(args.devices) if args.devices.isdigit() else args.devices
        overrides.append(
            f"trainer.devices={devices!r}"
            if isinstance(devices, str)
            else f"trainer.devices={devices}"
        )
    if args.num_nodes is not None:
        overrides.append(f"trainer.num_nodes={args.num_nodes}")
    cfg, resume = resolve_run(config, overrides, args.resume)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0

    from mtcp.engine.callbacks import metrics_table
    from mtcp.engine.training import train
    from mtcp.inference.evaluate import target_coherence

    _quiet_lightning()
    start = time.monotonic()
    result = train(cfg, resume=resume)
    if not result.trainer.is_global_zero:
        return 0
    minutes = (time.monotonic() - start) / 60
    columns = {"before": result.before} if result.before else {}
    columns["after"] = result.after
    datamodule = result.trainer.datamodule
    targets = target_coherence(datamodule.val_dataloader(), result.module.tasks)
    if targets:
        columns["targets"] = targets
    run_dir = result.run_dir
    n_val = len(datamodule.dataset("val"))
    best = result.best_checkpoint.name if result.best_checkpoint else "final weights"
    lines = [
        f"\nValidation metrics ({n_val} images, {cfg.eval.protocol} protocol; after = {best}):",
        metrics_table(columns),
    ]
    if targets:
        lines.append(
            "(targets: coherence of the labels themselves, the attainable level; constant maps "
            "of an untrained model have no boundaries at all: boundary_F undefined (nan), "
            "counted in boundary_n_undefined)"
        )
    if result.weight_warnings:
        lines += ["\nLoss weighting warnings:", *(f"  {w}" for w in result.weight_warnings)]
    if cfg.review.calibrate:  # review score calibration (issue 17)
        from mtcp.inference.review_calibration import describe_calibration

        lines.append(
            "\n" + describe_calibration(getattr(result.module, "review_calibration", None))
        )
    lines += [
        f"\nTrained {cfg.model.name} on {cfg.data.source} in {minutes:.1f} min.",
        f"  checkpoints: {run_dir / 'checkpoints'} (best.ckpt, last.ckpt)",
        f"  logs:        {run_dir / 'tensorboard'} (tensorboard --logdir {run_dir.parent}), "
        f"{run_dir / 'csv' / 'metrics.csv'}",
        f"  pictures:    {run_dir / 'predictions.png'}, {run_dir / 'loss_weights.png'}",
        f"  metrics:     {run_dir / 'metrics.json'}",
    ]
    print("\n".join(lines))
    return 0


def _quiet_lightning() -> None:
    """Lightning logs through its own handler *and* the root one: print once, without ads."""
    lightning_log = logging.getLogger("lightning")
    lightning_log.propagate = not lightning_log.handlers
    for handler in lightning_log.handlers:
        handler.addFilter(lambda record: "litlogger" not in record.getMessage())
