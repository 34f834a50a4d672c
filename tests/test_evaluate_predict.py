"""`mtcp train` → `mtcp evaluate` → `mtcp predict` through the command line, on the session's
tiny run (``trained_run`` in conftest.py)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_TASKS as TASKS
from conftest import TINY_TRAIN as TINY
from mtcp.cli import main


@pytest.fixture
def run_dir(trained_run):
    return trained_run


def test_train_cli_writes_before_and_after_metrics(run_dir):
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for column in ("before", "after"):
        assert set(metrics[column]) == {*TASKS, "coherence"}
        assert 0 <= metrics[column]["semseg"]["mIoU"] <= 1
        assert metrics[column]["depth"]["rmse"] > 0


def test_train_cli_output(tmp_path, capsys):
    assert main(["train", *TINY, "data.tasks=[depth, normals]", f"run.root={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "before" in out and "after" in out and "depth/rmse ↓" in out
    assert "coherence/depth_normal_mean" in out
    for word in ("checkpoints:", "logs:", "pictures:", "predictions.png"):
        assert word in out


def test_evaluate_writes_metrics_coherence_and_delta_m(run_dir, tmp_path, capsys):
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    refs = tmp_path / "single.json"
    refs.write_text(json.dumps({"semseg": 0.5, "depth": 1.0, "normals": 30.0, "edge": 0.5}))
    out = tmp_path / "eval.json"
    args = ["evaluate", str(ckpt), "--limit", "4", "--references", str(refs), "--out", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["n_images"] == 4 and report["split"] == "test"
    metrics = report["metrics"]
    assert set(metrics) == {*TASKS, "coherence"}
    assert 0 <= metrics["semseg"]["mIoU"] <= 1 and 0 <= metrics["edge"]["odsF"] <= 1
    assert 0 < metrics["depth"]["rmse"] < 20 and 0 <= metrics["normals"]["mean"] <= 180
    coherence = metrics["coherence"]
    # after one tiny epoch the maps may be constant: no boundary at all, F undefined (NaN)
    assert 0 <= coherence["boundary_F"] <= 1 or (
        coherence["boundary_n_undefined"] == coherence["boundary_n_images"] == 4
    )
    assert 0 <= report["targets"]["coherence"]["boundary_F"] <= 1
    assert report["targets"]["coherence"]["boundary_n_undefined"] == 0
    expected = (
        np.mean(
            [
                (metrics["semseg"]["mIoU"] - 0.5) / 0.5,
                -(metrics["depth"]["rmse"] - 1.0) / 1.0,
                -(metrics["normals"]["mean"] - 30.0) / 30.0,
                (metrics["edge"]["odsF"] - 0.5) / 0.5,
            ]
        )
        * 100
    )
    assert report["delta_m"] == pytest.approx(expected)
    assert "Δm" in capsys.readouterr().out


def test_evaluate_refuses_data_of_another_task_set(run_dir, tmp_path, capsys):
    from mtcp.data.synthetic.writer import write_layout

    pascal = write_layout(tmp_path / "pascal", "pascal-mt", n=4, size=(64, 64))
    assert (
        main(["evaluate", str(run_dir / "checkpoints" / "last.ckpt"), "--data", str(pascal)]) == 2
    )
    assert "depth" in capsys.readouterr().err


def test_predict_writes_maps_panels_and_review_csv(run_dir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (45, 70), dtype=np.uint8)).save(tmp_path / "gray.png")
    rgba = rng.integers(0, 256, (80, 60, 4), dtype=np.uint8)
    folder = tmp_path / "folder"
    folder.mkdir()
    Image.fromarray(rgba).save(folder / "rgba.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    out = tmp_path / "out"
    inputs = [
        str(tmp_path / "gray.png"),
        str(folder),
        str(tmp_path / "broken.jpg"),
        str(tmp_path / "clip.mp4"),
        str(tmp_path / "missing.png"),
    ]
    assert (
        main(["predict", str(run_dir / "checkpoints" / "best.ckpt"), *inputs, "--out", str(out)])
        == 0
    )
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "missing.png" in err and "clip.mp4" in err

    with open(out / "predictions.csv") as f:
        rows = {r["input"]: r for r in csv.DictReader(f)}
    assert [r["status"] for r in rows.values()].count("ok") == 2
    assert rows[str(tmp_path / "broken.jpg")]["status"] == "unreadable"
    for name, (h, w) in {"gray": (45, 70), "rgba": (80, 60)}.items():
        row = next(r for r in rows.values() if r["output"].endswith(name))
        assert (int(row["height"]), int(row["width"])) == (h, w)
        boundary_f = float(row["boundary_f"])  # nan: undefined, neither map has a boundary
        assert float(row["depth_normal_deg"]) >= 0 and (
            0 <= boundary_f <= 1 or math.isnan(boundary_f)
        )
        assert row["review"] in ("0", "1")
        d = out / name
        ids = np.asarray(Image.open(d / "semseg.png"))
        assert ids.shape == (h, w) and ids.dtype == np.uint8 and ids.max() < 12
        mm = np.asarray(Image.open(d / "depth_mm.png"))
        assert mm.shape == (h, w) and mm.dtype == np.uint16
        normals = np.load(d / "normals.npy")
        np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1, atol=1e-4)
        assert np.asarray(Image.open(d / "edge_prob.png")).shape == (h, w)
        for task in TASKS:
            assert np.asarray(Image.open(d / f"{task}_color.png")).shape == (h, w, 3)
        panel = np.asarray(Image.open(d / "panel.png"))
        assert panel.shape[1] > 5 * w  # input + 4 tasks side by side

    assert (
        main(
            [
                "predict",
                str(run_dir / "checkpoints" / "last.ckpt"),
                str(tmp_path / "gray.png"),
                "--out",
                str(tmp_path / "npy"),
                "--raw",
                "npy",
            ]
        )
        == 0
    )
    depth = np.load(tmp_path / "npy" / "gray" / "depth.npy")
    assert depth.shape == (45, 70) and depth.dtype == np.float32
