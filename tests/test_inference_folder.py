"""``predict_to_folder`` (``mtcp predict``): never destroys a user's files, one failing image
never stops the others, decoding workers and writing threads give the files of work in turn,
the CSV's coherence is the review's (network size), ``--outputs maps`` writes the raw values
only."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from PIL import Image

import mtcp
import mtcp.inference.folder as folder_module
from mtcp.cli import main
from mtcp.errors import MtcpError
from mtcp.inference.folder import predict_to_folder
from mtcp.inference.predictor import Predictor
from mtcp.io import read_json


@pytest.fixture(scope="module")
def predictor(trained_ckpt):
    return mtcp.load(trained_ckpt)


def _images(root, sizes):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"im{i}.png")
    return root


def _rows(out):
    with open(out / "predictions.csv") as f:
        return list(csv.DictReader(f))


def test_refuses_a_non_empty_folder_and_never_deletes_user_files(
    trained_ckpt, predictor, tmp_path, capsys
):
    images = _images(tmp_path / "in", [(20, 30)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "predictions.csv").write_text("my own table\n")
    assert main(["predict", str(trained_ckpt), str(images), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "not empty" in err and "--overwrite" in err
    assert (out / "predictions.csv").read_text() == "my own table\n"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "predictions.csv"]
    with pytest.raises(MtcpError, match="not empty"):
        predict_to_folder(predictor, [images], out)

    argv = ["predict", str(trained_ckpt), str(images), "--out", str(out), "--overwrite"]
    assert main(argv) == 0
    assert (out / "notes.txt").read_text() == "mine"  # not ours: left alone
    assert [r["status"] for r in _rows(out)] == ["ok"]
    assert (out / "im0" / "panel.png").is_file()


def test_one_failing_image_is_listed_and_the_others_go_on(predictor, tmp_path, monkeypatch):
    sizes = [(20, 30), (13, 17), (1, 1), (1, 500), (40, 25)]
    images = _images(tmp_path / "in", sizes)
    (images / "zz_broken.png").write_bytes(b"\x89PNG not really")
    real = folder_module.write_outputs

    def fails_on_13_rows(folder, rgb, *args):
        if rgb.shape[0] == 13:
            raise ZeroDivisionError("simulated failure")
        return real(folder, rgb, *args)

    monkeypatch.setattr(folder_module, "write_outputs", fails_on_13_rows)
    skipped = []
    summary = predict_to_folder(
        predictor, [images], tmp_path / "out", batch_size=2, workers=0, report=skipped.append
    )
    rows = {r["input"].rsplit("/", 1)[-1]: r for r in _rows(tmp_path / "out")}
    assert list(rows) == ["im0.png", "im1.png", "im2.png", "im3.png", "im4.png", "zz_broken.png"]
    assert rows["im1.png"]["status"] == "failed"
    assert "ZeroDivisionError: simulated failure" in rows["im1.png"]["reason"]
    assert rows["zz_broken.png"]["status"] == "unreadable"
    assert "zz_broken.png" in rows["zz_broken.png"]["reason"]
    for name in ("im0.png", "im4.png"):
        assert rows[name]["status"] == "ok"
    # tiny images are predicted or listed with their error, never abort the batch
    for name in ("im2.png", "im3.png"):
        assert rows[name]["status"] == "ok" or rows[name]["reason"]
    assert summary.n_ok + summary.n_failed == 6
    assert len(skipped) == summary.n_failed and any("im1.png" in s for s in skipped)
    assert not (tmp_path / "out" / "im1").exists()


def test_workers_and_writer_threads_give_the_files_of_work_in_turn(predictor, tmp_path, capsys):
    images = _images(tmp_path / "in", [(20, 30), (33, 21), (20, 30), (50, 64), (7, 9)])
    a = predict_to_folder(
        predictor, [images], tmp_path / "a", raw="npy", workers=0, writer_threads=0
    )
    b = predict_to_folder(
        predictor,
        [images],
        tmp_path / "b",
        raw="npy",
        workers=2,
        writer_threads=3,
        batch_size=3,
        progress=True,
    )
    assert "img/s" in capsys.readouterr().err  # the progress bar's rate
    assert a.n_ok == b.n_ok == 5
    rows_a, rows_b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    for ra, rb in zip(rows_a, rows_b):
        # batches of other compositions round differently in the last digits
        for key in ("depth_normal_deg", "boundary_f", "review_score"):
            va, vb = float(ra.pop(key)), float(rb.pop(key))
            assert va == pytest.approx(vb, abs=1e-3, nan_ok=True)
        ra["output"], rb["output"] = (
            ra["output"].rsplit("/", 1)[-1],
            rb["output"].rsplit("/", 1)[-1],
        )
        assert ra == rb
    for i in range(5):
        for task in predictor.tasks:
            x = np.load(tmp_path / "a" / f"im{i}" / f"{task}.npy")
            y = np.load(tmp_path / "b" / f"im{i}" / f"{task}.npy")
            assert x.shape[:2] == (int(a.rows[i]["height"]), int(a.rows[i]["width"]))
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_csv_coherence_is_the_review_s_at_the_network_size(predictor, tmp_path) -> None:
    images = _images(tmp_path / "in", [(48, 64), (30, 90)])
    predict_to_folder(predictor, [images], tmp_path / "out", workers=0)
    for i, row in enumerate(_rows(tmp_path / "out")):
        rgb = np.asarray(Image.open(images / f"im{i}.png"))
        parts = predictor.predict(rgb, review=True)["review"].parts
        assert float(row["depth_normal_deg"]) == pytest.approx(parts["depth_normal_deg"], abs=1e-3)
        f = 1.0 - parts["boundary_disagreement"]
        assert float(row["boundary_f"]) == pytest.approx(f, abs=1e-3, nan_ok=True)


def test_outputs_maps_writes_the_raw_values_only(trained_ckpt, predictor, tmp_path) -> None:
    images = _images(tmp_path / "in", [(20, 30), (33, 21)])
    full = predict_to_folder(predictor, [images], tmp_path / "all", workers=0)
    out = tmp_path / "maps"
    predict_to_folder(predictor, [images], out, workers=0)  # pictures of an earlier run
    argv = ["predict", str(trained_ckpt), str(images), "--out", str(out), "--outputs", "maps"]
    assert main([*argv, "--overwrite"]) == 0
    raw = {"semseg.png", "depth_mm.png", "normals.npy", "edge_prob.png", "legend.json"}
    raw &= {p.name for p in (tmp_path / "all" / "im0").iterdir()}
    assert len(raw) >= 3  # the trained model's tasks
    for i in range(2):
        assert {p.name for p in (out / f"im{i}").iterdir()} == raw
        for name in raw - {"legend.json"}:
            a, b = (tmp_path / "all" / f"im{i}" / name).read_bytes(), (out / f"im{i}" / name)
            assert a == b.read_bytes()
    assert "depth" not in read_json(out / "im0" / "legend.json")  # no picture scale
    assert [float(r["review_score"]) for r in _rows(out)] == [r["review_score"] for r in full.rows]
    with pytest.raises(MtcpError, match="outputs 'few'"):
        predict_to_folder(predictor, [images], tmp_path / "x", outputs="few")


def test_csv_coherence_without_a_camera(predictor, tmp_path) -> None:
    no_camera = Predictor(predictor.model, predictor.tasks, predictor.size)
    predict_to_folder(no_camera, [_images(tmp_path / "in", [(48, 64)])], tmp_path / "o", workers=0)
    (row,) = _rows(tmp_path / "o")
    assert row["status"] == "ok" and math.isnan(float(row["depth_normal_deg"]))
    assert 0.0 <= float(row["boundary_f"]) <= 1.0 or math.isnan(float(row["boundary_f"]))


def test_files_are_flushed_to_disk_once_before_the_csv(predictor, tmp_path, monkeypatch) -> None:
    calls = []
    real_csv = folder_module.write_csv
    monkeypatch.setattr(folder_module, "flush_to_disk", lambda: calls.append("flush"))
    monkeypatch.setattr(folder_module, "write_csv", lambda *a: calls.append("csv") or real_csv(*a))
    images = _images(tmp_path / "in", [(20, 30), (33, 21), (20, 30)])
    predict_to_folder(predictor, [images], tmp_path / "out", workers=0, batch_size=2)
    assert calls == ["flush", "csv"]
