"""The files ``mtcp predict`` writes per image hold the values they promise; the review flag."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from mtcp import viz
from mtcp.inference.maps import to_numpy_maps
from mtcp.inference.outputs import write_outputs
from mtcp.inference.review import review_flag

TASKS = {"semseg": 12, "depth": 1, "normals": 3, "edge": 1}


def _outputs(h: int = 9, w: int = 11) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    depth = torch.rand(1, 1, h, w, generator=g) * 5
    depth[0, 0, 0, :3] = torch.tensor([-0.3, 70.0, 1.2344])  # clamped, saturated, rounded down
    return {
        "semseg": torch.randn(1, 12, h, w, generator=g),
        "depth": depth,
        "normals": torch.randn(1, 3, h, w, generator=g),
        "edge": torch.randn(1, 1, h, w, generator=g) * 3,
    }


def test_raw_pngs_hold_millimetres_argmax_and_probabilities(tmp_path):
    outputs = _outputs()
    maps = to_numpy_maps(outputs, TASKS)[0]
    rgb = np.zeros((9, 11, 3), np.uint8)
    names = {"semseg": [f"c{k}" for k in range(12)]}
    written = write_outputs(tmp_path, rgb, maps, TASKS, raw="png", class_names=names)
    assert {p.name for p in written} == {
        "input.png",
        "semseg.png",
        "depth_mm.png",
        "normals.npy",
        "edge_prob.png",
        "panel.png",
        "legend.json",
        *(f"{t}_color.png" for t in TASKS),
    }
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "input.png")), rgb)
    legend = json.loads((tmp_path / "legend.json").read_text())
    lo, hi = viz.depth_range(maps["depth"])  # the range the depth colours were drawn with
    assert legend["depth"]["vmin"] == pytest.approx(lo)
    assert legend["depth"]["vmax"] == pytest.approx(hi)
    assert legend["classes"] == names and legend["depth"]["unit"] == "m"
    panel = np.asarray(Image.open(tmp_path / "panel.png"))
    assert panel.shape[0] > viz.LABEL_HEIGHT + 9  # the legends sit under the 9-row pictures
    semseg = np.asarray(Image.open(tmp_path / "semseg.png"))
    np.testing.assert_array_equal(semseg, outputs["semseg"][0].argmax(0).numpy())
    mm = np.asarray(Image.open(tmp_path / "depth_mm.png"))
    assert mm.dtype == np.uint16
    depth = outputs["depth"][0, 0].numpy().astype(np.float64)
    np.testing.assert_array_equal(mm, np.clip(np.round(1000 * depth), 0, 65535))
    assert mm[0, 0] == 0 and mm[0, 1] == 65535 and mm[0, 2] == 1234
    edge = np.asarray(Image.open(tmp_path / "edge_prob.png"))
    np.testing.assert_array_equal(edge, np.round(255 * outputs["edge"][0, 0].sigmoid().numpy()))
    normals = np.load(tmp_path / "normals.npy")
    expected = torch.nn.functional.normalize(outputs["normals"][0], dim=0).permute(1, 2, 0)
    np.testing.assert_allclose(normals, expected.numpy(), rtol=1e-6)


def test_raw_npy_keeps_every_map_exactly(tmp_path):
    maps = to_numpy_maps(_outputs(), TASKS)[0]
    write_outputs(tmp_path, np.zeros((9, 11, 3), np.uint8), maps, TASKS, raw="npy")
    for task, value in maps.items():
        stored = np.load(tmp_path / f"{task}.npy")
        assert stored.dtype == value.dtype
        np.testing.assert_array_equal(stored, value)


def test_review_flag_names_each_reason_and_ignores_undefined_scores():
    assert review_flag({"depth_normal_deg": 10.0, "boundary_f": 0.5}) == ""
    assert review_flag({"depth_normal_deg": math.nan, "boundary_f": math.nan}) == ""
    both = review_flag({"depth_normal_deg": 45.0, "boundary_f": 0.1})
    assert "depth-normal 45.0 deg > 30" in both and "boundary F 0.10 < 0.2" in both
    assert review_flag({"depth_normal_deg": 45.0, "boundary_f": 0.5}, max_angle=50) == ""
