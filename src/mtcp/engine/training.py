"""A training run: check everything, evaluate, fit, evaluate the best checkpoint.

Run folder (see :mod:`mtcp.engine.run_dir` for its name):

=========================  ==================================================================
``config.yaml``            the resolved configuration
``checkpoints/last.ckpt``  end of the latest epoch (resume from it with ``--resume``)
``checkpoints/best.ckpt``  best validation score so far (see :func:`mtcp.engine.module.monitor_of`),
                           with the review score calibration (:mod:`mtcp.engine.calibration`)
``tensorboard/``           TensorBoard events (``tensorboard --logdir runs``)
``csv/metrics.csv``        the same scalars as CSV (:mod:`mtcp.engine.csv_log`)
``loss_weights.{csv,png}`` weighting history (LPS weights) — :mod:`mtcp.engine.callbacks`
``predictions.png``        a few validation images with predictions and targets
``metrics.json``           validation metrics before and after training, weighting warnings
=========================  ==================================================================

Order of a run: configuration, data, model (and pretrained weights) and, for a resume, the
checkpoint (:func:`mtcp.engine.resume.check_resume`) are all checked before anything is written;
a new run folder is made only then, and removed again if the run fails before training starts.
Temporary files a killed run left in the folder (``.last.ckpt.*.tmp`` …) are removed when the
next run starts there, and old checkpoint temporaries of the other runs of the same name when
any run of that name starts (:func:`mtcp.engine.run_dir.clean_temporaries`). Checkpoints hold
the random states of process 0, so a resumed run continues exactly where the interrupted one
stopped.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import default_collate

from mtcp.engine.callbacks import LossWeightsReport, PredictionPicture
from mtcp.engine.config import Config
from mtcp.engine.datamodule import MtcpDataModule
from mtcp.engine.lightning_trainer import best_checkpoint_callback, build_trainer, world_size
from mtcp.engine.module import MtcpModule
from mtcp.engine.pretrained import pretrained_weights
from mtcp.engine.resume import ResumePoint, check_resume
from mtcp.engine.run_dir import (
    RUN_DIR_ENV,
    clean_temporaries,
    is_main_process,
    make_run_dir,
    remove_failed_start,
)
from mtcp.engine.weight_watch import WeightWatch
from mtcp.io import atomic_write_text, write_json
from mtcp.metrics import load_references


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` produced (paths are inside ``run_dir``)."""

    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    before: dict[str, dict[str, float]]
    after: dict[str, dict[str, float]]
    #: the MtcpModule, holding the weights of ``best_checkpoint`` (those evaluated as "after")
    module: Any
    trainer: L.Trainer
    #: end-of-run summary of the loss weighting (:mod:`mtcp.engine.weight_watch`), in words
    weight_warnings: list[str] = dataclasses.field(default_factory=list)


def build_datamodule(cfg: Config) -> MtcpDataModule:
    """The :class:`~mtcp.engine.datamodule.MtcpDataModule` of ``cfg.data``."""
    d = cfg.data
    return MtcpDataModule(
        source=d.source,
        tasks=d.tasks,
        size=tuple(d.size),
        recipe=d.recipe,
        batch_size=d.batch_size,
        num_workers=d.num_workers,
        val_fraction=d.val_fraction,
        seed=cfg.trainer.seed,
        n=d.synthetic_scenes if d.source == "synthetic" else None,
    )


def metric_dataset(datamodule: Any) -> str:
    """``"pascal"`` for PASCAL-layout data, else ``"nyud"`` (sets the edge-metric tolerance)."""
    layout = getattr(datamodule.dataset("val"), "layout", "")
    return "pascal" if layout == "PASCAL_MT" else "nyud"


def sample_batch(datamodule: Any, n: int, split: str = "val") -> dict[str, Any]:
    """The first ``n`` samples of ``split`` collated into one batch (for pictures)."""
    dataset = datamodule.dataset(split)
    return default_collate([dataset[i] for i in range(min(max(n, 1), len(dataset)))])


