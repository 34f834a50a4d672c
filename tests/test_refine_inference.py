"""The refinement where main's inference runs it: ``mtcp.evaluate(refine=...)`` (the study's
refined configurations), ``predict_to_folder(refine=True)`` and ``mtcp predict --refine``."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

import mtcp
from mtcp.cli import main
from mtcp.errors import MtcpError
from mtcp.inference import Predictor
from mtcp.inference.folder import predict_to_folder
from mtcp.metrics.per_image import per_image_keys


@pytest.fixture(scope="module")
def predictor(trained_ckpt):
    return mtcp.load(trained_ckpt)


def test_evaluate_scores_refined_maps_and_keeps_per_image_values(predictor) -> None:
    plain = mtcp.evaluate(predictor, "synthetic", limit=3, targets=False, per_image=True)
    refined = mtcp.evaluate(predictor, "synthetic", limit=3, targets=False, refine=True)
    assert "refine" not in plain and refined["refine"] == {}
    assert "per_image" not in refined
    coherence = [r["metrics"]["coherence"]["depth_normal_mean"] for r in (refined, plain)]
    assert coherence[0] < coherence[1]
    assert refined["metrics"]["semseg"] == plain["metrics"]["semseg"]  # only depth, normals
    assert set(plain["per_image"]) == set(per_image_keys(predictor.tasks))
    assert {len(v) for v in plain["per_image"].values()} == {3}
    # the per-image depth RMSE of one image is the pooled RMSE of that image alone
    one = mtcp.evaluate(predictor, "synthetic", limit=1, targets=False)
    assert plain["per_image"]["depth/rmse"][0] == pytest.approx(
        one["metrics"]["depth"]["rmse"], rel=1e-6
    )


def test_evaluate_refine_needs_depth_and_normals() -> None:
    model = mtcp.create_model("mtcp_tiny", {"depth": 1}, channels=32, decoder_dims=[32, 64, 128])
    depth_only = Predictor(model, model.tasks, (64, 64))
    with pytest.raises(MtcpError, match="refine needs depth and normals"):
        mtcp.evaluate(depth_only, "synthetic", limit=1, refine=True)


def _rows(out):
    with open(out / "predictions.csv") as f:
        return list(csv.DictReader(f))


def test_predict_to_folder_and_cli_refine(trained_ckpt, predictor, tmp_path) -> None:
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(images / f"{i}.png")
    plain = predict_to_folder(predictor, [images], tmp_path / "plain", workers=0)
    refined = predict_to_folder(predictor, [images], tmp_path / "refined", workers=0, refine=True)
    assert plain.n_ok == refined.n_ok == 2
    for a, b in zip(_rows(tmp_path / "plain"), _rows(tmp_path / "refined")):
        assert float(b["depth_normal_deg"]) < float(a["depth_normal_deg"])
        assert a["review_score"] == b["review_score"]  # the network's outputs are scored
    normals = [np.load(tmp_path / d / "0" / "normals.npy") for d in ("plain", "refined")]
    assert not np.array_equal(*normals)
    out = tmp_path / "cli"
    assert main(["predict", str(trained_ckpt), str(images), "--out", str(out), "--refine"]) == 0
    assert [r["status"] for r in _rows(out)] == ["ok", "ok"]
    no_camera = Predictor(predictor.model, predictor.tasks, predictor.size)
    with pytest.raises(MtcpError, match="no camera"):
        predict_to_folder(no_camera, [images], tmp_path / "none", workers=0, refine=True)
