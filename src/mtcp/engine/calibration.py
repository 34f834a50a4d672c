"""End-of-training calibration of the review score (:mod:`mtcp.inference.review`).

After ``trainer.fit``, ``mtcp train`` validates the best checkpoint once more; at the end of
that validation this callback scores every validation image with those weights, measures its
real error, fits the calibration (:func:`mtcp.inference.review_calibration.fit_calibration`;
input statistics from at most ``max_train_images`` training images) and stores it

* on the module (``pl_module.review_calibration``, read by the CLI's summary), and
* in ``best.ckpt`` under ``checkpoint["mtcp"]["review"]`` (rewritten atomically), so that
  ``mtcp.load``, ``mtcp predict`` and ``mtcp export`` find it.

``last.ckpt`` holds other weights (the last epoch's) and stays uncalibrated unless it is the
best one. Only process 0 calibrates (on the whole validation split, not a shard).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch

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
            trainer.checkpoint_callbacks[1].best_model_path if trainer.checkpoint_callbacks else ""
        )
        if best and Path(best).is_file():
            store_calibration(best, calibration)

    def calibrate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any] | None:
        """The calibration of ``pl_module``'s current weights on the validation split."""
        from mtcp.errors import MtcpError

        cfg = pl_module.cfg
        datamodule = trainer.datamodule
        model = pl_module.model
        was_training = model.training
        model.eval()
        common = dict(
            tasks=pl_module.tasks,
            size=tuple(cfg.data.size),
            intrinsics=pl_module.intrinsics,
            batch_size=self.batch_size,
        )
        try:
            with torch.no_grad():
                val = collect(
                    model,
                    datamodule.dataset("val"),
                    protocol=cfg.eval.protocol,
                    metric_dataset=pl_module.metric_dataset,
                    **common,
                )
                train = dataset_features(
                    datamodule.dataset("train"), common["size"], self.max_train_images
                )
            return fit_calibration(val, train, self.rate, self.threshold)
        except MtcpError as err:
            log.warning("review score left uncalibrated: %s", err)
            return None
        finally:
            model.train(was_training)
