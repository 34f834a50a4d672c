"""Two-process CPU DDP (gloo, started by torchrun): both processes end with identical
parameters and LPS weights, and training changed the parameters."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch

SCRIPT = textwrap.dedent(
    """
    import os, sys, torch, lightning as L
    from mtcp.engine.config import load_config
    from mtcp.engine.training import train

    out = sys.argv[1]

    class Record(L.Callback):
        def on_train_start(self, trainer, module):
            self.initial = {k: v.detach().clone() for k, v in module.model.state_dict().items()}

    record = Record()
    cfg = load_config(None, [
        "data.tasks=[semseg, depth, normals, edge]", "data.size=64x64",
        "data.synthetic_scenes=12", "data.val_fraction=0.25", "data.batch_size=2",
        "model.options={channels: 32, decoder_dims: [32, 64, 128]}", "optim.lr=2e-3",
        "trainer.max_epochs=2", "trainer.devices=2", "trainer.accelerator=cpu",
        "trainer.progress_bar=false", f"run.root={out}",
    ])
    result = train(cfg, evaluate_before=False, callbacks=[record])
    module = result.trainer.lightning_module
    rank = result.trainer.global_rank
    torch.save({
        "initial": record.initial,
        "final": module.model.state_dict(),
        "weights": module.weighting.weights,
        "history": module.weighting.history,
        "world": result.trainer.world_size,
        "steps": result.trainer.global_step,
        "run_dir": str(result.run_dir),
    }, os.path.join(out, f"rank{rank}.pt"))
    """
)


def test_two_process_ddp_keeps_replicas_identical(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["world"] == r1["world"] == 2
    assert r0["steps"] == r1["steps"] == 4  # 9 scenes / 2 processes -> 2 batches of 2 per epoch
    assert r0["run_dir"] == r1["run_dir"] and r0["run_dir"].split("/")[-1].startswith("job_")
    moved = 0.0
    for key, value in r0["final"].items():
        torch.testing.assert_close(value, r1["final"][key], rtol=0, atol=0, msg=key)
        if value.is_floating_point():
            moved = max(moved, (value - r0["initial"][key]).abs().max().item())
    assert moved > 1e-3  # it trained
    assert r0["weights"] == r1["weights"] and r0["history"] == r1["history"]
    assert len(r0["history"]) == 2
    assert (tmp_path / "synthetic_tiny").is_dir()
