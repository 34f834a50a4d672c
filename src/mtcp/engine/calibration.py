"""End-of-training calibration of the review score (:mod:`mtcp.inference.review`).

After ``trainer.fit``, ``mtcp train`` validates the best checkpoint once more; at the end of
that validation this callback scores every validation image with those weights, measures its
real error, fits the calibration (:func:`mtcp.inference.review_calibration.fit_calibration`;
input statistics from at most ``max_train_images`` training images) and stores it

* on the module (``pl_module.review_calibration``, read by the CLI's summary), and
* in ``best.ckpt`` under ``checkpoint["mtcp"]["review"]`` (rewritten atomically), so that
  ``mtcp.load``, ``mtcp predict`` and ``mtcp export`` find it.

:func:`calibrate_checkpoint` does the same for an existing checkpoint (e.g. an older one).

``last.ckpt`` holds other weights (the last epoch's) and stays uncalibrated unless it is the
best one. Only process 0 calibrates (on the whole validation split, not a shard).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch

from mtcp.engine.lightning_trainer import best_checkpoint_callback
from mtcp.engine.module import CHECKPOINT_KEY
from mtcp.inference.review_calibration import collect, dataset_features, fit_calibration
from mtcp.io import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


def store_calibration(path: str | Path, calibration: dict[str, Any]) -> None:
    """Add ``calibration`` to the ``mtcp`` section of the checkpoint ``path`` (atomically)."""
    ckpt = load_checkpoint(path)
    ckpt[CHECKPOINT_KEY]["review"] = calibration
    save_checkpoint(ckpt, path)


class ReviewCalibration(L.Callback):
    """Fits the review calibration after training (module docstring).

    Args:
        rate: review budget (share of images flagged), ``review.rate``.
        threshold: explicit score threshold (``review.threshold``), or None.
        max_train_images: training images whose statistics define "like the training data".
        batch_size: images per forward pass.
    """

    def __init__(
        self,
        rate: float = 0.1,
        threshold: float | None = None,
        max_train_images: int = 256,
        batch_size: int = 8,
    ) -> None:
        self.rate = float(rate)
        self.threshold = threshold
        self.max_train_images = int(max_train_images)
        self.batch_size = int(batch_size)
        self._fitted = False

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fitted = True

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._fitted or trainer.state.fn != "validate" or not trainer.is_global_zero:
            return
        self._fitted = False  # once, after the validation of the best weights
        calibration = self.calibrate(trainer, pl_module)
        pl_module.review_calibration = calibration
        if calibration is None:
            return
        best = (
            best_checkpoint_callback(trainer).best_model_path
            if trainer.checkpoint_callbacks
            else ""
        )
        if best and Path(best).is_file():
            store_calibration(best, calibration)

    def calibrate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any] | None:
        """The calibration of ``pl_module``'s current weights on the validation split."""
        from mtcp.errors import MtcpError

        model = pl_module.model
        was_training = model.training
        model.eval()
        try:
            return calibrate_model(
                model,
                pl_module.tasks,
                pl_module.intrinsics,
                pl_module.cfg,
                trainer.datamodule,
                pl_module.metric_dataset,
                self.rate,
                self.threshold,
                self.max_train_images,
                self.batch_size,
            )
        except MtcpError as err:
            log.warning("review score left uncalibrated: %s", err)
            return None
        finally:
            model.train(was_training)


@torch.no_grad()
def calibrate_model(
    model: Any,
    tasks: dict[str, int],
    intrinsics: list[float] | None,
    cfg: Any,
    datamodule: Any,
    metric_dataset: str,
    rate: float,
    threshold: float | None = None,
    max_train_images: int = 256,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Fit the review calibration of ``model`` (eval mode) on ``datamodule``'s validation split,
    input statistics from its training split."""
    size = tuple(cfg.data.size)
    val = collect(
        model,
        datamodule.dataset("val"),
        tasks,
        size,
        intrinsics,
        protocol=cfg.eval.protocol,
        metric_dataset=metric_dataset,
        batch_size=batch_size,
    )
    train = dataset_features(datamodule.dataset("train"), size, max_train_images, batch_size)
    return fit_calibration(val, train, rate, threshold)


def calibrate_checkpoint(
    path: str | Path, rate: float | None = None, threshold: float | None = None
) -> dict[str, Any]:
    """(Re)calibrate a checkpoint of ``mtcp train`` (e.g. an older, uncalibrated one) on its
    run's validation split and store the calibration in it; returns the calibration.

    ``rate`` / ``threshold`` default to the run's ``review`` config.
    """
    from mtcp.engine.config import config_from_dict
    from mtcp.engine.training import build_datamodule, metric_dataset
    from mtcp.inference import load_checkpoint_model

    model, tasks, meta = load_checkpoint_model(path)
    cfg = config_from_dict(meta["config"], str(path))
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    calibration = calibrate_model(
        model.eval(),
        tasks,
        meta.get("intrinsics"),
        cfg,
        datamodule,
        metric_dataset(datamodule),
        cfg.review.rate if rate is None else rate,
        cfg.review.threshold if threshold is None and rate is None else threshold,
    )
    store_calibration(path, calibration)
    return calibration
