"""A few training steps on synthetic scenes lower every task loss and write every promised file."""

from __future__ import annotations

import copy
import csv
import json

import lightning as L
import pytest
import torch

from conftest import TINY_TASKS as TASKS
from conftest import TINY_TRAIN
from mtcp.engine.config import load_config
from mtcp.engine.run_dir import make_run_dir
from mtcp.engine.training import train

#: conftest's tiny run (its one epoch overridden by each test) on four tasks, logging every step
TINY = [*TINY_TRAIN, f"data.tasks={TASKS}", "trainer.log_every_n_steps=1"]


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
    summary = json.loads((run / "metrics.json").read_text())["weight_warnings"]
    assert summary == result.weight_warnings and all("task '" in w for w in summary)
    # a second run never overwrites the first
    assert make_run_dir(cfg).name == "version_1"


def test_monitor_takes_the_direction_its_metric_declares(tmp_path):
    """trainer.monitor=val/coherence/depth_normal_mean (degrees) keeps the *most* coherent epoch."""
    import pytest

    from mtcp.engine.module import monitor_of
    from mtcp.errors import MtcpError
    from mtcp.io import load_checkpoint

    key = "val/coherence/depth_normal_mean"
    tasks = ["depth", "normals"]
    args = [*TINY, f"data.tasks={tasks}", "data.synthetic_scenes=6"]
    cfg = load_config(None, [*args, "trainer.max_epochs=4", f"trainer.monitor={key}"])
    cfg.run.root = str(tmp_path)
    assert monitor_of(cfg) == (key, "min")
    others = (("val/semseg/mIoU", "max"), ("val/gm_error", "min"), ("val/delta_m", "max"))
    for other, mode in others:
        assert monitor_of(load_config(None, [f"trainer.monitor={other}"]))[1] == mode
    own = load_config(None, ["trainer.monitor=val/mine", "trainer.monitor_mode=max"])
    assert monitor_of(own) == ("val/mine", "max")  # a key of the user's own callback
    with pytest.raises(MtcpError, match="depth_normal_mean"):  # the old, never-logged name
        monitor_of(load_config(None, ["trainer.monitor=val/depth_normal"]))

    run = train(cfg).run_dir
    with open(run / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get(key)]
    by_epoch = {int(r["epoch"]): float(r[key]) for r in rows if r["epoch"] != ""}
    assert len(set(by_epoch.values())) > 1, by_epoch  # otherwise min and max would agree
    best = load_checkpoint(run / "checkpoints" / "best.ckpt")
    assert best["epoch"] == min(by_epoch, key=by_epoch.get), by_epoch


# --- runs that must stop, or never start, with a clear error -------------------------------