def build_module(cfg: Config, datamodule: Any) -> MtcpModule:
    """The :class:`MtcpModule` of ``cfg`` for the tasks and camera of ``datamodule``."""
    references = None
    if cfg.eval.references:
        references = load_references(cfg.eval.references)
    camera = sample_batch(datamodule, 1)["intrinsics"][0]
    intrinsics = camera.tolist() if bool(torch.isfinite(camera).all()) else None
    data = datamodule.dataset("val")
    names = getattr(getattr(data, "dataset", data), "class_names", None)  # through a Subset
    with pretrained_weights(cfg.model.name, cfg.model.pretrained):
        return MtcpModule(
            cfg,
            datamodule.tasks,
            references,
            metric_dataset(datamodule),
            intrinsics=intrinsics,
            class_names=names,
        )


class _TrainingStarted(L.Callback):
    started = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = True


def train(
    cfg: Config,
    resume: str | Path | None = None,
    evaluate_before: bool = True,
    callbacks: list[L.Callback] = (),
    **trainer_overrides: Any,
) -> TrainResult:
    """Train ``cfg``: evaluate the untrained model, fit, evaluate the best checkpoint.

    Args:
        cfg: the run configuration.
        resume: a ``last.ckpt`` (or any checkpoint of ``mtcp train``) to continue from; the
            run continues in the checkpoint's run folder when it lies in one. Refused before
            anything is written when it cannot continue (:func:`~mtcp.engine.resume.check_resume`).
        evaluate_before: validate the untrained model first (a resumed run keeps the
            "before" metrics of the run it continues).
        callbacks: extra Lightning callbacks.
        trainer_overrides: extra :class:`lightning.Trainer` arguments.
    """
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    point = check_resume(resume, cfg, module) if resume is not None else None
    # every check passed: from here on the run folder is written
    new_folder = point is None or point.run_dir is None
    run_dir = make_run_dir(cfg) if new_folder else point.run_dir
    started = _TrainingStarted()
    try:
        return _run(
            cfg,
            run_dir,
            datamodule,
            module,
            point,
            evaluate_before,
            [started, *callbacks],
            trainer_overrides,
        )
    except BaseException:
        if new_folder and not started.started:
            remove_failed_start(run_dir)
        raise


def _run(
    cfg: Config,
    run_dir: Path,
    datamodule: Any,
    module: MtcpModule,
    point: ResumePoint | None,
    evaluate_before: bool,
    callbacks: list[L.Callback],
    trainer_overrides: dict[str, Any],
) -> TrainResult:
    if world_size(cfg) > 1 and is_main_process():
        os.environ[RUN_DIR_ENV] = str(run_dir)  # the processes Lightning starts inherit it
    clean_temporaries(run_dir)
    if is_main_process():
        atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())
    picture_batch = sample_batch(datamodule, cfg.eval.picture_samples)
    watch = WeightWatch()
    reports = [LossWeightsReport(run_dir), PredictionPicture(run_dir, picture_batch), watch]
    if cfg.review.calibrate:  # review score calibrated on the validation split (issue 17)
        from mtcp.engine.calibration import ReviewCalibration

        reports.append(ReviewCalibration(cfg.review.rate, cfg.review.threshold))
    trainer = build_trainer(
        cfg,
        run_dir,
        [*reports, *callbacks],
        resume_step=None if point is None else point.global_step,
        **trainer_overrides,
    )
    for logger in trainer.loggers:  # the config as hyper-parameters (TensorBoard's HPARAMS tab)
        logger.log_hyperparams(cfg.to_dict())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*treespec.*")  # Lightning 2.6 vs torch 2.14
        warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty.*")
        # validation metrics are synchronised by torchmetrics before they are logged
        warnings.filterwarnings("ignore", ".*when logging on epoch level in distributed.*")
        if evaluate_before and point is None:
            trainer.validate(module, datamodule=datamodule, verbose=False)
            module.before_results = module.last_results
        ckpt_path = None if point is None else point.checkpoint
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        best = best_checkpoint_callback(trainer).best_model_path or None
        trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)
        after = module.last_results
    before = module.before_results
    weight_warnings = [str(w) for w in watch.warnings]
    if trainer.is_global_zero:
        payload = {
            "before": before,
            "after": after,
            "best_checkpoint": str(best),
            "weight_warnings": weight_warnings,
        }
        write_json(run_dir / "metrics.json", payload)
    return TrainResult(
        run_dir=run_dir,
        last_checkpoint=run_dir / "checkpoints" / "last.ckpt",
        best_checkpoint=Path(best) if best else None,
        before=before,
        after=after,
        module=module,
        trainer=trainer,
        weight_warnings=weight_warnings,
    )
