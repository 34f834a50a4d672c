"""Every reported key has one declared direction, and every reader takes it from there."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtcp.errors import MtcpError
from mtcp.experiment import aggregate
from mtcp.metrics import (
    COHERENCE_METRICS,
    DELTA_M_METRICS,
    build_metrics,
    direction,
    higher_is_better,
    scored_keys,
)
from mtcp.tasks import TASKS

H, W = 8, 10


def _data(b: int = 2) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(0)
    batch = {
        "semseg": torch.randint(0, 3, (b, H, W), generator=g),
        "human_parts": torch.randint(0, 3, (b, H, W), generator=g),
        "depth": torch.rand(b, 1, H, W, generator=g) + 1,
        "normals": F.normalize(torch.randn(b, 3, H, W, generator=g), dim=1),
        "edge": (torch.rand(b, 1, H, W, generator=g) > 0.8).float(),
        "sal": (torch.rand(b, 1, H, W, generator=g) > 0.5).float(),
        "intrinsics": torch.tensor([[20.0, 20.0, W / 2, H / 2]] * b),
    }
    outputs = {
        "semseg": torch.randn(b, 3, H, W, generator=g),
        "human_parts": torch.randn(b, 3, H, W, generator=g),
        "depth": torch.rand(b, 1, H, W, generator=g) + 1,
        "normals": torch.randn(b, 3, H, W, generator=g),
        "edge": torch.randn(b, 1, H, W, generator=g),
        "sal": torch.randn(b, 1, H, W, generator=g),
    }
    return outputs, batch


def test_every_key_a_metric_returns_is_declared() -> None:
    tasks = {t: 3 if TASKS[t].kind == "classes" else TASKS[t].channels for t in TASKS}
    metrics = build_metrics(tasks)
    assert set(metrics.extra_metrics) == set(COHERENCE_METRICS)
    metrics.update(*_data())
    results = metrics.compute()
    for task, metric in metrics.task_metrics.items():
        assert set(results[task]) == set(type(metric).directions), task
    for name, metric in metrics.extra_metrics.items():
        keys = {f"{name}_{k}" for k in type(metric).directions}
        assert {k for k in results["coherence"] if k.startswith(f"{name}_")} == keys
    # so every reported value resolves: a direction or, for counts and settings, None
    for group, values in results.items():
        for key in values:
            assert direction(f"test/{group}/{key}") in (True, False, None)


def test_resolver_reads_the_declarations() -> None:
    assert higher_is_better("val/coherence/depth_normal_mean") is False  # degrees
    assert higher_is_better("val/coherence/depth_normal_image_mean") is False
    assert higher_is_better("val/coherence/boundary_F") is True
    assert higher_is_better("val/gm_error") is False
    assert higher_is_better("val/delta_m") is True and higher_is_better("delta_m/depth") is True
    assert higher_is_better("val/semseg/mIoU") is True
    assert higher_is_better("depth/rmse") is False and higher_is_better("depth/delta1") is True
    assert higher_is_better("test/normals/11.25") is True
    assert direction("edge/odsT") is None and direction("val/depth/n_pixels") is None
    with pytest.raises(MtcpError, match="count or a setting"):
        higher_is_better("edge/odsT")
    for unknown in ("val/depth_normal", "val/depth/rsme", "val/coherence/boundary_G", "lr"):
        with pytest.raises(MtcpError, match="not reported by any metric") as err:
            higher_is_better(unknown)
        assert "coherence/depth_normal_mean" in str(err.value)  # the known keys are listed
    assert "semseg/mIoU" in scored_keys() and "depth/n_pixels" not in scored_keys()


def test_tasks_delta_m_and_study_agree_with_the_metrics() -> None:
    for name, spec in TASKS.items():
        assert spec.higher_is_better == higher_is_better(f"{name}/{spec.main_metric}"), name
    for task, (metric, sign) in DELTA_M_METRICS.items():
        assert (sign > 0) == higher_is_better(f"{task}/{metric}")
    assert aggregate.higher_is_better("coherence/depth_normal_image_mean") is False
    assert aggregate.higher_is_better("params") is False
    assert aggregate.higher_is_better("edge/odsF") is True
    assert aggregate.direction("edge/odsT") is None
    with pytest.raises(MtcpError, match="known keys"):
        aggregate.higher_is_better("depth/nonsense")
