"""Review queue, decisions file, static report and the review page's HTTP API."""

from __future__ import annotations

import csv
import math
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtcp import viz
from mtcp.errors import MtcpError
from mtcp.inference.review_queue import DECISIONS_FILE, ReviewQueue, legends
from mtcp.inference.review_report import render_report, write_report
from mtcp.io import write_png


def make_prediction_folder(root: Path, n: int = 5, seed: int = 0) -> Path:
    """A folder in the layout ``mtcp predict`` writes: predictions.csv + one folder per image."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        folder = root / f"img{i}"
        folder.mkdir()
        semseg = rng.integers(0, 4, (24, 32))
        depth = rng.uniform(1.0, 4.0, (24, 32)).astype(np.float32)
        normals = np.dstack([np.zeros((24, 32, 2)), -np.ones((24, 32, 1))]).astype(np.float32)
        rgb = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        pictures = {"input": rgb}
        for task, value in (("semseg", semseg), ("depth", depth), ("normals", normals)):
            pictures[task] = viz.colorize(task, value, n_classes=40)
            write_png(folder / f"{task}_color.png", pictures[task])
        write_png(folder / "input.png", rgb)
        write_png(folder / "semseg.png", semseg.astype(np.uint8))
        write_png(folder / "depth_mm.png", np.round(depth * 1000).astype(np.uint16))
        write_png(folder / "panel.png", viz.panel(pictures))
        flagged = i in (1, 3)
        rows.append(
            {
                "input": f"in/img{i}.png",
                "output": str(folder),
                "status": "ok",
                "review_score": f"{[0.1, 0.9, 0.3, 0.7, 0.2][i % 5]:.3f}",
                "review": int(flagged),
                "reason": "depth and normals disagree" if flagged else "",
            }
        )
    rows.append({"input": "in/broken.png", "output": "", "status": "unreadable", "reason": "x"})
    with open(root / "predictions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), restval="")
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture
def pred_dir(tmp_path: Path) -> Path:
    return make_prediction_folder(tmp_path / "pred")


def test_queue_order_flagged_first_then_worst_score(pred_dir: Path) -> None:
    queue = ReviewQueue(pred_dir)
    assert [i.input for i in queue.ordered()] == [
        "in/img1.png",  # flagged, 0.9
        "in/img3.png",  # flagged, 0.7
        "in/img2.png",  # 0.3
        "in/img4.png",  # 0.2
        "in/img0.png",  # 0.1
    ]
    assert "in/broken.png" not in queue.items  # nothing to review for an unreadable input
    assert set(queue.items["in/img1.png"].pictures) >= {"input", "semseg", "depth", "normals"}


def test_decisions_saved_at_once_and_reloaded(pred_dir: Path) -> None:
    queue = ReviewQueue(pred_dir)
    queue.decide("in/img1.png", "accept")
    queue.decide("in/img3.png", "reject", note="wall is not a floor")
    with open(pred_dir / DECISIONS_FILE) as f:
        rows = list(csv.DictReader(f))
    assert [(r["input"], r["decision"], r["note"]) for r in rows] == [
        ("in/img1.png", "accept", ""),
        ("in/img3.png", "reject", "wall is not a floor"),
    ]
    again = ReviewQueue(pred_dir)
    assert again.items["in/img3.png"].note == "wall is not a floor"
    assert again.summary() == {
        "images": 5,
        "flagged": 2,
        "decided": 2,
        "accepted": 1,
        "rejected": 1,
    }
    with pytest.raises(MtcpError, match="expected one of"):
        queue.decide("in/img0.png", "maybe")
    with pytest.raises(MtcpError, match=r"no predicted image 'nope\.png'"):
        queue.decide("nope.png", "accept")


def test_missing_predictions_csv_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(MtcpError, match=r"no predictions\.csv.*mtcp predict"):
        ReviewQueue(tmp_path / "empty")
    with pytest.raises(MtcpError, match="no such folder"):
        ReviewQueue(tmp_path / "missing")


def test_review_csv_of_another_folder_is_refused(tmp_path: Path) -> None:
    a = make_prediction_folder(tmp_path / "a")
    b = make_prediction_folder(tmp_path / "b", n=2)
    ReviewQueue(a).decide("in/img4.png", "accept")
    shutil.copy(a / DECISIONS_FILE, b / DECISIONS_FILE)
    with pytest.raises(MtcpError, match=r"img4\.png.*belongs to another prediction folder"):
        ReviewQueue(b)


def test_moved_folder_still_finds_its_maps(pred_dir: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.move(pred_dir, moved)
    queue = ReviewQueue(moved)
    assert queue.items["in/img0.png"].folder == (moved / "img0").resolve()
    assert "depth" in queue.items["in/img0.png"].pictures


def test_legends_give_depth_range_in_metres_and_class_colours(pred_dir: Path) -> None:
    item = ReviewQueue(pred_dir).items["in/img0.png"]
    lg = legends(item)
    depth = np.asarray(Image.open(item.folder / "depth_mm.png")).astype(float)
    lo, hi = np.percentile(depth[depth > 0] / 1000, [2, 98])
    assert lg["depth"]["vmin"] == pytest.approx(lo) and lg["depth"]["vmax"] == pytest.approx(hi)
    assert 1.0 <= lo < hi <= 4.0 and len(lg["depth"]["stops"]) == 9
    palette = viz.class_palette(40)
    for row in lg["semseg"]:
        assert row["rgb"] == palette[row["id"]].tolist()  # colour of that id in the map
        assert row["name"] == f"class {row['id']}"
    assert sum(r["share"] for r in lg["semseg"]) == pytest.approx(1.0)


def test_report_lists_counts_and_flagged_images(pred_dir: Path) -> None:
    ReviewQueue(pred_dir).decide("in/img3.png", "reject", note="bad depth")
    path = write_report(pred_dir)
    text = path.read_text()
    assert "5 images predicted, 1 skipped, 2 flagged for review" in text
    assert text.count("<tr class='flagged'>") == 2
    assert text.index("in/img1.png") < text.index("in/img3.png")  # worst first
    assert "reject: bad depth" in text and "img1/panel.png" in text
    assert "data:image/png;base64," in text  # the score histogram
    assert render_report(pred_dir) == text  # write_report writes what render_report renders


def test_api_round_trip_and_file_guard(pred_dir: Path) -> None:
    from starlette.testclient import TestClient

    from mtcp.inference.review_server import create_app

    client = TestClient(create_app(pred_dir))
    assert "mtcp review" in client.get("/").text
    queue = client.get("/api/queue").json()
    assert queue["items"][0]["input"] == "in/img1.png"
    assert queue["items"][0]["legends"]["depth"]["unit"] == "m"
    r = client.post(
        "/api/decision", json={"input": "in/img1.png", "decision": "reject", "note": "n"}
    )
    assert r.json()["ok"] and r.json()["summary"]["rejected"] == 1
    assert (
        client.post("/api/decision", json={"input": "x", "decision": "accept"}).status_code == 400
    )
    png = queue["items"][0]["pictures"]["depth"]
    assert client.get(f"/files/{png}").content[:4] == b"\x89PNG"
    assert client.get("/files/../predictions.csv").status_code == 404
    assert client.get("/normals_key.png").content[:4] == b"\x89PNG"


def test_port_in_use_is_a_clear_error() -> None:
    from mtcp.inference.review_server import bind

    taken = bind(0)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(MtcpError, match=f"port {port} on 127.0.0.1 is already in use"):
            bind(port)
    finally:
        taken.close()
    sock = bind(0)
    assert sock.getsockname()[0] == "127.0.0.1" and sock.type == socket.SOCK_STREAM
    sock.close()


def test_cli_report_and_bad_folder(pred_dir: Path, tmp_path: Path, capsys) -> None:
    from mtcp.cli import main

    assert main(["review", str(pred_dir), "--report"]) == 0
    assert (pred_dir / "report.html").is_file()
    assert "report.html" in capsys.readouterr().out
    (tmp_path / "nothing").mkdir()
    assert main(["review", str(tmp_path / "nothing")]) == 2
    assert "no predictions.csv" in capsys.readouterr().err


def test_queue_over_real_predict_output(trained_ckpt: Path, tmp_path: Path) -> None:
    """``mtcp predict``'s own folder: the queue, the class names of the checkpoint, the report."""
    from mtcp.cli import main
    from mtcp.data.synthetic.scene import render_scene

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        write_png(images / f"s{i}.png", render_scene(7, i, (48, 64))["image"])
    out = tmp_path / "pred"
    assert main(["predict", str(trained_ckpt), str(images), "--out", str(out)]) == 0
    assert (out / "report.html").is_file()
    queue = ReviewQueue(out)
    assert len(queue) == 3 and all(not math.isnan(i.score) for i in queue)
    item = queue.ordered()[0]
    assert {"input", "semseg", "depth", "normals", "panel"} <= set(item.pictures)
    lg = legends(item)
    names = {row["name"] for row in lg["semseg"]}
    assert names and not any(n.startswith("class ") for n in names)  # from the checkpoint
    assert lg["depth"]["unit"] == "m" and lg["depth"]["vmin"] < lg["depth"]["vmax"]
