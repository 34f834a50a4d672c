"""LPS under torch.distributed: two CPU processes (gloo) hold the weights of the pooled run."""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mtcp.losses import LPSWeighting

TASKS = ["semseg", "depth", "normals"]
WORLD = 2
LOCAL_STEPS_PER_WINDOW = 2
WINDOWS = 4


def _local_steps(rank: int) -> list[list[float]]:
    """Different losses on each rank; one list of per-task losses per step."""
    rng = random.Random(100 + rank)
    scale = [1.0 + rank, 0.5, 2.0 - rank]
    return [
        [c * rng.uniform(0.2, 1.0) * 0.8**w for c in scale]
        for w in range(WINDOWS)
        for _ in range(LOCAL_STEPS_PER_WINDOW)
    ]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        scheme = LPSWeighting(TASKS, spread=7.5, window=LOCAL_STEPS_PER_WINDOW)
        for values in _local_steps(rank):
            scheme({t: torch.tensor(v) for t, v in zip(TASKS, values)})
            scheme.step_end()
        torch.save(scheme.history, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_hold_identical_weights_equal_to_pooled_run(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    h0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    h1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert h0 == h1  # bit-identical on every process
    assert len(h0) == WINDOWS

    # single process on the pooled losses: each window holds both ranks' steps
    pooled = LPSWeighting(TASKS, spread=7.5, window=WORLD * LOCAL_STEPS_PER_WINDOW)
    per_rank = [_local_steps(r) for r in range(WORLD)]
    for w in range(WINDOWS):
        for steps in per_rank:
            for values in steps[w * LOCAL_STEPS_PER_WINDOW : (w + 1) * LOCAL_STEPS_PER_WINDOW]:
                pooled({t: torch.tensor(v) for t, v in zip(TASKS, values)})
        for _ in range(WORLD * LOCAL_STEPS_PER_WINDOW):
            pooled.step_end()
    for dist_rec, ref in zip(h0, pooled.history):
        for key in ("lbar", "w"):
            for t in TASKS:
                assert abs(dist_rec[key][t] - ref[key][t]) < 1e-9, (key, t)
    # the ranks' own losses differ, so the weights are not what either rank alone would give
    alone = LPSWeighting(TASKS, spread=7.5, window=LOCAL_STEPS_PER_WINDOW)
    for values in per_rank[0]:
        alone({t: torch.tensor(v) for t, v in zip(TASKS, values)})
        alone.step_end()
    assert any(abs(alone.history[-1]["w"][t] - h0[-1]["w"][t]) > 1e-3 for t in TASKS)
