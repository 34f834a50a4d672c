"""Reduced-precision inference (mtcp.inference.precision): bf16 agrees with fp32, what stays fp32,
and the fp32 fallback on a CPU without native bf16 (capability detection monkeypatched)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import mtcp
from checkpoint_fixtures import write_train_checkpoint
from mtcp.cli import main
from mtcp.errors import MtcpError
from mtcp.inference import precision as prec

TASKS = {"semseg": 12, "depth": 1, "normals": 3, "edge": 1}
SIZE = (64, 96)
# the accuracy targets (argmax agreement, median relative depth, median normal angle)
MIN_ARGMAX_AGREEMENT, MAX_DEPTH_REL, MAX_NORMALS_DEG = 0.99, 0.01, 1.0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint in the layout ``mtcp train`` writes (untrained; depth starts near 3 m so
    that relative depth differences are well defined)."""
    torch.manual_seed(3)
    model = mtcp.create_model("mtcp_tiny", TASKS, depth_init=3.0)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    data = {"size": list(SIZE), "synthetic_scenes": 8}
    return write_train_checkpoint(path, model, data, [60.0, 60.0, 47.5, 31.5])


@pytest.fixture
def native_bf16(monkeypatch):
    # emulated bf16 computes the same values (only slower), so the agreement checks hold anywhere
    monkeypatch.setattr(prec, "cpu_bf16_support", lambda: "AVX512_BF16")


@pytest.fixture
def no_bf16(monkeypatch):
    monkeypatch.setattr(prec, "cpu_bf16_support", lambda: None)


def _images(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (48 + 8 * i, 80, 3), dtype=np.uint8) for i in range(n)]


def agreement(actual: dict, expected: dict) -> dict[str, float]:
    """The issue's three agreement figures between two predictions (numpy maps)."""
    cos = np.clip((actual["normals"] * expected["normals"]).sum(-1), -1, 1)
    return {
        "argmax": float((actual["semseg"] == expected["semseg"]).mean()),
        "depth_rel": float(
            np.median(np.abs(actual["depth"] - expected["depth"]) / expected["depth"])
        ),
        "normals_deg": float(np.median(np.degrees(np.arccos(cos)))),
    }


def test_bf16_predictor_agrees_with_fp32_within_the_targets(checkpoint, native_bf16):
    images = _images()
    reference = mtcp.load(checkpoint).predict(images)
    predictor = mtcp.load(checkpoint, precision="bf16")
    assert predictor.precision == "bf16"
    maps = predictor.predict(images)
    differs = False
    for got, ref in zip(maps, reference):
        assert {k: v.dtype for k, v in got.items()} == {k: v.dtype for k, v in ref.items()}
        scores = agreement(got, ref)
        assert scores["argmax"] >= MIN_ARGMAX_AGREEMENT, scores
        assert scores["depth_rel"] <= MAX_DEPTH_REL, scores
        assert scores["normals_deg"] <= MAX_NORMALS_DEG, scores
        differs |= not np.array_equal(got["depth"], ref["depth"])
    assert differs, "bf16 gave bit-identical maps: it did not run in bf16"


def test_bf16_keeps_norms_heads_and_outputs_in_fp32(checkpoint, native_bf16):
    model = mtcp.load(checkpoint, precision="bf16").model
    seen: dict[str, set] = {"norm_in": set(), "conv": set(), "head_out": set()}
    for module in model.modules():
        if isinstance(module, prec.FP32_MODULES):
            assert all(p.dtype == torch.float32 for p in module.parameters())
            module.register_forward_hook(lambda m, a, o: seen["norm_in"].add(a[0].dtype))
        if any(module is head for head in model.heads.values()):
            assert all(p.dtype == torch.float32 for p in module.parameters())
            module.register_forward_hook(lambda m, a, o: seen["head_out"].add(o.dtype))
    stem = model.backbone.body.stem_0
    assert stem.weight.dtype == torch.bfloat16  # a convolution outside the heads
    stem.register_forward_hook(lambda m, a, o: seen["conv"].add(o.dtype))
    with torch.no_grad(), prec.autocast("bf16"):
        out = model(torch.randn(1, 3, *SIZE))
    assert seen == {
        "norm_in": {torch.float32},
        "conv": {torch.bfloat16},
        "head_out": {torch.float32},
    }
    assert {v.dtype for v in out.values()} == {torch.float32}
    assert not torch.is_autocast_enabled("cpu")  # the heads' fp32 region was closed


