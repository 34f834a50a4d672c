"""Exact resume (parameters, LPS state) and checkpoints that are never half-written."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from mtcp.engine.config import load_config
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
