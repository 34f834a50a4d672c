"""The Lightning Trainer of a configuration: devices, precision, checkpoints and loggers.

Checkpoints (``<run>/checkpoints/``), both written at the end of every training epoch, after
the weighting scheme's epoch update and after validation:

* ``best.ckpt``: the best ``trainer.monitor`` score so far (see
  :func:`mtcp.engine.module.monitor_of`);
* ``last.ckpt``: the latest epoch, written *after* ``best.ckpt`` so that the best score it
  carries includes its own epoch (a resume from it never lets a worse epoch replace the best).

Distributed training uses Lightning's DDP strategy whenever ``devices × num_nodes > 1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy

from mtcp.engine.checkpoint import AtomicCheckpointIO
from mtcp.engine.config import Config
from mtcp.engine.csv_log import FlushLogsEachEpoch, RunCSVLogger
from mtcp.engine.module import monitor_of
from mtcp.errors import MtcpError


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
    """Processes of the run: devices per node × ``trainer.num_nodes``."""
    devices = cfg.trainer.devices
    if isinstance(devices, str):
        if devices == "auto":
            n = torch.cuda.device_count() if resolve_accelerator(cfg) == "gpu" else 1
        else:  # "0,1" lists of device ids
            n = len([d for d in devices.split(",") if d.strip()])
    else:
        n = devices
    return max(n, 1) * cfg.trainer.num_nodes


def best_checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint:
    """The callback that keeps ``best.ckpt``."""
    return next(c for c in trainer.checkpoint_callbacks if c.monitor is not None)


def build_trainer(
    cfg: Config,
    run_dir: Path,
    callbacks: list[L.Callback] = (),
    resume_step: int | None = None,
    **overrides: Any,
) -> L.Trainer:
    """The Lightning Trainer of ``cfg`` writing into ``run_dir``.

    ``resume_step``: global step of the checkpoint a resumed run starts from (the CSV log
    keeps the rows before it). ``overrides`` are passed to :class:`lightning.Trainer` (e.g.
    ``limit_train_batches``).
    """
    t = cfg.trainer
    monitor, mode = monitor_of(cfg)
    ckpt_dir = run_dir / "checkpoints"
    # Lightning runs checkpoint callbacks last, in list order: best first, then last (see the
    # module docstring). monitor=None + save_top_k=1 = overwrite "last.ckpt" every epoch
    # (save_last=True would write it only when a top-k checkpoint is saved in the same step).
    checkpoints = [
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
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="last",
            save_top_k=1,
            every_n_epochs=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        ),
    ]
    strategy: Any = "auto"
    if world_size(cfg) > 1:
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
            RunCSVLogger(run_dir, resume_step=resume_step),
        ],
        callbacks=[*checkpoints, LearningRateMonitor("epoch"), FlushLogsEachEpoch(), *callbacks],
    )
    kwargs.update(overrides)
    return L.Trainer(**kwargs)
