"""The Lightning step logic: forward, task losses, loss weighting, validation metrics.

One training step: ``outputs = model(image)`` → ``losses = MultiTaskLoss(outputs, batch)``
(``{task: L_t}``, deep supervision folded in) → ``total = scheme(losses)`` (e.g. LPS) →
backward. After every optimizer step ``scheme.step_end()``; at the end of every training epoch
``scheme.epoch_end()`` (before the epoch's checkpoint is written, so checkpoints hold the
updated weights).

Logged (TensorBoard and CSV): ``train/loss/<task>`` (raw ``L_t``), ``train/total`` (what is
backpropagated), ``weight/<task>`` (the scheme's current weights, every epoch), ``lr``,
``val/<task>/<metric>`` and ``val/coherence/<name>``, ``val/gm_error`` and, with references,
``val/delta_m``. No host synchronisation happens in the training step itself besides the
weighting scheme's finiteness check; logged values stay tensors.

Model selection (``trainer.monitor: auto``):

* with single-task references (``eval.references``): ``val/delta_m`` (Δm in %, higher is
  better, SPEC §6);
* otherwise ``val/gm_error``: the geometric mean over tasks of each task's *error* on its main
  metric (``1 − M`` for mIoU / odsF / maxF, which lie in [0, 1]; ``M`` itself for depth RMSE in
  metres and normals mean angle in degrees). Lower is better. Because it is a geometric mean,
  halving any one task's error lowers it by the same factor whatever that task's units are, so
  the ranking of checkpoints does not depend on units or on a reference model.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch

from mtcp.engine.checkpoint import nonfinite_tensors
from mtcp.engine.config import Config, config_from_dict
from mtcp.errors import MtcpError
from mtcp.inference.formats import CHECKPOINT_KEY  # the readers' fact (inference, lower layer)
from mtcp.losses import MultiTaskLoss, create_weighting
from mtcp.losses.consistency import ConsistencyLoss
from mtcp.metrics import build_metrics, delta_m, gm_error, higher_is_better, to_floats
from mtcp.models.registry import create_model


def is_count(metric: str) -> bool:
    """Counters such as ``n_pixels`` or ``boundary_n_images``: reported, not logged."""
    return metric.startswith("n_") or "_n_" in metric


def monitor_of(cfg: Config) -> tuple[str, str]:
    """The metric that selects ``best.ckpt`` and its mode (``"min"`` / ``"max"``).

    Losses (``train/total``, ``.../loss/...``) are minimised; every other key takes the direction
    its metric declares (:func:`mtcp.metrics.higher_is_better`, an error for unknown keys),
    unless ``trainer.monitor_mode`` says ``"min"`` or ``"max"``.
    """
    monitor = cfg.trainer.monitor
    if monitor == "auto":
        monitor = "val/delta_m" if cfg.eval.references else "val/gm_error"
    if cfg.trainer.monitor_mode != "auto":
        return monitor, cfg.trainer.monitor_mode
    lower = "loss" in monitor or monitor.endswith("/total")
    return monitor, "min" if lower or not higher_is_better(monitor) else "max"


def rng_state() -> dict[str, Any]:
    """The global random states (torch, CUDA, numpy, Python) as tensors and primitives."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class MtcpModule(L.LightningModule):
    """Multi-task training and validation of one :func:`mtcp.create_model` network.

    Args:
        config: the run configuration (a :class:`~mtcp.engine.config.Config` or its dict).
        tasks: ``{task: channels}`` of the data (class counts come from the dataset).
        references: single-task references ``{task: {metric: value}}`` for ``val/delta_m``.
        metric_dataset: ``"nyud"`` or ``"pascal"`` (boundary tolerance of the edge metric).
        intrinsics: ``(fx, fy, cx, cy)`` of the training camera at the input size, stored in
            checkpoints for coherence scores at prediction time (None when unknown).
        class_names: ``{task: [name per class id]}`` of the data, stored in checkpoints for
            the class keys of ``mtcp predict``'s pictures.
    """

    def __init__(
        self,
        config: Config | Mapping[str, Any],
        tasks: Mapping[str, int],
        references: Mapping[str, Mapping[str, float]] | None = None,
        metric_dataset: str = "nyud",
        intrinsics: list[float] | None = None,
        class_names: Mapping[str, list[str]] | None = None,
    ) -> None:
        super().__init__()
        self.cfg = config if isinstance(config, Config) else config_from_dict(dict(config))
        self.tasks = dict(tasks)
        self.references = dict(references) if references else None
        self.metric_dataset = metric_dataset
        self.intrinsics = intrinsics
        self.class_names = {t: list(n) for t, n in (class_names or {}).items()}
        cfg = self.cfg
        self.model = create_model(
            cfg.model.name, tasks=self.tasks, pretrained=cfg.model.pretrained, **cfg.model.options
        )
        self.criterion = MultiTaskLoss(
            self.tasks, aux_weight=cfg.loss.aux_weight, normals_loss=cfg.loss.normals_loss
        )
        # consistency terms (issue 15) are weighted by the scheme like tasks
        self.consistency = ConsistencyLoss(cfg.loss.consistency, self.tasks)
        self.weighting = create_weighting(
            cfg.loss.weighting,
            [*self.tasks, *self.consistency.terms],
            **cfg.loss.weighting_options,
        )
        self.val_metrics = build_metrics(self.tasks, cfg.eval.protocol, dataset=metric_dataset)
        #: ``{task: {metric: value}}`` of the latest validation (read by the CLI)
        self.last_results: dict[str, dict[str, float]] = {}
        #: the validation of the untrained model, kept in every checkpoint (``metrics.json``)
        self.before_results: dict[str, dict[str, float]] = {}

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised images ``[B, 3, H, W]`` → the model's output dict."""
        return self.model(image)

    # --- training -------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        outputs = self.model(batch["image"])
        losses = self.criterion(outputs, batch)
        losses.update(self.consistency(outputs, batch))
        total = self.weighting(losses)
        size = batch["image"].shape[0]
        self.log_dict(
            {f"train/loss/{t}": v.detach() for t, v in losses.items()},
            on_step=True,
            on_epoch=True,
            batch_size=size,
        )
        self.log("train/total", total.detach(), on_step=True, on_epoch=True, batch_size=size)
        self.log(
            "train/loss",
            sum(v.detach() for v in losses.values()),
            prog_bar=True,
            on_step=True,
            on_epoch=False,
            batch_size=size,
        )
        return total

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Lightning calls this after the optimizer step (no gradient accumulation here)
        if self.weighting.last_step_skipped:
            # the forward pass of a skipped step has already updated BatchNorm statistics
            self._stop_if_nonfinite()
        self.weighting.step_end()

    def _stop_if_nonfinite(self) -> None:
        bad = nonfinite_tensors(self.model.state_dict())
        if bad:
            raise MtcpError(
                f"the model became non-finite at step {self.weighting.step} (epoch "
                f"{self.current_epoch}) although that step was skipped (on_nonfinite=skip): "
                f"{len(bad)} tensors hold NaN/Inf, e.g. {', '.join(bad[:3])} (the forward pass "
                "had already updated the BatchNorm running statistics). Training stopped; "
                "the checkpoints written before are finite. Look for non-finite inputs or "
                "lower optim.lr."
            )

    def on_train_start(self) -> None:
        # The learning rate follows the schedule of *this* run's trainer.max_epochs: after a
        # resume that extends the run, the restored lr (of the old, shorter schedule; 0 at its
        # end) is replaced by the new schedule's value at the current epoch. Without a change
        # of max_epochs this recomputes the restored value exactly.
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
                groups = scheduler.optimizer.param_groups
                lambdas = scheduler.lr_lambdas
                for group, base, fn in zip(groups, scheduler.base_lrs, lambdas):
                    group["lr"] = base * fn(scheduler.last_epoch)
                scheduler._last_lr = [group["lr"] for group in groups]

    def on_train_epoch_start(self) -> None:
        self._log_weights()

    def on_train_epoch_end(self) -> None:
        self.weighting.epoch_end()

    def _log_weights(self) -> None:
        weights = self.weighting.weights
        self.log_dict({f"weight/{t}": float(w) for t, w in weights.items()}, on_epoch=True)

    # --- validation -------------------------------------------------------------------------

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        outputs = self.model(batch["image"])
        self.val_metrics.update(outputs, batch)
        losses = self.criterion(outputs, batch)
        self.log_dict(
            {f"val/loss/{t}": v for t, v in losses.items()},
            on_epoch=True,
            batch_size=batch["image"].shape[0],
            sync_dist=True,
        )

    def on_validation_epoch_end(self) -> None:
        results = to_floats(self.val_metrics.compute())  # synchronised over processes
        self.val_metrics.reset()
        self.last_results = results
        flat = {
            f"val/{group}/{name}": value
            for group, values in results.items()
            for name, value in values.items()
            if math.isfinite(value) and not is_count(name)
        }
        flat["val/gm_error"] = gm_error(results, list(self.tasks))
        if self.references:
            flat["val/delta_m"] = delta_m(results, self.references, tasks=list(self.tasks))
        self.log_dict(flat, prog_bar=False)

    # --- optimisation -----------------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW, one parameter group; poly schedule ``(1 − e/E)^power`` stepped per epoch."""
        opt = self.cfg.optim
        optimizer = torch.optim.AdamW(self.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
        epochs = self.cfg.trainer.max_epochs
        power = opt.power if opt.schedule == "poly" else 0.0
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: max(1.0 - e / epochs, 0.0) ** power
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    # --- checkpoints --------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from mtcp import __version__  # the package root imports the API built on this layer

        checkpoint[CHECKPOINT_KEY] = {
            "version": __version__,
            "config": self.cfg.to_dict(),
            "tasks": dict(self.tasks),
            "model": dict(self.model.config),
            "metric_dataset": self.metric_dataset,
            "intrinsics": self.intrinsics,
            "class_names": self.class_names,
            "rng": rng_state(),
            "before": self.before_results,
            # checkpoints are written at the end of a training epoch: the epochs done so far
            "epochs_completed": self.trainer.fit_loop.epoch_progress.current.processed,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(CHECKPOINT_KEY)
        if meta is None:
            raise MtcpError("checkpoint was not written by mtcp (no 'mtcp' section)")
        if dict(meta["tasks"]) != self.tasks:
            raise MtcpError(
                f"checkpoint holds tasks {dict(meta['tasks'])} but this run trains {self.tasks}; "
                "resume only with the task set (and class counts) it was trained on"
            )
        # Restored here, before Lightning creates the first training iterator (which draws
        # the sampler's seed): the same point in the random streams at which the
        # uninterrupted run wrote this checkpoint.
        if meta.get("rng") is not None:
            set_rng_state(meta["rng"])
        self.before_results = dict(meta.get("before") or {})
