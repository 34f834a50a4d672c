"""``mtcp data-report``: counts, coverage, distributions, planted duplicates and missing classes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtcp.cli import main
from mtcp.data.report import data_report
from mtcp.data.synthetic.writer import write_layout

SIZE = (48, 64)


@pytest.fixture(scope="module")
def nyud(tmp_path_factory) -> Path:
    return write_layout(tmp_path_factory.mktemp("report") / "nyud", "nyud-mt", 8, SIZE, seed=2)


def _ids(root: Path, split: str) -> list[str]:
    return (root / f"gt_sets/{split}.txt").read_text().split()


def test_counts_coverage_and_distributions(nyud):
    report = data_report(nyud)
    assert report["layout"] == "NYUD_MT" and report["missing_splits"] == []
    train, test = report["splits"]["train_full"], report["splits"]["test"]
    assert (train["images"], test["images"]) == (6, 2)
    assert set(train["tasks"]) == {"semseg", "depth", "normals", "edge"}
    for entry in train["tasks"].values():
        assert entry["labelled"] == 6 and entry["coverage"] == 1.0
    semseg = train["tasks"]["semseg"]["class_share"]
    assert len(semseg) == 40 and sum(semseg.values()) == pytest.approx(1.0)
    # hand count of the class shares of the training PNGs (0 = void, v = class v - 1)
    stored = np.concatenate(
        [
            np.asarray(Image.open(nyud / f"segmentation/{i}.png")).ravel()
            for i in _ids(nyud, "train")
        ]
    )
    stored = stored[stored > 0]
    assert semseg["class 2"] == pytest.approx(np.mean(stored == 3))
    depth = train["tasks"]["depth"]
    assert sum(depth["depth_share"].values()) == pytest.approx(1.0)
    d = np.concatenate([np.load(nyud / f"depth/{i}.npy").ravel() for i in _ids(nyud, "train")])
    assert depth["depth_quantiles_m"]["max"] == pytest.approx(d.max())
    normals = train["tasks"]["normals"]
    assert sum(normals["orientation_share"].values()) == pytest.approx(1.0)
    assert normals["orientation_share"]["floor-like"] > 0.05  # every room has a floor
    assert report["duplicates"] == []


def test_finds_a_planted_duplicate_and_a_planted_missing_class(nyud, tmp_path, capsys):
    clean = data_report(nyud)
    root = Path(shutil.copytree(nyud, tmp_path / "planted"))
    # duplicate: a training image (and its labels) listed in the test split under another id
    source = _ids(root, "train")[1]
    for folder, ext in (("images", "jpg"), ("segmentation", "png"), ("depth", "npy")):
        shutil.copy(root / f"{folder}/{source}.{ext}", root / f"{folder}/dup.{ext}")
    for folder in ("normals", "edge"):
        shutil.copy(root / f"{folder}/{source}.npy", root / f"{folder}/dup.npy")
    with (root / "gt_sets/val.txt").open("a") as f:
        f.write("dup\n")
    # missing class: the most frequent test class not already flagged, removed from train
    shares = clean["splits"]["test"]["tasks"]["semseg"]["class_share"]
    flagged = " ".join(clean["warnings"])
    name = max((k for k in shares if f"'{k}'" not in flagged), key=shares.get)
    cls = int(name.split()[-1])
    for sid in _ids(root, "train"):
        png = root / f"segmentation/{sid}.png"
        stored = np.asarray(Image.open(png)).copy()
        stored[stored == cls + 1] = 0  # → void
        Image.fromarray(stored).save(png)
    shutil.copy(root / f"segmentation/{source}.png", root / "segmentation/dup.png")

    report = data_report(root)
    assert report["duplicates"] == [{"train_full": [source], "test": ["dup"]}]
    assert any(w.startswith("identical images") and "dup" in w for w in report["warnings"])
    assert report["splits"]["train_full"]["tasks"]["semseg"]["class_share"][name] == 0
    missing = [w for w in report["warnings"] if f"class '{name}'" in w]
    assert len(missing) == 1 and "0.000% of the training pixels" in missing[0]

    out = tmp_path / "report.json"
    assert main(["data-report", str(root), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"class '{name}'" in printed and "identical images" in printed
    assert json.loads(out.read_text())["duplicates"] == report["duplicates"]
