"""Build the Lightning Trainer and run a training: evaluate, fit, evaluate again.

Run folder ``<run.root>/<run.name>/version_<n>/`` (a new ``n`` for every run, never
overwriting one; under torchrun or SLURM with several processes it is ``job_<id>`` so that
every process agrees on it without talking):

=========================  ==================================================================
``config.yaml``            the resolved configuration
``checkpoints/last.ckpt``  end of the latest epoch (resume from it with ``--resume``)
``checkpoints/best.ckpt``  best validation score so far (see :func:`mtcp.engine.module.monitor_of`)
``tensorboard/``           TensorBoard events (``tensorboard --logdir runs``)
``csv/metrics.csv``        the same scalars as CSV
``loss_weights.{csv,png}`` weighting history (LPS weights) — :mod:`mtcp.engine.callbacks`
``predictions.png``        a few validation images with predictions and targets
``metrics.json``           validation metrics before and after training
=========================  ==================================================================

Distributed training uses Lightning's DDP strategy whenever ``devices × num_nodes > 1``; started
as a plain command it launches the other local processes itself, and it detects torchrun
(``TORCHELASTIC_*``) and SLURM (``SLURM_*``) environments. Checkpoints are written at the end
of every epoch, after the weighting scheme's epoch update, with the random states of process 0,
so a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

from mtcp.engine.checkpoint import AtomicCheckpointIO
from mtcp.engine.config import Config
from mtcp.errors import MtcpError
from mtcp.io import atomic_write_text

RUN_DIR_ENV = "MTCP_RUN_DIR"


def _world_env() -> tuple[int, str | None]:
    """(global rank, external job id) for processes started by torchrun or SLURM."""
    if "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return int(os.environ.get("RANK", "0")), os.environ["TORCHELASTIC_RUN_ID"]
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ:
        return int(os.environ.get("SLURM_PROCID", "0")), os.environ["SLURM_JOB_ID"]
    return 0, None


def is_main_process() -> bool:
    """True in the process of global rank 0 (before or without torch.distributed)."""
    keys = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
    return all(os.environ.get(k, "0") == "0" for k in keys)


def make_run_dir(cfg: Config) -> Path:
    """The folder of a new run (created by process 0; see the module docstring)."""
    if os.environ.get(RUN_DIR_ENV) and not is_main_process():  # local DDP processes
        return Path(os.environ[RUN_DIR_ENV])
    base = Path(cfg.run.root) / cfg.run.name
    rank, job = _world_env()
    if job is not None:
        run_dir = base / f"job_{job}"
        if rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    base.mkdir(parents=True, exist_ok=True)
    n = 0
    for child in base.glob("version_*"):
        suffix = child.name.removeprefix("version_")
        if suffix.isdigit():
            n = max(n, int(suffix) + 1)
    while True:  # mkdir is atomic: two runs started together get different versions
        run_dir = base / f"version_{n}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            n += 1


def resolve_accelerator(cfg: Config) -> str:
    """``"gpu"`` or ``"cpu"`` for ``trainer.accelerator`` (``"auto"`` = GPU when available)."""
    acc = cfg.trainer.accelerator
    if acc == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if acc in ("gpu", "cuda") and not torch.cuda.is_available():
        raise MtcpError("trainer.accelerator is 'gpu' but no CUDA GPU is available")
    return "gpu" if acc == "cuda" else acc


def resolve_precision(cfg: Config) -> str:
    """``trainer.precision``; ``"auto"`` = bf16-mixed on GPU, 32-true on CPU."""
    if cfg.trainer.precision != "auto":
        return cfg.trainer.precision
    return "bf16-mixed" if resolve_accelerator(cfg) == "gpu" else "32-true"


def world_size(cfg: Config) -> int:
    devices = cfg.trainer.devices
    if isinstance(devices, str):
        if devices == "auto":
            n = torch.cuda.device_count() if resolve_accelerator(cfg) == "gpu" else 1
        else:  # "0,1" lists of device ids
            n = len([d for d in devices.split(",") if d.strip()])
    else:
        n = devices
    return max(n, 1) * cfg.trainer.num_nodes


def build_trainer(
    cfg: Config, run_dir: Path, callbacks: list[L.Callback] = (), **overrides: Any
) -> L.Trainer:
    """The Lightning Trainer of ``cfg`` writing into ``run_dir``.

    ``overrides`` are passed to :class:`lightning.Trainer` (e.g. ``limit_train_batches``).
    """
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from mtcp.engine.module import monitor_of

    t = cfg.trainer
    monitor, mode = monitor_of(cfg)
    ckpt_dir = run_dir / "checkpoints"
    checkpoints = [
        # after the module's epoch-end hook, i.e. after the weighting update of the epoch;
        # monitor=None + save_top_k=1 = overwrite "last.ckpt" every epoch (save_last=True
        # would write it only when a top-k checkpoint is saved in the same step)
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="last",
            save_top_k=1,
            every_n_epochs=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        ),
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best",
            monitor=monitor,
            mode=mode,
            save_top_k=1,
            save_on_train_epoch_end=True,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
    ]
    strategy: Any = "auto"
    if world_size(cfg) > 1:
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(find_unused_parameters=False)
    kwargs: dict[str, Any] = dict(
        accelerator=resolve_accelerator(cfg),
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=resolve_precision(cfg),
        max_epochs=t.max_epochs,
        gradient_clip_val=t.gradient_clip_val or None,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        log_every_n_steps=t.log_every_n_steps,
        num_sanity_val_steps=0,
        # no_grad instead of inference_mode: metric states reset during trainer.validate()
        # must stay usable by the validation runs inside fit()
        inference_mode=False,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
        default_root_dir=run_dir,
        plugins=[AtomicCheckpointIO()],
        logger=[
            TensorBoardLogger(save_dir=run_dir, name="tensorboard", version=""),
            CSVLogger(save_dir=run_dir, name="csv", version=""),
        ],
        callbacks=[*checkpoints, LearningRateMonitor("epoch"), *callbacks],
    )
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def _check_resume(checkpoint: Path, tasks: dict[str, int]) -> None:
    """Refuse, before anything is written, to resume a checkpoint of another task set."""
    from mtcp.engine.module import CHECKPOINT_KEY
    from mtcp.io import load_checkpoint

    meta = load_checkpoint(checkpoint).get(CHECKPOINT_KEY)
    if meta is None:
        raise MtcpError(f"{checkpoint}: not a checkpoint of mtcp train")
    if dict(meta["tasks"]) != dict(tasks):
        raise MtcpError(
            f"{checkpoint}: checkpoint holds tasks {dict(meta['tasks'])} but the data of this "
            f"run has {dict(tasks)}; resume only with the task set it was trained on"
        )


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


def build_datamodule(cfg: Config) -> Any:
    """The :class:`~mtcp.engine.datamodule.MtcpDataModule` of ``cfg.data``."""
    from mtcp.engine.datamodule import MtcpDataModule

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
    from torch.utils.data import default_collate

    dataset = datamodule.dataset(split)
    return default_collate([dataset[i] for i in range(min(n, len(dataset)))])


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
            run continues in the checkpoint's run folder when it lies in one.
        evaluate_before: validate the untrained model first (skipped when resuming).
        callbacks: extra Lightning callbacks.
        trainer_overrides: extra :class:`lightning.Trainer` arguments.
    """
    from mtcp.engine.callbacks import LossWeightsReport, PredictionPicture
    from mtcp.engine.module import MtcpModule

    resume = Path(resume) if resume is not None else None
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    if resume is not None:
        _check_resume(resume, datamodule.tasks)
    if resume is not None and resume.parent.name == "checkpoints":
        run_dir = resume.parent.parent
    else:
        run_dir = make_run_dir(cfg)
    if world_size(cfg) > 1 and is_main_process():
        os.environ[RUN_DIR_ENV] = str(run_dir)  # the processes Lightning starts inherit it
    if is_main_process():
        atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())
    references = None
    if cfg.eval.references:
        from mtcp.metrics import load_references

        references = load_references(cfg.eval.references)
    picture_batch = sample_batch(datamodule, cfg.eval.picture_samples)
    camera = picture_batch["intrinsics"][0]
    intrinsics = camera.tolist() if bool(torch.isfinite(camera).all()) else None
    module = MtcpModule(
        cfg, datamodule.tasks, references, metric_dataset(datamodule), intrinsics=intrinsics
    )
    reports = [LossWeightsReport(run_dir), PredictionPicture(run_dir, picture_batch)]
    if cfg.review.calibrate:  # review score calibrated on the validation split (issue 17)
        from mtcp.engine.calibration import ReviewCalibration

        reports.append(ReviewCalibration(cfg.review.rate, cfg.review.threshold))
    trainer = build_trainer(cfg, run_dir, [*reports, *callbacks], **trainer_overrides)
    for logger in trainer.loggers:  # the config as hyper-parameters (TensorBoard's HPARAMS tab)
        logger.log_hyperparams(cfg.to_dict())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*Experiment logs directory.*")
        warnings.filterwarnings("ignore", ".*treespec.*")  # Lightning 2.6 vs torch 2.14
        warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
        # validation metrics are synchronised by torchmetrics before they are logged
        warnings.filterwarnings("ignore", ".*when logging on epoch level in distributed.*")
        before: dict[str, dict[str, float]] = {}
        if evaluate_before and resume is None:
            trainer.validate(module, datamodule=datamodule, verbose=False)
            before = module.last_results
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        best = trainer.checkpoint_callbacks[1].best_model_path or None
        trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)
        after = module.last_results
    result = TrainResult(
        run_dir=run_dir,
        last_checkpoint=run_dir / "checkpoints" / "last.ckpt",
        best_checkpoint=Path(best) if best else None,
        before=before,
        after=after,
        module=module,
        trainer=trainer,
    )
    if trainer.is_global_zero:
        payload = {"before": before, "after": after, "best_checkpoint": str(best)}
        atomic_write_text(run_dir / "metrics.json", json.dumps(payload, indent=2))
    return result