class PoisonImage(L.Callback):
    """Makes the first image of epoch 1's first batch NaN (BatchNorm statistics go NaN)."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 0:
            batch["image"][0] = float("nan")


def test_a_model_made_nonfinite_by_a_skipped_step_stops_the_run(tmp_path):
    from mtcp.engine.checkpoint import nonfinite_tensors
    from mtcp.errors import MtcpError
    from mtcp.io import load_checkpoint

    cfg = load_config(
        None,
        [
            *TINY,
            "trainer.max_epochs=3",
            "loss.weighting_options={on_nonfinite: skip}",
            f"run.root={tmp_path}",
        ],
    )
    with pytest.raises(MtcpError, match=r"model became non-finite at step 2 .*on_nonfinite=skip"):
        train(cfg, evaluate_before=False, callbacks=[PoisonImage()])
    checkpoints = tmp_path / "synthetic_tiny" / "version_0" / "checkpoints"
    for name in ("last.ckpt", "best.ckpt"):  # epoch 0's, finite; epoch 1's never written
        ckpt = load_checkpoint(checkpoints / name)
        assert ckpt["epoch"] == 0 and not nonfinite_tensors(ckpt["state_dict"]), name


class FailAtSetup(L.Callback):
    def setup(self, trainer, module, stage):
        raise RuntimeError("planted failure before training")


def test_a_failed_start_leaves_no_run_folder(tmp_path):
    cfg = load_config(None, [*TINY, "trainer.max_epochs=1", f"run.root={tmp_path}"])
    with pytest.raises(RuntimeError, match="planted failure"):
        train(cfg, callbacks=[FailAtSetup()])
    assert not list((tmp_path / "synthetic_tiny").glob("version_*"))


def test_pretrained_weights_offline_fail_at_once_with_the_way_out(tmp_path, monkeypatch, capsys):
    import time

    import huggingface_hub.constants

    from mtcp.cli import main
    from mtcp.engine import pretrained

    monkeypatch.setattr(pretrained, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    start = time.monotonic()
    code = main(["train", *TINY, "model.pretrained=true", f"run.root={tmp_path}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "pretrained weights of mtcp_tiny could not be fetched" in err
    assert "model.pretrained=false to train from scratch" in err and "Traceback" not in err
    assert time.monotonic() - start < 45  # no minute of Hub retries
    assert not list((tmp_path / "synthetic_tiny").glob("version_*"))
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # restored


def test_out_of_disk_while_saving_a_checkpoint_is_one_line(tmp_path, monkeypatch, capsys):
    import builtins

    import mtcp.io
    from mtcp.cli import main

    def full_disk(path, mode="r", *args, **kwargs):  # checkpoints go to a full device
        if ".ckpt." in str(path) and "w" in mode:
            return builtins.open("/dev/full", mode, *args, **kwargs)
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(mtcp.io, "open", full_disk, raising=False)
    code = main(["train", *TINY, "trainer.max_epochs=1", f"run.root={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("mtcp train")]
    assert len(lines) == 1 and "Traceback" not in err
    assert "no space left on device while writing" in lines[0] and ".ckpt" in lines[0]
    assert "intact" in lines[0]


# --- loss-weighting warnings ------------------------------------------------------------------


def _history(weights):
    tasks = list(weights)
    n = len(next(iter(weights.values())))
    return [{"window": k, "epoch": k + 1, "w": {t: weights[t][k] for t in tasks}} for k in range(n)]


def test_weight_watch_names_a_pinned_and_an_oscillating_task(caplog):
    from types import SimpleNamespace

    from mtcp.engine.weight_watch import WeightWatch, weight_warnings

    planted = {
        "semseg": [1.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.8, 0.9],  # 6 windows at w_min
        "depth": [1.0, 1.6, 0.9, 1.7, 0.8, 1.6, 1.6, 1.6, 1.6],  # 4 changes of direction
        "normals": [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8],  # steady
        "edge": [1.0, 1.2, 1.8, 0.9, 1.0, 1.1, 1.4, 0.5, 0.2],  # 2 changes of direction
    }
    found = weight_warnings(_history(planted), w_min=0.1, w_max=3.0, bound_windows=6, flips=4)
    assert {(w.task, w.kind) for w in found} == {("semseg", "at_min"), ("depth", "oscillating")}
    pinned = next(w for w in found if w.task == "semseg")
    assert (pinned.count, pinned.first_epoch, pinned.last_epoch) == (6, 2, 7)
    assert "task 'semseg' stayed at the lower bound w_min=0.1 for 6 windows" in str(pinned)
    swinging = next(w for w in found if w.task == "depth")
    assert swinging.count == 4 and "'depth' oscillates" in str(swinging)
    # one window fewer at the bound, or one flip fewer, is no finding
    planted["semseg"][6] = 0.5
    planted["depth"][1] = 1.0
    found = weight_warnings(_history(planted), w_min=0.1, w_max=3.0, bound_windows=6, flips=4)
    assert found == []

    planted["semseg"][6] = 0.1
    planted["depth"][1] = 1.6
    watch = WeightWatch()
    scheme = SimpleNamespace(history=_history(planted), w_min=0.1, w_max=3.0)
    with caplog.at_level("WARNING", logger="mtcp.engine.weight_watch"):
        watch.check(scheme)
        watch.check(scheme)  # logged once, when first found
    assert [r.getMessage() for r in caplog.records] == [str(w) for w in watch.warnings]
    assert any("'semseg'" in r.getMessage() for r in caplog.records)


def test_a_new_run_removes_old_checkpoint_temporaries_of_killed_runs(tmp_path):
    import os
    import time

    from mtcp.engine.run_dir import STALE_AFTER_S, clean_temporaries

    base = tmp_path / "synthetic_tiny"
    (base / "version_0" / "checkpoints").mkdir(parents=True)
    old = base / "version_0" / "checkpoints" / ".last.ckpt.ab12cd.tmp"
    young = base / "version_0" / "checkpoints" / ".best.ckpt.ef34gh.tmp"  # a run still saving
    keep = base / "version_0" / "checkpoints" / "last.ckpt"
    for path in (old, young, keep):
        path.write_bytes(b"x")
    past = time.time() - STALE_AFTER_S - 60
    os.utime(old, (past, past))
    os.utime(keep, (past, past))
    own = base / "version_1"
    (own / "checkpoints").mkdir(parents=True)
    (own / "checkpoints" / ".last.ckpt.zz99.tmp").write_bytes(b"x")  # this run's own folder
    removed = clean_temporaries(own)
    assert sorted(p.name for p in removed) == [".last.ckpt.ab12cd.tmp", ".last.ckpt.zz99.tmp"]
    assert young.exists() and keep.exists() and not old.exists()
