"""Metrics per group (mtcp.inference.groups) against hand-computed values, and bad groups
files."""

from __future__ import annotations

import math

import pytest
import torch

from mtcp.errors import MtcpError
from mtcp.inference.groups import GroupedMetrics, check_groups, describe_groups, read_groups
from mtcp.metrics import build_metrics

TASKS = {"semseg": 3, "depth": 1}


def _batch(ids: list[str], offsets: list[float], wrong: list[int]) -> tuple[dict, dict]:
    """Depth 2 m everywhere, predicted 2 + offset; semseg all class 0, ``wrong`` of the 10
    columns predicted as class 1."""
    n = len(ids)
    depth = torch.full((n, 1, 4, 10), 2.0)
    semseg = torch.zeros(n, 4, 10, dtype=torch.int64)
    logits = torch.zeros(n, 3, 4, 10)
    logits[:, 0] = 5.0
    for i, k in enumerate(wrong):
        logits[i, 1, :, :k] = 10.0
    out = {"depth": depth + torch.tensor(offsets).view(n, 1, 1, 1), "semseg": logits}
    return out, {"depth": depth, "semseg": semseg, "id": ids}


def test_per_group_metrics_equal_the_hand_computed_values():
    groups = {"a": "x", "b": "x", "c": "y", "d": "y"}
    grouped = GroupedMetrics(groups, lambda: build_metrics(TASKS, coherence=False))
    # two batches, groups mixed within each
    grouped.update(*_batch(["a", "c", "e"], [0.1, 1.0, 5.0], [0, 5, 10]))
    grouped.update(*_batch(["d", "b"], [0.0, 0.3], [2, 1]))
    report = grouped.compute()
    x, y = report["groups"]["x"], report["groups"]["y"]
    assert report["n_images"] == {"x": 2, "y": 2} and report["unassigned"] == 1
    assert x["depth"]["rmse"] == pytest.approx(math.sqrt((0.1**2 + 0.3**2) / 2), rel=1e-5)
    assert y["depth"]["rmse"] == pytest.approx(math.sqrt((1.0**2 + 0.0**2) / 2), rel=1e-5)
    # pixel accuracy: x misses 0 + 1 of 20 columns, y 5 + 2
    assert x["semseg"]["pixel_acc"] == pytest.approx(19 / 20)
    assert y["semseg"]["pixel_acc"] == pytest.approx(13 / 20)
    gap = report["gaps"]["depth"]["rmse"]
    assert gap["gap"] == pytest.approx(y["depth"]["rmse"] - x["depth"]["rmse"], rel=1e-6)
    assert (gap["max_group"], gap["min_group"]) == ("y", "x")
    assert report["gaps"]["semseg"]["pixel_acc"]["gap"] == pytest.approx(6 / 20)
    text = describe_groups(report, lambda cols: " ".join(cols))
    assert "x y gap" in text and "largest gap: depth/rmse" in text


def test_read_groups_and_bad_files(tmp_path):
    good = tmp_path / "groups.csv"
    good.write_text("id,group\na,x\nb,y\n")
    assert read_groups(good) == {"a": "x", "b": "y"}
    check_groups({"a": "x", "b": "y"}, ["a", "b", "c"], good)
    with pytest.raises(MtcpError, match=r"groups\.csv: 1 image id\(s\) not in the evaluated data"):
        check_groups({"a": "x", "zz": "y"}, ["a", "b"], good)
    cases = {
        "image,site\na,x\n": "expected a header",
        "id,group\na,x\na,y\n": "line 3: image 'a' is in group 'x' and 'y'",
        "id,group\n": "no rows",
        "id,group\na,\n": "line 2: empty id or group",
    }
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.csv"
        path.write_text(text)
        with pytest.raises(MtcpError, match=message) as info:
            read_groups(path)
        assert str(path) in str(info.value)
    with pytest.raises(MtcpError, match="no such file"):
        read_groups(tmp_path / "missing.csv")
