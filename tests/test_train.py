"""A few training steps on synthetic scenes lower every task loss and write every promised file."""

from __future__ import annotations

import copy
import csv

import lightning as L
import torch

from mtcp.engine.config import load_config
from mtcp.engine.run_dir import make_run_dir
from mtcp.engine.training import train

TASKS = ["semseg", "depth", "normals", "edge"]
TINY = [
    f"data.tasks={TASKS}",
    "data.size=64x64",
    "data.synthetic_scenes=8",
    "data.val_fraction=0.25",
    "data.batch_size=3",
    "model.options={channels: 32, decoder_dims: [32, 64, 128]}",
    "optim.lr=2e-3",
    "trainer.progress_bar=false",
    "trainer.log_every_n_steps=1",
]


class TrainingSetLoss(L.Callback):
    """Per-task losses of the current weights on one fixed training batch, at start and end."""

    def __init__(self, batch):
        self.batch, self.values = batch, []

    @torch.no_grad()
    def _measure(self, module):
        model = copy.deepcopy(module.model).train()  # batch statistics; running stats untouched
        losses = module.criterion(model(self.batch["image"]), self.batch)
        self.values.append({t: float(v) for t, v in losses.items()})

    def on_train_start(self, trainer, module):
        self._measure(module)

    def on_train_end(self, trainer, module):
        self._measure(module)


def test_few_steps_lower_every_task_loss(tmp_path):
    from torch.utils.data import default_collate

    from mtcp.data.build import build_dataset

    cfg = load_config(None, [*TINY, "trainer.max_epochs=3", f"run.root={tmp_path}"])
    train_set = build_dataset("synthetic", "train", TASKS, None, (64, 64), n=8, val_fraction=0.25)
    probe = TrainingSetLoss(default_collate([train_set[i] for i in range(3)]))
    result = train(cfg, callbacks=[probe])

    before, after = probe.values
    assert set(before) == set(TASKS)
    for task in TASKS:
        assert after[task] < before[task], (task, before[task], after[task])

    run = result.run_dir
    assert run.parent == tmp_path / "synthetic_tiny" and run.name == "version_0"
    for name in [
        "config.yaml",
        "checkpoints/last.ckpt",
        "checkpoints/best.ckpt",
        "metrics.json",
        "loss_weights.csv",
        "loss_weights.png",
        "predictions.png",
        "csv/metrics.csv",
    ]:
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    with open(run / "csv" / "metrics.csv") as f:
        columns = set(next(csv.reader(f)))
    for task in TASKS:
        assert {f"train/loss/{task}_step", f"weight/{task}"} <= columns
    assert {"val/semseg/mIoU", "val/depth/rmse", "val/gm_error", "lr-AdamW"} <= columns
    with open(run / "loss_weights.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3  # one LPS update per epoch
    assert abs(sum(float(rows[-1][f"w/{t}"]) for t in TASKS) - len(TASKS)) < 1e-6
    assert set(result.before) >= set(TASKS) and set(result.after) >= set(TASKS)
    # a second run never overwrites the first
    assert make_run_dir(cfg).name == "version_1"
