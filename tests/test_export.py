"""ONNX export, weights-only safetensors files and ``mtcp export`` (tiny model, 64x96)."""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import mtcp
from mtcp.cli import main
from mtcp.errors import MtcpError
from mtcp.export import export_onnx, save_safetensors
from mtcp.inference.formats import load_safetensors, safetensors_metadata
from mtcp.inference.onnx_runtime import OnnxModel

TASKS = ["semseg", "depth", "normals", "edge"]
SIZE = (64, 96)
INTRINSICS = (50.0, 51.0, 47.5, 31.5)


def _randomise_buffers(model: torch.nn.Module) -> None:
    # BN statistics differ from their defaults, so a file that dropped buffers would show
    for buf in model.buffers():
        if buf.is_floating_point():
            buf.uniform_(0.5, 1.5)


def assert_maps_close(actual: dict, expected: dict, tasks: list[str]) -> None:
    """Every task map has the reference's shape and matches within 1e-3 relative."""
    assert set(actual) >= set(tasks)
    for task in tasks:
        ref = expected[task]
        assert actual[task].shape == ref.shape, task
        tol = 1e-3 * float(ref.abs().max())
        torch.testing.assert_close(actual[task], ref, rtol=0, atol=tol, msg=task)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(1)
    net = mtcp.create_model("mtcp_tiny", tasks=TASKS)
    _randomise_buffers(net)
    return net.eval()


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_safetensors(model, path, size=SIZE, intrinsics=INTRINSICS)
    return str(path)


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("small") / "depth.safetensors"
    save_safetensors(mtcp.create_model("mtcp_tiny", tasks=["depth"]), path, size=SIZE)
    return str(path)


@pytest.fixture(scope="module")
def static_onnx(model, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(model, path, size=SIZE, verify=False)  # the test compares itself
    return str(path)


def test_onnx_matches_pytorch_for_every_task(model, static_onnx):
    runner = OnnxModel(static_onnx)
    assert runner.tasks == model.tasks
    assert runner.input_size == SIZE
    assert runner.meta["model"] == model.config
    image = torch.randn(3, 3, *SIZE)  # batch 3 through a batch-1 graph
    with torch.no_grad():
        expected = model(image)
    assert_maps_close(runner(image), expected, TASKS)
    assert_maps_close(runner(image.numpy()), expected, TASKS)


def test_export_leaves_the_model_as_it_was(tmp_path):
    net = mtcp.create_model("mtcp_tiny", tasks=["depth", "edge"]).train()
    impls = [m.impl for m in net.modules() if hasattr(m, "impl")]
    export_onnx(net, tmp_path / "m.onnx", size=SIZE, dynamic=True, verify=False)
    assert net.training
    assert [m.impl for m in net.modules() if hasattr(m, "impl")] == impls
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]  # no temporary file left


def test_dynamic_onnx_matches_pytorch_at_another_size(model, tmp_path):
    path = export_onnx(model, tmp_path / "dyn.onnx", size=SIZE, dynamic=True)
    runner = OnnxModel(path)
    assert runner.input_size is None
    image = torch.randn(2, 3, 72, 136)
    with torch.no_grad():
        expected = model(image)
    assert_maps_close(runner(image), expected, TASKS)


def test_onnx_runner_rejects_wrong_inputs(static_onnx, tmp_path):
    runner = OnnxModel(static_onnx)
    with pytest.raises(MtcpError, match="exported for 64x96"):
        runner(torch.zeros(1, 3, 96, 96))
    with pytest.raises(MtcpError, match=r"\[B, 3, H, W\]"):
        runner(torch.zeros(1, 1, *SIZE))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(MtcpError, match=r"bad\.onnx"):
        OnnxModel(bad)


def test_export_onnx_refuses_too_small_size_and_keeps_old_file(model, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous")
    with pytest.raises(MtcpError, match="minimum"):
        export_onnx(model, out, size=(32, 32))
    assert out.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_safetensors_reload_gives_identical_outputs(model, weights):
    reloaded = load_safetensors(weights)
    assert not reloaded.training
    assert reloaded.config == model.config
    image = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        before, after = model(image), reloaded(image)
    assert set(after) == set(before) == set(TASKS)
    for task in TASKS:
        assert torch.equal(after[task], before[task]), task


def test_safetensors_metadata_is_readable_by_mtcp_load(model, weights):
    meta = safetensors_metadata(weights)
    assert meta["tasks"] == model.tasks and meta["size"] == list(SIZE)
    predictor = mtcp.load(weights)
    assert predictor.size == SIZE and predictor.tasks == model.tasks


def test_load_safetensors_refuses_pickle_and_garbage(tmp_path):
    pickled = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, pickled)
    with pytest.raises(MtcpError, match=r"model\.safetensors: not a safetensors file"):
        load_safetensors(pickled)
    with pytest.raises(MtcpError, match="no such file"):
        load_safetensors(tmp_path / "missing.safetensors")


