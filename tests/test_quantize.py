"""int8 ONNX export (mtcp.export.quantize): calibration on training scenes, what stays fp32, and
the round trip through mtcp.load / mtcp export / mtcp predict."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import mtcp
from checkpoint_fixtures import write_train_checkpoint
from mtcp.cli import main
from mtcp.errors import MtcpError
from mtcp.export import export_onnx
from mtcp.export.quantize import (
    activation_matmuls,
    calibration_images,
    export_int8,
    output_convs,
    quantize_onnx,
)
from mtcp.inference.formats import METADATA_KEY

TASKS = {"semseg": 12, "depth": 1, "normals": 3}
SIZE = (64, 96)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(5)
    return mtcp.create_model("mtcp_tiny", TASKS, depth_init=3.0).eval()


@pytest.fixture(scope="module")
def calibration(model) -> list[np.ndarray]:
    return calibration_images("synthetic", SIZE, model.tasks, n=4)


@pytest.fixture(scope="module")
def int8_file(model, calibration, tmp_path_factory):
    path = tmp_path_factory.mktemp("int8") / "tiny.int8.onnx"
    export_int8(model, path, SIZE, calibration, intrinsics=(60.0, 60.0, 47.5, 31.5))
    return path


def test_calibration_images_are_normalised_training_scenes(calibration):
    assert len(calibration) == 4
    assert all(x.shape == (1, 3, *SIZE) and x.dtype == np.float32 for x in calibration)
    # ImageNet-normalised photos-like scenes: centred near 0, unit-ish spread, not all alike
    stacked = np.concatenate(calibration)
    assert abs(stacked.mean()) < 1.0 and 0.3 < stacked.std() < 2.0
    assert not np.allclose(calibration[0], calibration[1])


def test_int8_graph_round_trips_through_mtcp_load_and_agrees_with_fp32(model, int8_file):
    predictor = mtcp.load(int8_file)
    assert predictor.precision == "int8" and predictor.tasks == TASKS
    assert predictor.size == SIZE and predictor.intrinsics == (60.0, 60.0, 47.5, 31.5)
    nodes = [n.op_type for n in onnx.load(str(int8_file)).graph.node]
    assert nodes.count("QuantizeLinear") > 20  # activations of the convolutions quantized
    fp32 = mtcp.inference.Predictor(model, TASKS, SIZE)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (70, 100, 3), dtype=np.uint8) for _ in range(2)]
    for got, ref in zip(predictor.predict(images), fp32.predict(images)):
        assert (got["semseg"] == ref["semseg"]).mean() >= 0.99
        assert np.median(np.abs(got["depth"] - ref["depth"]) / ref["depth"]) <= 0.01
        cos = np.clip((got["normals"] * ref["normals"]).sum(-1), -1, 1)
        assert np.median(np.degrees(np.arccos(cos))) <= 1.0
        assert not np.array_equal(got["depth"], ref["depth"])  # it really is another graph


def test_output_layers_and_attention_products_stay_fp32(model, int8_file, tmp_path):
    proto = onnx.load(str(int8_file))
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    assert meta["precision"] == "int8" and meta["calibration"]
    fp32_graph = onnx.load(str(export_onnx(model, tmp_path / "f.onnx", SIZE, verify=False))).graph
    heads, products = output_convs(fp32_graph), activation_matmuls(fp32_graph)
    assert len(heads) == len(TASKS)  # one output convolution per task
    assert any("attention" in n for n in products) and any("attn" in n for n in products)
    assert set(meta["fp32_nodes"]) == set(heads) | set(products)
    graph = proto.graph
    nodes = {n.name: n for n in graph.node}
    producers = {o: n for n in graph.node for o in n.output}
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    for name in heads:  # fp32 weights, read directly (no DequantizeLinear of int8 weights)
        assert nodes[name].op_type == "Conv" and nodes[name].input[1] in floats, name
    for name in products:  # softmax(Q K^T) V: operands not dequantized in front of the product
        assert nodes[name].op_type == "MatMul"
        for tensor in nodes[name].input:
            assert producers[tensor].op_type != "DequantizeLinear", name


def test_precision_mismatch_with_an_onnx_graph_is_a_clear_error(model, int8_file, tmp_path):
    with pytest.raises(MtcpError, match="int8 ONNX graph cannot run in fp32"):
        mtcp.load(int8_file, precision="fp32")
    fp32 = export_onnx(model, tmp_path / "fp32.onnx", size=SIZE, verify=False)
    assert mtcp.load(fp32).precision == "fp32"
    with pytest.raises(MtcpError, match="--quantize int8"):
        mtcp.load(fp32, precision="int8")
    with pytest.raises(MtcpError, match="already quantized"):
        quantize_onnx(int8_file, tmp_path / "again.onnx", [np.zeros((1, 3, *SIZE), np.float32)])
    with pytest.raises(MtcpError, match=r"calibration images must be \[1, 3, 64, 96\]"):
        export_int8(model, tmp_path / "x.onnx", SIZE, [np.zeros((1, 3, 32, 32), np.float32)])
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export_quantize_then_predict(model, tmp_path, capsys):
    ckpt = write_train_checkpoint(
        tmp_path / "model.ckpt", model, {"size": list(SIZE), "source": "synthetic"}
    )
    out = tmp_path / "tiny.int8.onnx"
    args = ["export", str(ckpt), "--format", "onnx", "--quantize", "int8", "--out", str(out)]
    assert main([*args, "--calibration-images", "3"]) == 0
    assert "calibrated on 3 images of synthetic" in capsys.readouterr().out
    image = tmp_path / "a.png"
    Image.fromarray(np.full((50, 70, 3), 120, np.uint8)).save(image)
    assert main(["predict", str(out), str(image), "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "a" / "depth_mm.png").is_file()

    assert main([*args, "--dynamic"]) == 2
    assert "fixed input size" in capsys.readouterr().err
    weights = tmp_path / "w.safetensors"
    mtcp.export.save_safetensors(model, weights, size=SIZE)
    bad = ["export", str(weights), "--format", "onnx", "--quantize", "int8", "--out", str(out)]
    assert main(bad) == 2
    assert "--calibration synthetic" in capsys.readouterr().err
    assert (
        main(
            [
                "export",
                str(ckpt),
                "--format",
                "onnx",
                "--calibration",
                "synthetic",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "apply to --quantize only" in capsys.readouterr().err