def test_cpu_without_native_bf16_falls_back_to_fp32_with_a_clear_warning(checkpoint, no_bf16):
    images = _images(1)
    with pytest.warns(prec.PrecisionWarning, match="no native bf16 instructions.*runs in fp32"):
        predictor = mtcp.load(checkpoint, precision="bf16")
    assert predictor.precision == "fp32"
    assert all(p.dtype == torch.float32 for p in predictor.model.parameters())
    expected = mtcp.load(checkpoint).predict(images)[0]
    got = predictor.predict(images)[0]
    for task in TASKS:
        np.testing.assert_array_equal(got[task], expected[task])


def test_capability_detection_reads_torch_then_cpuinfo(monkeypatch):
    monkeypatch.setattr(prec, "cpu_bf16_support", prec.cpu_bf16_support)  # the real one
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    monkeypatch.setattr(prec, "_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert prec.cpu_bf16_support() == "AVX512_BF16"
    monkeypatch.setattr(prec, "_cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert prec.cpu_bf16_support() == "AMX"
    monkeypatch.setattr(prec, "_cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert prec.cpu_bf16_support() is None
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert prec.cpu_bf16_support() == "AVX512_BF16"


def test_bad_precisions_are_clear_errors(checkpoint):
    with pytest.raises(MtcpError, match=r"unknown precision 'fp16'.*fp32, bf16, int8"):
        mtcp.load(checkpoint, precision="fp16")
    with pytest.raises(MtcpError, match="--quantize int8"):
        mtcp.load(checkpoint, precision="int8")


def test_fp32_is_untouched_and_bf16_preparation_is_idempotent(checkpoint, native_bf16):
    model = mtcp.load(checkpoint).model
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not any(m._forward_pre_hooks for m in model.modules())
    prec.prepare_model(model, "bf16")
    hooks = sum(len(m._forward_pre_hooks) for m in model.modules())
    prec.prepare_model(model, "bf16")
    assert sum(len(m._forward_pre_hooks) for m in model.modules()) == hooks


def test_cli_predict_and_evaluate_take_precision(checkpoint, native_bf16, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "a.png"
    Image.fromarray(_images(1)[0]).save(image)
    out = tmp_path / "pred"
    args = ["predict", str(checkpoint), str(image), "--out", str(out), "--precision", "bf16"]
    assert main(args) == 0
    depth = np.asarray(Image.open(out / "a" / "depth_mm.png"))
    reference = mtcp.load(checkpoint).predict(str(image))["depth"]
    assert np.median(np.abs(depth / 1000.0 - reference) / reference) <= MAX_DEPTH_REL

    reports = {}
    for precision in ("fp32", "bf16"):
        path = tmp_path / f"{precision}.json"
        args = [
            "evaluate",
            str(checkpoint),
            "--data",
            "synthetic",
            "--limit",
            "2",
            "--out",
            str(path),
        ]
        assert main([*args, "--precision", precision]) == 0
        reports[precision] = json.loads(path.read_text())
    assert reports["bf16"]["precision"] == "bf16"
    fp32, bf16 = reports["fp32"]["metrics"], reports["bf16"]["metrics"]
    assert bf16["depth"]["rmse"] == pytest.approx(fp32["depth"]["rmse"], rel=0.01)
    assert bf16["normals"]["mean"] == pytest.approx(fp32["normals"]["mean"], rel=0.01)


def test_cli_evaluate_falls_back_loudly(checkpoint, no_bf16, tmp_path):
    path = tmp_path / "e.json"
    args = ["evaluate", str(checkpoint), "--data", "synthetic", "--limit", "1", "--out", str(path)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*args, "--precision", "bf16"]) == 0
    assert any(issubclass(w.category, prec.PrecisionWarning) for w in caught)
    assert json.loads(path.read_text())["precision"] == "fp32"


def test_bf16_keeps_the_release_heads_fp32_too():
    from mtcp.models.heads import ReleaseDepthHead

    model = mtcp.create_model("mtcp_tiny", TASKS, release_heads="nyud", depth_init=3.0).eval()
    assert isinstance(model.heads["depth"], ReleaseDepthHead)
    prec.prepare_model(model, "bf16")
    for head in model.heads.values():
        assert {p.dtype for p in head.parameters()} == {torch.float32}
    with torch.no_grad(), prec.autocast("bf16"):
        out = model(torch.randn(1, 3, *SIZE))
    assert out["depth"].dtype == torch.float32 and (out["depth"] > 0).all()
