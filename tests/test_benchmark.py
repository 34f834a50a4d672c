"""`mtcp benchmark` and mtcp.benchmark on a tiny model: runs, sane JSON, honest FLOP count."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mtcp.benchmark import (
    BenchmarkConfig,
    attention_benchmark,
    format_markdown,
    forward_gflops,
    random_batch,
    run_benchmark,
)
from mtcp.cli import main
from mtcp.errors import MtcpError
from mtcp.losses import MultiTaskLoss
from mtcp.models import create_model

TASKS = {"semseg": 5, "depth": 1, "normals": 3}


def test_cli_writes_json_with_sane_positive_fields(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["benchmark", "--model", "mtcp_tiny", "--size", "64x96", "--batch", "2"]
    argv += ["--tasks", "semseg", "depth", "--repeats", "1", "--warmup", "0", "--json", str(out)]
    argv += ["--model-arg", "cfm_stride=16"]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "| mtcp_tiny cfm_stride=16 | 64x96 | 2 | cpu | fp32 |" in printed
    assert "--model-arg cfm_stride=16" in result["machine"]["command"]
    assert result["config"]["tasks"] == {"semseg": 40, "depth": 1}
    model = create_model("mtcp_tiny", ["semseg", "depth"], cfm_stride=16)
    assert result["parameters"] == sum(p.numel() for p in model.parameters())
    assert 0 < result["trainable_parameters"] <= result["parameters"]
    assert result["gflops_per_image"] > 0
    for phase in ("train", "inference"):
        figures = result[phase]
        assert figures["runs"] == 1
        assert figures["img_per_s"] > 0 and figures["ms_median"] > 0
        assert figures["img_per_s"] == pytest.approx(2000 / figures["ms_median"])
        assert figures["cpu_s_median"] > 0
        assert 0.05 < figures["peak_memory_gib"] < 64  # the whole process, in GiB
    assert result["machine"]["torch"] == torch.__version__


def test_gflops_equal_the_flop_counter_of_a_forward():
    model = create_model("mtcp_tiny", TASKS).eval()
    image = torch.randn(2, 3, 64, 96)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image)
    assert forward_gflops(model, image) == pytest.approx(counter.get_total_flops() / 2 / 1e9)
    # per image: the count of one image equals that of the batch divided by its size
    assert forward_gflops(model, image[:1]) == pytest.approx(forward_gflops(model, image))


def test_random_batch_trains_with_the_multitask_loss():
    batch = random_batch({**TASKS, "edge": 1}, 2, (8, 12))
    assert batch["semseg"].dtype == torch.int64 and int(batch["semseg"].max()) < 5
    assert torch.allclose(batch["normals"].norm(dim=1), torch.ones(2, 8, 12))
    assert (batch["normals"][:, 2] <= 0).all() and (batch["depth"] > 0).all()
    outputs = {t: torch.randn(2, c, 8, 12) for t, c in {**TASKS, "edge": 1}.items()}
    losses = MultiTaskLoss({**TASKS, "edge": 1})(outputs, batch)
    assert all(torch.isfinite(v) for v in losses.values())


def test_markdown_has_machine_and_a_row_per_result():
    config = BenchmarkConfig(size=(64, 64), tasks=["depth", "normals"], warmup=0, repeats=1)
    config.train = False
    result = run_benchmark(config, command="mtcp benchmark ...")
    text = format_markdown([result, result])
    assert "- cpu: " in text and "- command: `mtcp benchmark ...`" in text
    rows = [line for line in text.splitlines() if line.startswith("| mtcp_tiny")]
    assert len(rows) == 2 and rows[0].count("|") == 18
    assert "train" not in result and result["inference"]["img_per_s"] > 0


@pytest.mark.parametrize("impl", ["dense", "chunked", "sdpa"])
def test_attention_benchmark_runs_each_form(impl):
    out = attention_benchmark(impl, batch=1, tokens=64, query_channels=8, value_channels=4)
    assert out["ms_median"] > 0 and out["peak_memory_gib"] > 0
    assert ("chunk_size" in out) == (impl == "chunked")


def test_bad_settings_are_clear_errors(capsys):
    with pytest.raises(MtcpError, match="precision must be one of"):
        BenchmarkConfig(precision="fp8").check()
    assert main(["benchmark", "--size", "64x96", "--model-arg", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_auto_chunk_bounds_the_block_and_matches_spec_choices():
    from mtcp.models.attention import CHUNK_BUDGET, auto_chunk_size

    assert auto_chunk_size(2, 19_200, "cuda") == 4096  # SPEC §8: 13.7 ms / 1.55 GiB on an H100
    assert auto_chunk_size(1, 112 * 144, "cpu") == 1024  # mtcp_paper at 448x576 on a CPU
    for batch, tokens in ((1, 300), (8, 19_200), (64, 30_000)):
        chunk = auto_chunk_size(batch, tokens, "cpu")
        assert chunk % 64 == 0 and chunk >= 64
        assert batch * chunk * tokens <= max(CHUNK_BUDGET["cpu"], batch * 64 * tokens)


def test_mask2former_training_guard_is_branch_free_and_unchanged():
    """The HF encoder layers' `if not isfinite(h).all()` clamp (a host sync and a graph break)
    runs as a torch.where hook instead: same outputs in training, same clamp on overflow."""
    pytest.importorskip("transformers")
    model = create_model("hps_paper", ["depth"]).train()
    backbone = model.backbone
    assert len(backbone._overflow_layers) == 6
    assert not any(layer.training for layer in backbone._overflow_layers)
    image = torch.randn(1, 3, 64, 96)
    torch.manual_seed(1)
    fast = model(image)["depth"]
    for layer in backbone._overflow_layers:  # Hugging Face's own training-mode branch
        layer.train(True)
    backbone.training = False  # the hook steps aside
    torch.manual_seed(1)
    reference = model(image)["depth"]
    assert torch.equal(fast, reference)
    backbone.train()
    big = torch.finfo(torch.float32).max
    clamped = backbone._clamp_overflow(None, None, (torch.tensor([1.0, float("inf")]),))[0]
    assert clamped.tolist() == [1.0, big - 1000]
    finite = torch.tensor([1.0, -2.0])
    assert torch.equal(backbone._clamp_overflow(None, None, (finite,))[0], finite)


def test_precision_comparison_side_by_side(tmp_path, capsys, monkeypatch):
    from mtcp.inference import precision as prec

    out = tmp_path / "precision.json"
    argv = ["benchmark", "--size", "64x96", "--tasks", "semseg", "depth", "normals"]
    argv += ["--precision", "fp32", "bf16", "--repeats", "1", "--warmup", "0", "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "native_bf16:" in printed and "× fp32 time" in printed
    results = json.loads(out.read_text())["results"]
    assert [r["case"]["precision"] for r in results] == ["fp32", "bf16"]
    fp32, bf16 = results
    assert fp32["agreement"] == {"semseg_argmax": 1.0, "depth_rel": 0.0, "normals_deg": 0.0}
    assert bf16["precision"] == ("bf16" if prec.cpu_bf16_support() else "fp32")
    assert bf16["agreement"]["semseg_argmax"] >= 0.99
    assert bf16["agreement"]["depth_rel"] <= 0.01 and bf16["agreement"]["normals_deg"] <= 1.0
    for r in results:
        assert r["ms_per_image"] > 0 and 0.05 < r["peak_gib"] < 64


def test_agreement_measures_each_task_kind():
    import numpy as np

    from mtcp.benchmark.precision import agreement

    rng = np.random.default_rng(0)
    ref = {
        "semseg": rng.normal(size=(1, 4, 8, 8)),
        "depth": np.full((1, 1, 8, 8), 2.0),
        "normals": np.tile(np.array([0.0, 0.0, -1.0]).reshape(1, 3, 1, 1), (1, 1, 8, 8)),
    }
    got = {k: v.copy() for k, v in ref.items()}
    got["semseg"][0, :, :4] = ref["semseg"][0, :, :4].min() - 1 - ref["semseg"][0, :, :4]
    got["depth"][..., :5, :] = 2.02  # 1 % off on 5/8 of the pixels: median 1 %
    got["normals"][:, 0] = np.tan(np.radians(2.0))  # tilted by 2° everywhere
    scores = agreement(got, ref)
    flipped = (got["semseg"].argmax(1) == ref["semseg"].argmax(1)).mean()
    assert scores["semseg_argmax"] == pytest.approx(flipped) and flipped < 0.75
    assert scores["depth_rel"] == pytest.approx(0.01)
    assert scores["normals_deg"] == pytest.approx(2.0, abs=1e-4)


def test_precision_metrics_of_a_trained_model_carry_the_agreement_with_fp32(
    trained_ckpt, monkeypatch
):
    from mtcp.benchmark.precision import precision_metrics
    from mtcp.inference import precision as prec

    # without native bf16 the same values are computed, only slower
    monkeypatch.setattr(prec, "cpu_bf16_support", lambda: "AVX512_BF16")
    metrics = precision_metrics(trained_ckpt, ("fp32", "bf16"), scenes=3)
    fp32, bf16 = metrics["fp32"]["agreement"], metrics["bf16"]["agreement"]
    assert fp32 == {"semseg_argmax": 1.0, "depth_rel": 0.0, "normals_deg": 0.0}
    assert 0.99 <= bf16["semseg_argmax"] <= 1.0 and 0 < bf16["depth_rel"] <= 0.01
    assert 0 < bf16["normals_deg"] <= 1.0  # bf16 really ran: not bit-identical
    assert set(metrics["bf16"]) == set(metrics["fp32"]) and "mIoU" in metrics["bf16"]["semseg"]
