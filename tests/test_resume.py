"""Exact resume (parameters, LPS state, best checkpoint, CSV log, metrics.json) after kills,
refused resumes that leave the run untouched, and checkpoints that are never half-written."""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import pytest
import torch

from mtcp.cli import main
from mtcp.engine.config import load_config
from mtcp.engine.resume import resolve_run
from mtcp.engine.training import train
from mtcp.errors import MtcpError
from mtcp.io import load_checkpoint, save_checkpoint

TINY = [
    "data.tasks=[semseg, depth, normals, edge]",
    "data.size=64x64",
    "data.synthetic_scenes=8",
    "data.val_fraction=0.25",
    "data.batch_size=3",
    "data.recipe=nyud_train",  # random augmentation: the random state must be resumed too
    "model.options={channels: 32, decoder_dims: [32, 64, 128]}",
    "optim.lr=2e-3",
    "trainer.max_epochs=2",
    "trainer.progress_bar=false",
]


class StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer, module):
        trainer.should_stop = True


def _state(path):
    ckpt = load_checkpoint(path)
    return ckpt["state_dict"], ckpt


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    cfg = load_config(None, [*TINY, f"run.root={tmp_path}"])
    full = train(cfg, evaluate_before=False)
    part = train(cfg, evaluate_before=False, callbacks=[StopAfterFirstEpoch()])
    assert (
        load_checkpoint(part.last_checkpoint)["state_dict"]["weighting._extra_state"]["epoch"] == 1
    )
    resumed = train(cfg, resume=part.last_checkpoint)
    assert resumed.run_dir == part.run_dir  # continues in the interrupted run's folder

    a, ckpt_a = _state(full.last_checkpoint)
    b, ckpt_b = _state(resumed.last_checkpoint)
    assert (
        ckpt_a["global_step"] == ckpt_b["global_step"] == 4
    )  # 6 training scenes, batches of 3, 2 epochs
    tensors = [k for k, v in a.items() if torch.is_tensor(v)]
    assert any(k.startswith("model.") for k in tensors)
    for key in tensors:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    lps_a, lps_b = a["weighting._extra_state"], b["weighting._extra_state"]
    assert lps_a["weights"] == pytest.approx(lps_b["weights"], abs=1e-6)
    assert lps_a["history"] == lps_b["history"] and len(lps_a["history"]) == 2
    assert lps_a["weights"] != pytest.approx([1.0] * 4)  # LPS did move the weights
    assert (
        ckpt_a["optimizer_states"][0]["state"].keys()
        == ckpt_b["optimizer_states"][0]["state"].keys()
    )

    # a checkpoint of another task set is refused with a clear message
    other = load_config(None, [*TINY, "data.tasks=[semseg, depth]", f"run.root={tmp_path}"])
    with pytest.raises(MtcpError, match="checkpoint holds tasks"):
        train(other, resume=full.last_checkpoint)


class Exploding:
    """Pickling this raises halfway through a torch.save (like an interrupt during a save)."""

    def __reduce__(self):
        raise KeyboardInterrupt


