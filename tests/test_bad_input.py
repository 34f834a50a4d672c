"""The bad inputs mtcp promises to handle: one row per case, each a clear :class:`MtcpError`.

Each row builds the bad input from a small synthetic dataset (``write_layout``), runs the call
a user would make and asserts that the message names the file (or folder), the task and what
was expected. Other parts of the project add their rows here.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from mtcp.data.build import build_dataset
from mtcp.data.synthetic import render_scene
from mtcp.data.synthetic.writer import write_layout
from mtcp.errors import MtcpError

SIZE = (40, 48)
N = 6


@pytest.fixture(scope="session")
def layouts_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad_input")
    for name in ("nyud-mt", "pascal-mt"):
        write_layout(root / name, name, N, SIZE, seed=3)
    return root


def _own_folder_with_misnamed_depth(root: Path) -> Path:
    """Own data declaring depth, whose depth folder is ``Depth/``."""
    for d in ("images", "semseg", "Depth"):
        (root / d).mkdir(parents=True)
    for i in range(3):
        raw = render_scene(1, i, SIZE)
        Image.fromarray(raw["image"]).save(root / f"images/im{i}.png")
        Image.fromarray(raw["semseg"]).save(root / f"semseg/im{i}.png")
        np.save(root / f"Depth/im{i}.npy", raw["depth"])
    config = {"tasks": ["semseg", "depth"], "classes": {"semseg": [f"c{k}" for k in range(12)]}}
    (root / "dataset.yaml").write_text(yaml.safe_dump(config))
    return root


def _nyud_nan_normals(root: Path) -> Path:
    for path in (root / "normals").glob("*.npy"):
        np.save(path, np.full((*SIZE, 3), np.nan, dtype=np.float32))
    return root


def _pascal_garbage_mat(root: Path) -> Path:
    sid = (root / "ImageSets/Context/train.txt").read_text().split()[0]
    (root / f"human_parts/{sid}.mat").write_bytes(b"\0" * 200)  # scipy: MatReadError
    return root


def _read_all(dataset) -> list:
    """Every sample, as an epoch reads them."""
    return [dataset[i] for i in range(len(dataset))]


# name, (layout to copy or None, how to break it), call, patterns the message must hold
CASES: list[tuple[str, str | None, Callable[[Path], Path], Callable[[Path], object], list]] = [
    (
        "requested task whose label folder is misnamed (Depth/ for depth/)",
        None,
        _own_folder_with_misnamed_depth,
        lambda root: build_dataset(root, "train", ["semseg", "depth"]),
        ["task 'depth' has no label", r"depth/im0\.png", "found Depth/ instead"],
    ),
    (
        "NYUD normals NaN everywhere",
        "nyud-mt",
        _nyud_nan_normals,
        lambda root: build_dataset(root, "train", val_fraction=0.25),
        ["task 'normals' has no valid label pixel", r"normals/s3_\d+\.npy", "expected labels"],
    ),
    (
        "garbage PASCAL-Part .mat, found mid-epoch",
        "pascal-mt",
        _pascal_garbage_mat,
        lambda root: _read_all(build_dataset(root, "train_full", ["human_parts"], verify="none")),
        [r"human_parts/s3_\d+\.mat", "cannot read human_parts .mat", "expected a MATLAB .mat"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_a_clear_error(case, layouts_dir: Path, tmp_path: Path) -> None:
    _, layout, breaks, call, patterns = case
    root = tmp_path / "data"
    if layout is not None:
        shutil.copytree(layouts_dir / layout, root)
    root = breaks(root)
    with pytest.raises(MtcpError) as info:
        call(root)
    message = str(info.value)
    assert str(root) in message
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"


def test_train_stops_before_training_on_a_task_without_labels(tmp_path: Path, capsys) -> None:
    from mtcp.cli import main

    root = _own_folder_with_misnamed_depth(tmp_path / "data")
    runs = tmp_path / "runs"
    args = [f"data.source={root}", "data.tasks=[semseg,depth]", f"run.root={runs}"]
    assert main(["train", *args, "model.pretrained=false"]) == 2
    err = capsys.readouterr().err
    assert "task 'depth' has no label" in err and "found Depth/ instead" in err
    assert not any(runs.rglob("*.ckpt"))  # failed at setup: nothing trained, nothing saved
