"""``csv/metrics.csv``: Lightning's CSV logger, written atomically and continued on resume.

Lightning's own writer deletes an existing ``metrics.csv`` when a logger is created in the same
folder (so a resume lost the before-training row and every earlier step) and appends to the file
in place. :class:`RunCSVLogger` instead keeps every row in memory (a few thousand rows for a long
run) and rewrites the whole file through :func:`mtcp.io.atomic_write_text` at each flush. On
resume it first reads back the rows the interrupted run logged before the checkpoint's global
step (``step < resume_step``): rows of a partly trained epoch after the checkpoint are dropped,
because the resumed run trains that epoch again and logs them anew. The resumed file then holds
the same rows as the file of an uninterrupted run.

The file is written at Lightning's flushes and at the start of every training epoch
(:class:`FlushLogsEachEpoch`), i.e. right after the rows of the previous epoch were logged; so
after a kill, the file holds every row before the step of ``last.ckpt``, unless the kill fell
between the checkpoint's save and the start of the next epoch (the epoch-end bookkeeping).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from mtcp.io import atomic_write_text


def read_rows(path: Path, before_step: int) -> list[dict[str, str]]:
    """Rows of an existing ``metrics.csv`` whose ``step`` is below ``before_step``."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    kept = []
    for row in rows:
        step = row.get("step", "")
        if step.strip().lstrip("-").isdigit() and int(step) < before_step:
            kept.append({k: v for k, v in row.items() if k is not None and v != ""})
    return kept


class AtomicMetricsWriter(ExperimentWriter):
    """Lightning's experiment writer with whole-file atomic rewrites (see the module doc)."""

    def __init__(self, log_dir: str, resume_step: int | None = None) -> None:
        # the parent's __init__ would delete an existing metrics.csv: set its fields here
        self.hparams: dict[str, Any] = {}
        self.metrics: list[dict[str, Any]] = []
        self.metrics_keys: list[str] = []
        self.log_dir = log_dir
        self.metrics_file_path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        os.makedirs(log_dir, exist_ok=True)
        path = Path(self.metrics_file_path)
        self.rows: list[dict[str, Any]] = (
            read_rows(path, resume_step) if resume_step is not None else []
        )
        self._written = False

    def log_hparams(self, params: dict[str, Any]) -> None:
        self.hparams.update(params)
        text = yaml.safe_dump(self.hparams, sort_keys=False)
        atomic_write_text(Path(self.log_dir) / self.NAME_HPARAMS_FILE, text)

    def save(self) -> None:
        if not self.metrics and (self._written or not self.rows):
            return
        self._written = True
        self.rows += self.metrics
        self.metrics = []
        self.metrics_keys = sorted(set().union(*self.rows))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.metrics_keys, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.metrics_file_path, buf.getvalue())


class RunCSVLogger(CSVLogger):
    """``CSVLogger(save_dir, name="csv", version="")`` writing through :class:`AtomicMetricsWriter`.

    Args:
        save_dir: the run folder.
        resume_step: the global step of the checkpoint a resumed run starts from (rows from
            that step on are dropped); None for a new run.
    """

    def __init__(self, save_dir: str | Path, resume_step: int | None = None) -> None:
        super().__init__(save_dir=save_dir, name="csv", version="")
        self._resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> AtomicMetricsWriter:
        if self._experiment is None:
            self._experiment = AtomicMetricsWriter(self.log_dir, self._resume_step)
        return self._experiment


class FlushLogsEachEpoch(L.Callback):
    """Writes every logger's pending rows at the start of each training epoch."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:
            logger.save()
