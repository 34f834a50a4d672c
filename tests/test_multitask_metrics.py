"""The metric collection (build_metrics / MultiTaskMetrics) and Δm."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtcp.errors import MtcpError
from mtcp.metrics import (
    COHERENCE_METRICS,
    TASK_METRICS,
    DepthMetrics,
    MultiTaskMetrics,
    SaliencyMetrics,
    build_metrics,
    delta_m,
    delta_m_terms,
    flatten,
    get_protocol,
    load_references,
    to_floats,
)

H, W = 4, 6


def _batch(b: int = 2) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(1)
    target = {
        "semseg": torch.randint(0, 3, (b, H, W), generator=g),
        "depth": torch.rand(b, 1, H, W, generator=g) * 8 + 0.5,  # some above the 6.5535 cap
        "normals": F.normalize(torch.randn(b, 3, H, W, generator=g), dim=1),
        "sal": (torch.rand(b, 1, H, W, generator=g) > 0.5).float(),
        "labelled": {"semseg": torch.ones(b, dtype=torch.bool)},
    }
    outputs = {
        "semseg": torch.randn(b, 3, H, W, generator=g),
        "depth": torch.rand(b, 1, H, W, generator=g) * 8,
        "normals": torch.randn(b, 3, H, W, generator=g),
        "sal": torch.randn(b, 1, H, W, generator=g),
        "semseg_s8": torch.randn(b, 3, H, W),  # deep-supervision keys are ignored
    }
    return outputs, target


def test_collection_matches_individual_metrics_and_protocols_differ() -> None:
    outputs, batch = _batch()
    tasks = {"semseg": 3, "depth": 1, "normals": 3, "sal": 1}
    res = {}
    for name in ("mtinet", "atrc"):
        m = build_metrics(tasks, protocol=name, boundary=False, coherence=False)
        m.update(outputs, batch)
        res[name] = m.compute()
        assert set(res[name]) == set(tasks)
    release = DepthMetrics(max_depth=6.5535)
    release.update(outputs["depth"], batch["depth"])
    assert res["mtinet"]["depth"] == release.compute()
    assert res["atrc"]["depth"]["n_pixels"] > res["mtinet"]["depth"]["n_pixels"]  # no cap
    assert res["atrc"]["sal"] != res["mtinet"]["sal"]
    assert res["atrc"]["normals"]["mean"] == pytest.approx(res["mtinet"]["normals"]["mean"])
    assert res["atrc"]["semseg"] == res["mtinet"]["semseg"]


def test_collection_sigmoid_for_saliency_and_reset() -> None:
    target = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)
    logits = torch.tensor([8.0, -8.0, -8.0, -8.0]).view(1, 1, 2, 2)
    m = build_metrics({"sal": 1}, boundary=False, coherence=False)
    m.update({"sal": logits}, {"sal": target})
    # probabilities ~1 / ~0: TP1 FN1 -> P=1, R=1/2, F=2/3 at every threshold
    assert m.compute()["sal"]["maxF"] == pytest.approx(2 / 3)
    m.reset()
    m.update({"sal": torch.full_like(logits, -8.0)}, {"sal": target})
    assert m.compute()["sal"]["maxF"] == pytest.approx(0.0)


def test_collection_skips_unlabelled_samples() -> None:
    outputs, batch = _batch(3)
    batch["labelled"] = {"depth": torch.tensor([True, False, True])}
    m = build_metrics({"depth": 1}, boundary=False, coherence=False)
    m.update(outputs, batch)
    ref = DepthMetrics()
    ref.update(outputs["depth"][[0, 2]], batch["depth"][[0, 2]])
    assert m.compute()["depth"] == ref.compute()
    batch["labelled"] = {"depth": torch.zeros(3, dtype=torch.bool)}
    m.reset()
    m.update(outputs, batch)
    assert m.compute()["depth"]["n_pixels"] == 0


def test_collection_errors_and_details() -> None:
    outputs, batch = _batch()
    m = build_metrics({"semseg": 3}, boundary=False, coherence=False)
    with pytest.raises(MtcpError, match="differs from target size"):
        m.update({"semseg": outputs["semseg"][..., :3]}, batch)
    with pytest.raises(MtcpError, match="no 'semseg'"):
        m.update({}, batch)
    with pytest.raises(MtcpError, match="unknown metric protocol"):
        build_metrics({"depth": 1}, protocol="nope")
    with pytest.raises(MtcpError, match="unknown protocol setting"):
        build_metrics({"depth": 1}, depth_cap=3)
    m.update(outputs, batch)
    assert set(m.details()["semseg"]) == {"per_class_iou", "absent_classes"}
    assert "depth cap 6.5535 m" in m.describe()
    assert get_protocol("mtinet", depth_max=None).describe().count("depth cap none") == 1
    assert flatten({"depth": {"rmse": 1.0}}) == {"depth/rmse": 1.0}


def test_edge_delegates_to_boundary_f(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict = {}

    class FakeBoundaryF(DepthMetrics):  # any torchmetrics Metric will do
        def __init__(self, max_dist: float, n_thresholds: int, thin: bool) -> None:
            super().__init__()
            calls["init"] = (max_dist, n_thresholds, thin)

        def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
            calls["preds"] = preds

        def compute(self) -> dict:
            return {"odsF": 0.5, "oisF": 0.6, "AP": 0.7}

    edge = TASK_METRICS["edge"]
    monkeypatch.setitem(TASK_METRICS, "edge", dataclasses.replace(edge, cls=FakeBoundaryF))
    m = build_metrics({"edge": 1}, dataset="pascal", coherence=False)
    logits = torch.randn(1, 1, H, W)
    m.update({"edge": logits}, {"edge": torch.zeros(1, 1, H, W)})
    assert calls["init"] == (0.0075, 99, True)
    torch.testing.assert_close(calls["preds"], logits.sigmoid())
    assert m.compute() == {"edge": {"odsF": 0.5, "oisF": 0.6, "AP": 0.7}}
    assert build_metrics({"edge": 1}, boundary=False).compute() == {}


def test_boundary_and_coherence_are_built_only_when_requested() -> None:
    # (Was: a missing optional module fails only when requested. The metrics are now plain
    # imports of the package, so the flags are what decides.)
    assert set(build_metrics({"edge": 1, "depth": 1}, boundary=False).task_metrics) == {"depth"}
    both = build_metrics({"depth": 1, "normals": 3}, boundary=False)
    assert set(both.extra_metrics) == {"depth_normal"}
    assert not build_metrics({"depth": 1, "normals": 3}, coherence=False).extra_metrics
    assert isinstance(build_metrics({"depth": 1, "sal": 1}), MultiTaskMetrics)


def test_coherence_metrics_see_outputs_and_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list = []

    class FakeCoherence(DepthMetrics):
        def update(self, outputs: dict, batch: dict) -> None:
            seen.append((type(self).__name__, sorted(outputs), "intrinsics" in batch))

        def compute(self) -> dict:
            return {"pooled": 3.0}

    for name, cls in (("depth_normal", "DepthNormalCoherence"), ("boundary", "BoundaryCoherence")):
        fake = dataclasses.replace(COHERENCE_METRICS[name], cls=type(cls, (FakeCoherence,), {}))
        monkeypatch.setitem(COHERENCE_METRICS, name, fake)
    outputs, batch = _batch()
    batch["intrinsics"] = torch.ones(2, 4)
    m = build_metrics({"semseg": 3, "depth": 1, "normals": 3}, boundary=False)
    m.update(outputs, batch)
    assert {s[0] for s in seen} == {"DepthNormalCoherence", "BoundaryCoherence"}
    assert all(s[2] and "depth" in s[1] for s in seen)
    res = m.compute()
    assert res["coherence"] == {"depth_normal_pooled": 3.0, "boundary_pooled": 3.0}
    assert set(build_metrics({"depth": 1, "sal": 1}).compute()) == {"depth", "sal"}


def test_boundary_coherence_only_with_semseg_and_depth() -> None:
    outputs, batch = _batch()
    for d in (outputs, batch):
        del d["depth"]
    batch["intrinsics"] = torch.full((2, 4), 3.0)
    m = build_metrics({"semseg": 3, "normals": 3}, boundary=False)
    m.update(outputs, batch)  # boundary coherence would need the depth that is not predicted
    assert set(m.compute()) == {"semseg", "normals"}
    with_depth = build_metrics({"semseg": 3, "depth": 1}, boundary=False)
    assert set(with_depth.extra_metrics) == {"boundary"}


# ----------------------------------------------------------------------------- Δm


def test_delta_m_hand_value_and_saliency_uses_miou() -> None:
    results = {
        "semseg": {"mIoU": 0.5},
        "depth": {"rmse": 0.5},
        "sal": {"maxF": 0.9, "mIoU": 0.6},
        "coherence": {"x": 1.0},  # no main metric: left out
    }
    refs = {"semseg": {"mIoU": 0.4}, "depth": {"rmse": 0.6}, "sal": {"maxF": 0.5, "mIoU": 0.6}}
    terms = delta_m_terms(results, refs)
    assert terms == pytest.approx({"semseg": 25.0, "depth": 100 / 6, "sal": 0.0})
    assert delta_m(results, refs) == pytest.approx((25 + 100 / 6 + 0) / 3)
    assert delta_m(results, refs, tasks=["depth"]) == pytest.approx(100 / 6)
    with_maxf = delta_m(results, refs, tasks=["sal"], main_metrics={"sal": ("maxF", 1)})
    assert with_maxf == pytest.approx(80.0)


def test_delta_m_errors() -> None:
    with pytest.raises(MtcpError, match="'depth' missing from the single-task"):
        delta_m({"depth": {"rmse": 1.0}}, {"semseg": {"mIoU": 0.3}})
    with pytest.raises(MtcpError, match="cannot divide"):
        delta_m({"depth": {"rmse": 1.0}}, {"depth": {"rmse": 0.0}})
    with pytest.raises(MtcpError, match="no 'mean'"):
        delta_m({"normals": {"mean": 1.0}}, {"normals": {"median": 2.0}})


def test_load_references_file_folder_and_dict(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "stl_semseg.json").write_text(json.dumps({"metrics": {"semseg": {"mIoU": 0.4}}}))
    (runs / "stl_depth.json").write_text(json.dumps({"depth": {"rmse": 0.6, "log_rmse": 0.2}}))
    refs = load_references(runs)
    assert refs == {"semseg": {"mIoU": 0.4}, "depth": {"rmse": 0.6, "log_rmse": 0.2}}
    assert load_references(runs / "stl_depth.json")["depth"]["rmse"] == 0.6
    assert load_references({"normals": 20.0}) == {"normals": {"mean": 20.0}}
    results = {"semseg": {"mIoU": 0.5}, "depth": {"rmse": 0.5}}
    assert math.isclose(delta_m(results, refs), (25 + 100 / 6) / 2)
    (runs / "other.json").write_text(json.dumps({"depth": {"rmse": 0.7}}))
    with pytest.raises(MtcpError, match="conflicts"):
        load_references(runs)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(MtcpError, match=r"bad\.json"):
        load_references(bad)


# ----------------------------------------------------------------------------- inputs / results


def test_numpy_inputs_give_the_torch_results_as_tensors() -> None:
    outputs, batch = _batch()
    batch["intrinsics"] = torch.tensor([[5.0, 5.0, W / 2, H / 2]] * 2)
    tasks = {"semseg": 3, "depth": 1, "normals": 3, "sal": 1}
    torch_m, numpy_m = build_metrics(tasks), build_metrics(tasks)
    torch_m.update(outputs, batch)
    as_np = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    numpy_m.update({k: v.numpy() for k, v in outputs.items()}, as_np)
    expected, got = torch_m.compute(), numpy_m.compute()
    assert set(got) == {*tasks, "coherence"}
    for group, values in got.items():
        for key, value in values.items():
            assert isinstance(value, torch.Tensor) and value.dim() == 0, (group, key)
            assert torch.equal(value, expected[group][key]) or (
                value.isnan() and expected[group][key].isnan()
            ), (group, key)
    floats = to_floats(got)
    assert isinstance(floats["depth"]["rmse"], float)
    assert floats["depth"]["rmse"] == float(expected["depth"]["rmse"])


def test_anything_else_is_a_clear_error() -> None:
    outputs, batch = _batch()
    m = build_metrics({"depth": 1}, coherence=False)
    with pytest.raises(MtcpError, match=r"depth: model output: expected a torch tensor or a numpy"):
        m.update({"depth": outputs["depth"].tolist()}, batch)
    with pytest.raises(MtcpError, match=r"depth: target: expected a numeric numpy array"):
        m.update(outputs, {"depth": np.array([["a"]], dtype=object)})
    with pytest.raises(MtcpError, match=r"sal: predictions: expected a torch tensor"):
        SaliencyMetrics().update([0.5], torch.ones(1, 1, 1, 1))


def test_collection_is_used_like_a_metric_collection() -> None:
    outputs, batch = _batch()
    m = build_metrics({"semseg": 3, "depth": 1, "normals": 3}, boundary=False)
    assert m.keys() == ["semseg", "depth", "normals", "depth_normal", "boundary"]
    assert len(m) == 5 and list(m) == m.keys() and "depth" in m and "edge" not in m
    assert isinstance(m["depth"], DepthMetrics) and m["boundary"] is m.extra_metrics["boundary"]
    with pytest.raises(KeyError, match="known: semseg"):
        m["edge"]
    batch["intrinsics"] = torch.tensor([[5.0, 5.0, W / 2, H / 2]] * 2)
    first = m(outputs, batch)  # forward: accumulate, return this batch's results

    def same(a, b) -> bool:
        return flatten(to_floats(a)) == pytest.approx(flatten(to_floats(b)), nan_ok=True)

    assert same(first, m.compute())
    copy = m.clone()
    half = {k: v[:1] for k, v in outputs.items()}
    half_batch = {k: v[:1] for k, v in batch.items() if k != "labelled"}
    alone = m(half, half_batch)
    single = build_metrics({"semseg": 3, "depth": 1, "normals": 3}, boundary=False)
    single.update(half, half_batch)
    assert same(alone, single.compute())
    assert same(copy.compute(), first)  # the clone kept its own state
    assert not same(m.compute(), first)  # m accumulated both batches
    m.reset()
    assert math.isnan(float(m.compute()["depth"]["rmse"]))


def test_coherence_metrics_of_the_targets() -> None:
    from mtcp.metrics import coherence_metrics

    found = coherence_metrics(["semseg", "depth"], from_targets=True)
    assert set(found) == {"boundary"} and found["boundary"].from_targets
    assert set(coherence_metrics(["depth", "normals", "semseg"])) == {"depth_normal", "boundary"}
    assert not coherence_metrics(["semseg", "normals"])