def test_load_safetensors_needs_metadata_and_matching_weights(model, tmp_path):
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    bare = tmp_path / "bare.safetensors"
    save_file(state, str(bare))
    with pytest.raises(MtcpError, match="without the 'mtcp' metadata"):
        load_safetensors(bare)
    partial = tmp_path / "partial.safetensors"
    meta = {"model": model.config, "tasks": model.tasks, "size": None, "intrinsics": None}
    state.pop(next(iter(state)))
    save_file(state, str(partial), metadata={"mtcp": json.dumps(meta)})
    with pytest.raises(MtcpError, match="do not fit"):
        load_safetensors(partial)


def test_save_safetensors_needs_a_config(tmp_path):
    net = mtcp.create_model("mtcp_tiny", tasks=["depth"])
    net.config = {}
    with pytest.raises(MtcpError, match="create_model"):
        save_safetensors(net, tmp_path / "x.safetensors")
    assert not list(tmp_path.iterdir())


def test_cli_exports_onnx_and_safetensors(small_weights, tmp_path, capsys):
    onnx_out = tmp_path / "cli.onnx"
    assert main(["export", small_weights, "--format", "onnx", "--out", str(onnx_out)]) == 0
    runner = OnnxModel(onnx_out)  # numerics were verified by the export itself
    assert runner.input_size == SIZE and runner.tasks == {"depth": 1}
    assert runner(torch.zeros(1, 3, *SIZE))["depth"].shape == (1, 1, *SIZE)
    st_out = tmp_path / "cli.safetensors"
    argv = ["export", small_weights, "--format", "safetensors", "--out", str(st_out)]
    assert main([*argv, "--size", "96x128"]) == 0
    assert safetensors_metadata(st_out)["size"] == [96, 128]
    assert "exported mtcp_tiny (depth)" in capsys.readouterr().out


def test_cli_errors(small_weights, tmp_path, capsys):
    out = str(tmp_path / "x.onnx")
    assert main(["export", str(tmp_path / "nope.ckpt"), "--format", "onnx", "--out", out]) == 2
    assert "nope.ckpt" in capsys.readouterr().err
    argv = ["export", small_weights, "--format", "onnx", "--out", out, "--size", "64by96"]
    assert main(argv) == 2
    assert "HxW" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["export", small_weights, "--format", "tflite", "--out", out])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    assert not os.path.exists(out)


def _read_outputs(folder) -> tuple[dict, list[dict]]:
    files = {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.suffix == ".npy"}
    with open(folder / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    return files, rows


def test_cli_predict_onnx_matches_the_torch_path(model, weights, tmp_path):
    onnx_file = export_onnx(model, tmp_path / "m.onnx", size=SIZE, intrinsics=INTRINSICS)
    predictor = mtcp.load(onnx_file)
    assert isinstance(predictor.model, OnnxModel) and predictor.size == SIZE
    assert predictor.intrinsics == INTRINSICS
    image = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(image)
    common = [str(image), "--raw", "npy"]
    assert main(["predict", weights, *common, "--out", str(tmp_path / "torch")]) == 0
    assert main(["predict", "--onnx", str(onnx_file), *common, "--out", str(tmp_path / "ort")]) == 0
    ref_files, ref_rows = _read_outputs(tmp_path / "torch")
    files, rows = _read_outputs(tmp_path / "ort")
    assert sorted(os.listdir(tmp_path / "ort" / "photo")) == sorted(
        os.listdir(tmp_path / "torch" / "photo")
    )
    assert set(files) == set(ref_files) == {f"photo/{t}.npy" for t in TASKS}
    for name, path in files.items():
        value, ref = np.load(path), np.load(ref_files[name])
        assert value.shape == ref.shape and value.dtype == ref.dtype, name
        if "semseg" in name:  # class ids: argmax may flip only at near ties
            assert (value == ref).mean() > 0.99
        else:
            np.testing.assert_allclose(value, ref, rtol=0, atol=1e-3 * np.abs(ref).max())
    for key in ("status", "height", "width", "review"):
        assert rows[0][key] == ref_rows[0][key]
    assert float(rows[0]["depth_normal_deg"]) == pytest.approx(
        float(ref_rows[0]["depth_normal_deg"]), abs=0.5
    )


def test_cli_predict_onnx_errors(static_onnx, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["predict", "--onnx", static_onnx, "x.png", "--out", out, "--device", "cuda"]) == 2
    assert "--onnx runs on the CPU" in capsys.readouterr().err
    assert main(["predict", static_onnx, "--out", out]) == 2
    assert "no INPUTS" in capsys.readouterr().err


def test_missing_onnxruntime_is_a_clear_error(static_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(MtcpError, match=r"mtcp\[export\]"):
        OnnxModel(static_onnx)