def test_interrupted_save_leaves_the_previous_checkpoint_usable(tmp_path):
    path = tmp_path / "last.ckpt"
    save_checkpoint({"step": 1, "w": torch.arange(1000.0)}, path)
    big = {"step": 2, "w": torch.zeros(1_000_000), "z": Exploding()}
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(big, path)
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 1 and torch.equal(ckpt["w"], torch.arange(1000.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


# --- killed (SIGKILL) and resumed runs against an uninterrupted one -------------------------

#: ``val/planted`` per epoch (higher is better): best at epoch 1, then a dip and a partial
#: recovery, so a resumed run that forgot epoch 1's score would let epoch 3 replace it
PLANTED = [0.5, 0.9, 0.3, 0.7]
SELECT = [
    *TINY,
    "eval.picture_samples=1",
    "trainer.max_epochs=4",
    "trainer.monitor=val/planted",
    "trainer.monitor_mode=max",
    "trainer.log_every_n_steps=1",
]


class PlantedScore(L.Callback):
    """Logs the planted, non-monotonic validation score ``val/planted``."""

    def on_validation_epoch_end(self, trainer, module):
        epoch = trainer.current_epoch
        fitting = trainer.state.fn == "fit" and epoch < len(PLANTED)
        module.log("val/planted", PLANTED[epoch] if fitting else 0.0)


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import lightning as L, torch

    tests, root, mode, threads = sys.argv[1:]
    sys.path.insert(0, tests)
    torch.set_num_threads(int(threads))
    from test_resume import SELECT, PlantedScore
    from mtcp.engine.config import load_config
    from mtcp.engine.training import train

    class KillMidEpoch(L.Callback):  # kill -9 in the second batch of epoch 2
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.current_epoch == 2 and batch_idx == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    if mode == "save":  # kill -9 halfway through writing last.ckpt of epoch 1
        real_save = torch.save
        def save(obj, f, *args, **kwargs):
            if obj.get("epoch") == 1 and "last.ckpt" in str(getattr(f, "name", "")):
                f.write(b"half a checkpoint" * 1000)
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *args, **kwargs)
        torch.save = save
    callbacks = [PlantedScore()] + ([KillMidEpoch()] if mode == "epoch" else [])
    train(load_config(None, [*SELECT, f"run.root={root}"]), callbacks=callbacks)
    """
)


def _killed_run(tmp_path: Path, mode: str) -> Path:
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    root = tmp_path / mode
    args = [str(Path(__file__).parent), str(root), mode, str(torch.get_num_threads())]
    proc = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=400
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-2000:] + proc.stderr[-3000:]
    return root / "synthetic_tiny" / "version_0"


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def _assert_same_run(full: Path, resumed: Path) -> None:
    for name in ("last.ckpt", "best.ckpt"):
        a = load_checkpoint(full / "checkpoints" / name)
        b = load_checkpoint(resumed / "checkpoints" / name)
        assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]), name
        for key, value in a["state_dict"].items():
            if torch.is_tensor(value):
                torch.testing.assert_close(value, b["state_dict"][key], rtol=0, atol=1e-6)
    best = load_checkpoint(resumed / "checkpoints" / "best.ckpt")
    assert best["epoch"] == 1  # the planted best, not the later, worse epoch 3
    scores = [
        s["best_model_score"]
        for s in load_checkpoint(resumed / "checkpoints" / "last.ckpt")["callbacks"].values()
        if s.get("monitor") == "val/planted"
    ]
    assert [float(s) for s in scores] == [pytest.approx(0.9)]

    rows_a, rows_b = _rows(full), _rows(resumed)
    assert [(r["step"], r.get("epoch"), sorted(r)) for r in rows_a] == [
        (r["step"], r.get("epoch"), sorted(r)) for r in rows_b
    ]
    assert "val/gm_error" in rows_b[0] and rows_b[0]["step"] == "0"  # the before-training row
    for ra, rb in zip(rows_a, rows_b):
        assert {k: float(v) for k, v in rb.items()} == pytest.approx(
            {k: float(v) for k, v in ra.items()}, rel=1e-4, abs=1e-5
        )

    ma = json.loads((full / "metrics.json").read_text())
    mb = json.loads((resumed / "metrics.json").read_text())
    assert mb["before"] and mb["before"].keys() == ma["before"].keys()

    def numbers(values):
        return {k: math.nan if v is None else v for k, v in values.items()}

    for part in ("before", "after"):
        for group, values in ma[part].items():
            expected = pytest.approx(numbers(values), rel=1e-4, abs=1e-5, nan_ok=True)
            assert numbers(mb[part][group]) == expected
    assert Path(mb["best_checkpoint"]).name == "best.ckpt"


def test_killed_mid_epoch_and_mid_save_then_resumed_equal_uninterrupted(tmp_path):
    full = train(
        load_config(None, [*SELECT, f"run.root={tmp_path / 'full'}"]), callbacks=[PlantedScore()]
    )
    assert load_checkpoint(full.best_checkpoint)["epoch"] == 1
    for mode in ("epoch", "save"):
        run_dir = _killed_run(tmp_path, mode)
        assert not (run_dir / "metrics.json").exists()
        stale = list((run_dir / "checkpoints").glob(".last.ckpt.*.tmp"))
        assert bool(stale) == (mode == "save")  # the kill during the save left its temporary
        expected_epoch = 1 if mode == "epoch" else 0
        assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == expected_epoch
        cfg, ckpt = resolve_run(None, [], str(run_dir))  # what `mtcp train --resume DIR` does
        resumed = train(cfg, resume=ckpt, callbacks=[PlantedScore()])
        assert resumed.run_dir == run_dir
        assert not list((run_dir / "checkpoints").glob(".*.tmp"))  # cleaned on the next run
        _assert_same_run(full.run_dir, run_dir)


def _snapshot(folder: Path) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_refused_resumes_leave_the_run_untouched_and_extending_trains_on(tmp_path, capsys):
    cfg = load_config(
        None, [*TINY, "trainer.max_epochs=1", "data.recipe=null", f"run.root={tmp_path}"]
    )
    first = train(cfg, evaluate_before=False)
    run_dir = first.run_dir
    before = _snapshot(run_dir)
    refused = [
        (["model.options={channels: 16, decoder_dims: [16, 32, 64]}"], "different model.options"),
        (["optim.lr=0.5", "trainer.max_epochs=3"], "different optim.lr"),
        (["data.tasks=[semseg, depth]"], "checkpoint holds tasks"),
        ([], "already trained 1 epochs"),
    ]
    for overrides, message in refused:
        resumed_cfg, ckpt = resolve_run(None, overrides, str(run_dir))
        with pytest.raises(MtcpError, match=message):
            train(resumed_cfg, resume=ckpt)
        assert _snapshot(run_dir) == before, overrides
    # the command line says the same in one line, before touching anything
    assert main(["train", "--resume", str(run_dir), "optim.lr=0.5", "trainer.max_epochs=3"]) == 2
    assert "cannot resume with a different optim.lr" in capsys.readouterr().err
    assert _snapshot(run_dir) == before
    # a checkpoint whose network differs from the configured one (same config)
    ckpt = load_checkpoint(first.last_checkpoint)
    key = next(k for k in ckpt["state_dict"] if k.startswith("model."))
    ckpt["state_dict"][key] = torch.zeros(1)
    save_checkpoint(ckpt, tmp_path / "other.ckpt")
    with pytest.raises(MtcpError, match="network of the checkpoint differs"):
        train(cfg, resume=tmp_path / "other.ckpt")
    assert _snapshot(run_dir) == before

    # extending a finished run re-plans its poly schedule: epoch 1 of 2 trains at lr/2^0.9
    trained = load_checkpoint(first.last_checkpoint)["state_dict"]
    extend_cfg, ckpt = resolve_run(None, ["trainer.max_epochs=2"], str(run_dir))
    extended = train(extend_cfg, resume=ckpt)
    lrs = [float(r["lr-AdamW"]) for r in _rows(run_dir) if "lr-AdamW" in r]
    assert lrs == pytest.approx([2e-3, 2e-3 * 0.5**0.9])
    now = load_checkpoint(extended.last_checkpoint)["state_dict"]
    params = [k for k, v in now.items() if k.startswith("model.") and v.is_floating_point()]
    moved = [k for k in params if not torch.equal(now[k], trained[k])]
    assert len(moved) > len(params) // 2  # the extra epoch did train
    assert "max_epochs: 2" in (run_dir / "config.yaml").read_text()
    assert json.loads((run_dir / "metrics.json").read_text())["after"]
