"""Dense metrics give the same results in one process or split across two (gloo, CPU)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from mtcp.metrics import build_metrics, to_floats

TASKS = {"semseg": 4, "human_parts": 7, "depth": 1, "normals": 3, "sal": 1}
WORLD = 2
N_BATCHES = 5  # uneven split: rank 0 gets 3 batches, rank 1 gets 2


def _batches() -> list[tuple[dict, dict]]:
    """Deterministic batches of 2 images of 6×8 with the protocol edge cases mixed in."""
    g = torch.Generator().manual_seed(7)
    out = []
    for i in range(N_BATCHES):
        b, h, w = 2, 6, 8
        hp = torch.randint(0, 7, (b, h, w), generator=g)
        hp[0] = 255 if i % 2 else 0  # an image without a person
        depth = torch.rand(b, 1, h, w, generator=g) * 8
        depth[depth < 1] = 0  # invalid pixels
        sal = (torch.rand(b, 1, h, w, generator=g) > 0.6).float()
        sal[1] = 0.0  # an empty saliency target
        batch = {
            "semseg": torch.randint(0, 4, (b, h, w), generator=g),
            "human_parts": hp,
            "depth": depth,
            "normals": F.normalize(torch.randn(b, 3, h, w, generator=g), dim=1),
            "sal": sal,
            "labelled": {"semseg": torch.tensor([True, i != 3])},
        }
        outputs = {
            "semseg": torch.randn(b, 4, h, w, generator=g),
            "human_parts": torch.randn(b, 7, h, w, generator=g),
            "depth": torch.randn(b, 1, h, w, generator=g) + 3,  # some non-positive
            "normals": torch.randn(b, 3, h, w, generator=g),
            "sal": torch.randn(b, 1, h, w, generator=g) * 3,
        }
        out.append((outputs, batch))
    return out


def _evaluate(batches: list[tuple[dict, dict]]) -> dict:
    results = {}
    for protocol in ("mtinet", "atrc"):
        metrics = build_metrics(TASKS, protocol=protocol, boundary=False, coherence=False)
        for outputs, batch in batches:
            metrics.update(outputs, batch)
        results[protocol] = to_floats(metrics.compute())
    return results


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        results = _evaluate(_batches()[rank::WORLD])
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


def test_split_across_two_processes_equals_single_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0 == r1
    single = _evaluate(_batches())
    half = _evaluate(_batches()[0::WORLD])  # what rank 0 alone would report without syncing
    for protocol, tasks in single.items():
        for task, metrics in tasks.items():
            for name, value in metrics.items():
                assert math.isfinite(value), (protocol, task, name)
                assert r0[protocol][task][name] == pytest.approx(value, rel=1e-12, abs=1e-12)
    assert half["mtinet"]["depth"]["n_pixels"] < single["mtinet"]["depth"]["n_pixels"]
