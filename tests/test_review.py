"""The review score (mtcp.inference.review): planted errors rank higher, calibration budget,
out-of-distribution inputs, and the calibration's round trip through checkpoint, safetensors
and ONNX deployments."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch.utils.data import default_collate

import mtcp
from mtcp.cli import main
from mtcp.data.synthetic import SyntheticScenes
from mtcp.errors import MtcpError
from mtcp.inference.input_stats import input_distance, input_features
from mtcp.inference.review import (
    review_parts,
    score_parts,
    threshold_for_rate,
)
from mtcp.inference.review_calibration import fit_calibration, ranking_stats
from mtcp.io import load_checkpoint, save_checkpoint
from mtcp.metrics.per_image import per_image_errors, per_image_gm_error

TASKS = {"semseg": 12, "depth": 1, "normals": 3, "edge": 1}
SIZE = (48, 64)


def _scenes(n: int, seed: int) -> dict:
    scenes = SyntheticScenes(n, size=SIZE, seed=seed, tasks=list(TASKS))
    return default_collate([scenes[i] for i in range(n)])


def _planted(batch: dict, alpha: torch.Tensor, seed: int) -> dict:
    """Outputs that are the labels, spoiled by a fraction ``alpha`` per image (0 = exact)."""
    g = torch.Generator().manual_seed(seed)
    a = alpha.view(-1, 1, 1, 1)
    n = len(alpha)
    onehot = torch.nn.functional.one_hot(batch["semseg"].clamp_max(11), 12).permute(0, 3, 1, 2)
    noise = torch.randn(n, 12, *SIZE, generator=g)
    semseg = onehot * 8.0 * (1 - a) + 3.0 * a * noise
    depth = batch["depth"] * (1 + 0.6 * a * torch.randn(n, 1, *SIZE, generator=g)).clamp_min(0.1)
    normals = batch["normals"] + 1.5 * a * torch.randn(n, 3, *SIZE, generator=g)
    edge = (batch["edge"] * 2 - 1) * 6.0 * (1 - a) + 3.0 * a * torch.randn(n, 1, *SIZE, generator=g)
    return {"semseg": semseg, "depth": depth, "normals": normals, "edge": edge}


def _parts(batch: dict, outputs: dict, calibration: dict | None = None) -> dict:
    parts = review_parts(outputs, TASKS, batch["intrinsics"])
    if calibration is not None:
        parts["input_distance"] = input_distance(input_features(batch["image"]), calibration)
    return parts


@pytest.fixture(scope="module")
def calibrated():
    batch = _scenes(30, seed=1)
    alpha = torch.linspace(0, 1, 30)[torch.randperm(30, generator=torch.Generator().manual_seed(0))]
    outputs = _planted(batch, alpha, seed=2)
    val = {
        "parts": _parts(batch, outputs),
        "features": input_features(batch["image"]),
        "gm_error": per_image_gm_error(per_image_errors(outputs, batch, TASKS)),
    }
    train_features = input_features(_scenes(150, seed=3)["image"])
    calibration = fit_calibration(val, train_features, rate=0.1)
    return calibration, batch, outputs


def test_planted_wrong_images_score_higher_than_clean_ones(calibrated):
    calibration, _, _ = calibrated
    batch = _scenes(20, seed=4)
    alpha = torch.cat([torch.zeros(10), torch.linspace(0.5, 1.0, 10)])
    outputs = _planted(batch, alpha, seed=5)
    reviews = score_parts(_parts(batch, outputs, calibration), calibration)
    scores = torch.tensor([r.score for r in reviews])
    assert all(r.calibrated and 0.0 <= r.score <= 1.0 for r in reviews)
    assert scores[10:].min() > scores[:10].max()
    error = per_image_gm_error(per_image_errors(outputs, batch, TASKS))
    assert spearmanr(scores, error).statistic > 0.7
    assert not any(r.flag for r in reviews[:10])
    # with the budget of half the calibration images (whose spoilage is uniform in [0, 1]),
    # the images spoilt by half or more are flagged, with their reasons
    halves = score_parts(_parts(batch, outputs, calibration), calibration, rate=0.5)
    assert not any(r.flag for r in halves[:10])
    assert sum(r.flag for r in halves[10:]) >= 8
    assert all(r.reasons and r.reasons != "high overall score" for r in halves if r.flag)
    # the regression learnt that disagreement and uncertainty predict the error
    assert sum(c > 0 for c in calibration["coef"]) >= 1
    assert all(c >= 0 for c in calibration["coef"])


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_flag_rate_on_the_calibration_images_equals_the_budget(calibrated, rate):
    calibration, batch, outputs = calibrated
    reviews = score_parts(_parts(batch, outputs, calibration), calibration, rate=rate)
    assert abs(sum(r.flag for r in reviews) - rate * len(reviews)) <= 1
    stored = score_parts(_parts(batch, outputs, calibration), calibration)  # review.rate = 0.1
    assert abs(sum(r.flag for r in stored) - 3) <= 1


def test_explicit_threshold_and_threshold_for_rate():
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    t = threshold_for_rate(scores, 0.2)
    assert 0.9 > t > 0.8 and sum(s > t for s in scores) == 2
    assert sum(s > threshold_for_rate(scores, 0.0) for s in scores) == 0
    with pytest.raises(MtcpError, match="review rate"):
        threshold_for_rate(scores, 1.5)


def test_out_of_distribution_input_is_flagged_with_its_reason(calibrated):
    calibration, batch, _ = calibrated
    image = batch["image"][:2].clone()
    image[1] = torch.randn_like(image[1]) * 3  # noise, nothing like a rendered room
    exact = {t: v[:2] for t, v in _planted(batch, torch.zeros(30), seed=6).items()}
    parts = review_parts(exact, TASKS, batch["intrinsics"][:2])
    parts["input_distance"] = input_distance(input_features(image), calibration)
    clean, noisy = score_parts(parts, calibration)
    assert not clean.flag
    assert noisy.flag and "unlike the training images" in noisy.reasons
    assert noisy.score > clean.score


def test_uncalibrated_review_says_so(calibrated):
    _, batch, outputs = calibrated
    reviews = score_parts(_parts(batch, outputs), None)
    assert not any(r.calibrated for r in reviews)
    assert all(r.reasons.startswith("uncalibrated") for r in reviews if r.flag)
    assert all(math.isnan(r.threshold) for r in reviews)


def test_ranking_stats_by_hand():
    score = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    error = torch.tensor([1.0, 2, 3, 4, 5, 6, 7, 8, 10, 9])
    flags = score > 0.75
    stats = ranking_stats(score, error, flags)
    assert stats["auroc_worst20"] == pytest.approx(1.0)  # worst two (10, 9) have top scores
    assert stats["spearman"] == pytest.approx(1 - 6 * 2 / (10 * 99))
    assert stats["fraction_flagged"] == pytest.approx(0.3)
    assert stats["mean_error_flagged"] == pytest.approx(9.0)
    assert stats["error_ratio"] == pytest.approx(9.0 / 4.0)
    assert stats["oracle_error_ratio"] == pytest.approx(9.0 / 4.0)  # top three are the worst
    stats = ranking_stats(score, error, score < 0.25)  # the two best flagged
    assert stats["error_ratio"] == pytest.approx(1.5 / (52 / 8))
    assert stats["oracle_error_ratio"] == pytest.approx(9.5 / (36 / 8))


# --- end to end: mtcp train calibrates; the calibration travels with the model -------------

TINY = [
    "data.size=64x64",
    "data.synthetic_scenes=40",
    "data.val_fraction=0.25",
    "data.batch_size=5",
    "model.options={channels: 32, decoder_dims: [32, 64, 128]}",
    "optim.lr=2e-3",
    "trainer.max_epochs=1",
    "trainer.progress_bar=false",
    "eval.picture_samples=1",
]


@pytest.fixture(scope="module")
def best_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert main(["train", *TINY, f"run.root={root}", "review.rate=0.2"]) == 0
    return root / "synthetic_tiny" / "version_0" / "checkpoints" / "best.ckpt"


def _photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)


def test_train_stores_the_calibration_and_it_round_trips(best_ckpt, tmp_path, capsys):
    stored = load_checkpoint(best_ckpt)["mtcp"]["review"]
    assert stored["rate"] == 0.2 and len(stored["val_scores"]) == 10
    predictor = mtcp.load(best_ckpt)
    assert predictor.review_calibration == stored
    image = _photo()
    maps = predictor.predict(image, review=True, probabilities=True)
    reference = maps["review"]
    assert reference.calibrated
    probs = maps["semseg_probs"]
    assert probs.shape == (50, 70, predictor.tasks["semseg"])
    assert np.allclose(probs.sum(-1), 1, atol=1e-5)
    assert np.array_equal(probs.argmax(-1), maps["semseg"])
    for fmt in ("safetensors", "onnx"):
        out = tmp_path / f"model.{fmt}"
        assert main(["export", str(best_ckpt), "--format", fmt, "--out", str(out)]) == 0
        deployed = mtcp.load(out)
        assert deployed.review_calibration == stored, fmt
        review = deployed.predict(image, review=True)["review"]
        assert review.calibrated and review.flag == reference.flag
        assert review.score == pytest.approx(reference.score, abs=1e-3), fmt
        assert review.threshold == pytest.approx(reference.threshold)


def test_predict_cli_uses_the_calibration_and_review_rate(best_ckpt, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    scenes = SyntheticScenes(6, size=(64, 64), seed=9, tasks=["semseg"])
    for i in range(6):
        rgb = scenes[i]["image"] * torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1) + torch.tensor(
            [0.485, 0.456, 0.406]
        ).view(3, 1, 1)
        Image.fromarray((rgb.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(
            folder / f"s{i}.png"
        )

    def flagged(*extra: str) -> list[dict]:
        out = tmp_path / f"out{len(extra)}{'_'.join(extra)}"
        assert main(["predict", str(best_ckpt), str(folder), "--out", str(out), *extra]) == 0
        with open(out / "predictions.csv") as f:
            return list(csv.DictReader(f))

    everything = flagged("--review-threshold", "0")
    assert all(r["review"] == "1" and r["reason"] for r in everything)
    nothing = flagged("--review-threshold", "1")
    assert all(r["review"] == "0" for r in nothing)
    rows = flagged("--review-rate", "0.5")
    assert {r["review"] for r in rows} <= {"0", "1"}
    assert all(0.0 <= float(r["review_score"]) <= 1.0 for r in rows)
    capsys.readouterr()
    # an older, uncalibrated checkpoint still works and says so
    old = tmp_path / "old.ckpt"
    ckpt = load_checkpoint(best_ckpt)
    del ckpt["mtcp"]["review"]
    save_checkpoint(ckpt, old)
    out = tmp_path / "old_out"
    assert main(["predict", str(old), str(folder), "--out", str(out)]) == 0
    assert "uncalibrated" in capsys.readouterr().out
    assert mtcp.load(old).predict(_photo(), review=True)["review"].calibrated is False
    # ... and can be calibrated afterwards: the same calibration as at the end of training
    from mtcp.engine.calibration import calibrate_checkpoint

    calibrate_checkpoint(old)
    again = load_checkpoint(old)["mtcp"]["review"]
    stored = load_checkpoint(best_ckpt)["mtcp"]["review"]
    assert again["rate"] == 0.2 and again["parts"] == stored["parts"]
    assert again["val_scores"] == pytest.approx(stored["val_scores"], abs=1e-6)
    assert mtcp.load(old).predict(_photo(), review=True)["review"].calibrated


def test_evaluate_reports_the_review_score_and_groups(best_ckpt, tmp_path, capsys):
    import json

    from mtcp.data.build import build_dataset

    test = build_dataset("synthetic", "test", list(TASKS), recipe=None, size=(64, 64), n=6)
    ids = [test[i]["id"] for i in range(6)]
    groups = tmp_path / "groups.csv"
    groups.write_text("id,group\n" + "".join(f"{i},{'ab'[k % 2]}\n" for k, i in enumerate(ids)))
    out = tmp_path / "eval.json"
    args = ["evaluate", str(best_ckpt), "--scenes", "6", "--out", str(out), "--groups", str(groups)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    review = report["review"]
    assert review["calibrated"] and review["n"] == 6
    assert 0 <= review["fraction_flagged"] <= 1 and 0 <= review["auroc_worst20"] <= 1
    assert set(review["corruptions"]["flagged"]) == {
        "noise",
        "blur",
        "low_light",
        "jpeg",
        "occlusion",
    }
    assert review["photos"]["n"] == 7  # scikit-image's sample photographs
    assert "AUROC for the worst 20%" in printed and "corruptions flagged" in printed
    per_group = report["groups"]
    assert per_group["n_images"] == {"a": 3, "b": 3} and per_group["unassigned"] == 0
    gap = per_group["gaps"]["depth"]["rmse"]
    rmse = {g: per_group["groups"][g]["depth"]["rmse"] for g in "ab"}
    assert gap["gap"] == pytest.approx(abs(rmse["a"] - rmse["b"]))
    # pooled over both groups' pixels, the rmse is the overall one
    n_pix = {g: per_group["groups"][g]["depth"]["n_pixels"] for g in "ab"}
    pooled = math.sqrt(sum(rmse[g] ** 2 * n_pix[g] for g in "ab") / sum(n_pix.values()))
    assert pooled == pytest.approx(report["metrics"]["depth"]["rmse"], rel=1e-6)
    assert "largest gap:" in printed
    # a groups file naming images the data does not hold is refused, naming file and ids
    groups.write_text(f"id,group\n{ids[0]},a\nnot_a_scene,b\n")
    assert main([*args, "--review-checks", "none"]) != 0
    err = capsys.readouterr().err
    assert str(groups) in err and "not_a_scene" in err
