"""`mtcp synth`: every layout complete and readable with plain numpy/PIL/scipy; bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

import mtcp.data.layouts as layouts
import mtcp.data.synthetic.writer as writer
from mtcp.cli import main
from mtcp.data.layouts import PASCAL_CLASSES, PASCAL_PART_GROUPS, get_layout
from mtcp.data.synthetic import PERSON_PARTS, SYNTHETIC_CLASSES, render_scene
from mtcp.data.synthetic.writer import write_layout

SIZE = (60, 80)
N = 4


def _read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _ids(root: Path, layout: str) -> dict[str, list[str]]:
    lay = get_layout(layout)
    return {s: (root / lay.split.format(split=s)).read_text().split() for s in lay.splits}


def _parts_from_mat(path: Path, size: tuple[int, int]) -> np.ndarray:
    """human_parts map from a PASCAL-Part ``anno`` struct, by the rules of SPEC §2.2."""
    objects = scipy.io.loadmat(path)["anno"][0, 0]["objects"].ravel()
    people = [o for o in objects if int(o["class_ind"][0, 0]) == 15 and o["mask"].any()]
    if not people:
        return np.full(size, 255, dtype=np.uint8)
    out = np.zeros(size, dtype=np.uint8)
    for person in people:
        for part in person["parts"].ravel():
            out[part["mask"].astype(bool)] = PASCAL_PART_GROUPS[str(part["part_name"][0])]
    return out


@pytest.mark.parametrize("layout", ["nyud-mt", "nyudv2", "pascal-mt"])
def test_layout_is_complete_and_reads_back(tmp_path: Path, layout: str, capsys) -> None:
    out = tmp_path / "data"
    args = ["synth", "--out", str(out), "--layout", layout, "--n", str(N), "--size", "60x80"]
    assert main([*args, "--seed", "5"]) == 0
    assert str(out) in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temporary left

    splits = _ids(out, layout)
    assert len(splits["train"]) == 3 and len(splits["val"]) == 1
    ids = splits["train"] + splits["val"]
    assert ids == [f"s5_{i:06d}" for i in range(N)]
    lay = get_layout(layout)
    expected = {p for i in ids for p in lay.paths(i).values()}
    expected |= {lay.split.format(split=s) for s in lay.splits}
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == expected

    persons, others = 0, 0
    signs = np.asarray(lay.normals_signs, dtype=np.float32)  # the layout's declared frame
    assert lay.normals_signs == (1, 1, -1)  # NYUD and PASCAL files: z towards the camera
    for i, sid in enumerate(ids):
        raw = render_scene(5, i, SIZE, person_prob=writer.person_prob_for(lay, i))
        paths = {k: out / p for k, p in lay.paths(sid).items()}
        image = _read_png(paths["image"])
        assert image.shape == (*SIZE, 3) and image.dtype == np.uint8
        if paths["image"].suffix == ".png":
            np.testing.assert_array_equal(image, raw["image"])
        else:  # JPEG: lossy
            assert np.abs(image.astype(float) - raw["image"]).mean() < 6
        if layout == "pascal-mt":
            seg = _read_png(paths["semseg"])
            names = [PASCAL_CLASSES[v] for v in seg.ravel()]
            want = [writer.SYNTHETIC_TO_PASCAL[SYNTHETIC_CLASSES[v]] for v in raw["semseg"].ravel()]
            assert names == want
            np.testing.assert_array_equal(
                _parts_from_mat(paths["human_parts"], SIZE), raw["human_parts"]
            )
            objects = scipy.io.loadmat(paths["human_parts"])["anno"][0, 0]["objects"][0]
            inds = [int(o["class_ind"][0, 0]) for o in objects]
            persons += 15 in inds
            others += any(k != 15 for k in inds)
            for o in objects:
                if int(o["class_ind"][0, 0]) == 15:
                    names = {str(p["part_name"][0]) for p in o["parts"].ravel()}
                    assert names <= set(PERSON_PARTS) and names
                else:
                    assert o["parts"].size == 0
            sal = _read_png(paths["sal"]) / 255.0 > 0.5
            np.testing.assert_array_equal(sal, raw["sal"] > 0.5)
            normals = 2.0 * _read_png(paths["normals"]) / 255.0 - 1.0
            np.testing.assert_allclose(normals, raw["normals"] * signs, atol=1.0 / 255 + 1e-6)
            label_map = scipy.io.loadmat(paths["edge"])["LabelMap"]
            valid = layouts.pascal_normals_valid_classes()
            context = [valid[v] for v in label_map.ravel()]  # every id is an indoor class
            want = [
                writer.SYNTHETIC_TO_PASCAL_CONTEXT[SYNTHETIC_CLASSES[v]]
                for v in raw["semseg"].ravel()
            ]
            assert context == want
            continue
        seg = _read_png(paths["semseg"]).astype(int)
        np.testing.assert_array_equal(np.where(seg == 0, 255, seg - 1), raw["semseg"])
        depth = np.load(paths["depth"])
        assert depth.dtype == np.float32
        np.testing.assert_array_equal(depth, raw["depth"])
        if layout == "nyud-mt":
            np.testing.assert_array_equal(np.load(paths["normals"]), raw["normals"] * signs)
            np.testing.assert_array_equal(np.load(paths["edge"]), raw["edge"])
        else:
            normals = 2.0 * _read_png(paths["normals"]) / 255.0 - 1.0
            np.testing.assert_allclose(normals, raw["normals"] * signs, atol=1.0 / 255 + 1e-6)
            np.testing.assert_array_equal(_read_png(paths["edge"]) / 255.0, raw["edge"])
    if layout == "pascal-mt":
        assert persons >= 2 and persons < N and others >= 1


@pytest.mark.parametrize(
    "extra",
    [
        ["--size", "abc"],
        ["--size", "0x80"],
        ["--size", "-60x80"],
        ["--size", "20x20"],
        ["--size", "100000x80"],
        ["--n", "0"],
        ["--n", "-3"],
        ["--layout", "kitti"],
        ["--seed", "-1"],
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, extra: list[str], capsys) -> None:
    args = {"--out": str(tmp_path / "d"), "--layout": "nyudv2", "--n": "2", "--size": "60x80"}
    args.update(dict(zip(extra[::2], extra[1::2])))
    assert main(["synth", *[f"{k}={v}" for k, v in args.items()]]) == 2
    assert "error" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_non_empty_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["synth", "--out", str(out), "--layout", "nyud-mt", "--n", "2", "--size", "40x40"]
    assert main(args) == 2
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert main([*args, "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "gt_sets" / "val.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_empty_output_folder_is_used(tmp_path: Path) -> None:
    out = tmp_path / "d"
    out.mkdir()
    assert write_layout(out, "nyudv2", 1, (40, 48)) == out
    assert (out / "gt_sets" / "train.txt").read_text().split() == ["s0_000000"]
    assert (out / "gt_sets" / "val.txt").read_text() == ""


def test_failure_midway_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "old.txt").write_text("old")
    calls = []

    def failing(root, layout, scene):
        calls.append(scene)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return original(root, layout, scene)

    original = writer._write_sample
    monkeypatch.setattr(writer, "_write_sample", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        write_layout(out, "pascal-mt", 3, (40, 40), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert [p.name for p in out.iterdir()] == ["old.txt"]


def test_part_names_map_to_the_spec_groups() -> None:
    assert all(PASCAL_PART_GROUPS[name] == group for name, group in PERSON_PARTS.items())


def test_killed_run_leaves_a_temporary_that_the_next_run_removes(tmp_path: Path) -> None:
    # what a kill -9 during writing leaves: the hidden temporary folder of the output
    stale = tmp_path / ".d.tmp-abc123"
    (stale / "images").mkdir(parents=True)
    (stale / "images" / "x.png").write_bytes(b"partial")
    stale_old = tmp_path / ".d.tmp-old-1234abcd"  # killed between the two renames
    stale_old.mkdir()
    other = tmp_path / ".other.tmp-zzz"  # another output's temporary: not ours to delete
    other.mkdir()
    assert main(["synth", "--out", str(tmp_path / "d"), "--layout", "nyudv2", "--n", "1"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-zzz", "d"]
