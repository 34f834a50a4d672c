"""Dataset readers on fixtures written by ``write_layout`` (the code behind ``mtcp synth``)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import yaml
from PIL import Image

from mtcp.data import layouts
from mtcp.data import transforms as T
from mtcp.data.build import build_dataset, carve_validation, detect_layout
from mtcp.data.layouts import get_layout
from mtcp.data.nyud import NYUDDataset, NYUDv2Dataset
from mtcp.data.pascal import PascalDataset, human_parts_from_anno, label_boundaries
from mtcp.data.synthetic import render_scene, render_scene_full
from mtcp.data.synthetic.writer import encode_pascal_semseg, person_prob_for, write_layout
from mtcp.errors import MtcpError
from mtcp.geometry import nyud_intrinsics
from test_transforms import coherence_error

SIZE = (60, 80)
N = 5


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    names = ("nyud-mt", "nyudv2", "pascal-mt")  # the spellings of `mtcp synth --layout`
    return {name: write_layout(root / name, name, N, SIZE, seed=0) for name in names}


def written(layout: str, index: int) -> dict:
    """The raw synthetic scene that ``write_layout`` encoded as sample ``index``."""
    lay = get_layout(layout)
    return render_scene_full(0, index, SIZE, person_prob=person_prob_for(lay, index)).sample


@pytest.fixture
def nyud_copy(fixtures, tmp_path) -> Path:
    return Path(shutil.copytree(fixtures["nyud-mt"], tmp_path / "nyud"))


def test_layouts_are_detected_and_logged(fixtures, caplog):
    assert detect_layout(fixtures["nyud-mt"]) == "NYUD_MT"
    assert detect_layout(fixtures["nyudv2"]) == "NYUDv2"
    assert detect_layout(fixtures["pascal-mt"]) == "PASCAL_MT"
    with caplog.at_level(logging.INFO):
        build_dataset(fixtures["nyudv2"], "test")
    assert "detected the NYUDv2 layout" in caplog.text
    with pytest.raises(MtcpError, match="unknown dataset layout"):
        detect_layout(fixtures["nyud-mt"] / "depth")


def test_nyud_mt_values_match_what_was_written(fixtures):
    root = fixtures["nyud-mt"]
    ds = NYUDDataset(root, "train", ["semseg", "depth", "normals", "edge"])
    assert ds.tasks["semseg"] == 40
    for index in (0, 2):
        ref, raw = written("nyud-mt", index), ds.read(ds.ids[index])
        assert raw["id"] == ref["id"]
        np.testing.assert_array_equal(raw["semseg"], ref["semseg"])
        np.testing.assert_array_equal(raw["depth"], ref["depth"])
        np.testing.assert_array_equal(raw["normals"], ref["normals"])
        np.testing.assert_array_equal(raw["edge"], ref["edge"])
        # JPEG: pixels equal the decoded file, and close to the rendered image
        with Image.open(root / f"images/{ref['id']}.jpg") as img:
            np.testing.assert_array_equal(raw["image"], np.asarray(img))
        assert np.abs(raw["image"].astype(int) - ref["image"]).mean() < 6
        np.testing.assert_allclose(raw["intrinsics"], nyud_intrinsics(SIZE))
    sample = ds[0]
    assert sample["semseg"].shape == SIZE and sample["depth"].shape == (1, *SIZE)
    assert sample["orig_size"].tolist() == list(SIZE)


def test_nyud_class_shift_and_void(nyud_copy):
    ds = NYUDDataset(nyud_copy, "train", ["semseg"])
    sid = ds.ids[1]
    png = nyud_copy / f"segmentation/{sid}.png"
    stored = np.asarray(Image.open(png)).copy()
    stored[:5, :7] = 0  # void
    stored[10, 10] = 40  # last class
    Image.fromarray(stored).save(png)
    raw = ds.read(sid)
    assert (raw["semseg"][:5, :7] == 255).all()
    assert raw["semseg"][10, 10] == 39
    rest = stored > 0
    np.testing.assert_array_equal(raw["semseg"][rest], stored[rest] - 1)


def test_nyudv2_png_normals_decoded(fixtures):
    ds = NYUDv2Dataset(fixtures["nyudv2"], "val", ["semseg", "depth", "normals", "edge"])
    ref, raw = written("nyudv2", N - 1), ds.read(ds.ids[0])
    np.testing.assert_array_equal(raw["image"], ref["image"])  # PNG is lossless
    np.testing.assert_array_equal(raw["semseg"], ref["semseg"])
    np.testing.assert_array_equal(raw["edge"], ref["edge"])
    cos = np.sum(raw["normals"] * ref["normals"], axis=-1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1.0  # 8-bit quantisation
    np.testing.assert_allclose(np.linalg.norm(raw["normals"], axis=-1), 1, atol=1e-5)


def test_pascal_values_match_what_was_written(fixtures):
    ds = PascalDataset(fixtures["pascal-mt"], "train", ["semseg", "human_parts", "sal", "edge"])
    assert ds.tasks == {"semseg": 21, "human_parts": 7, "sal": 1, "edge": 1}
    for index, sid in enumerate(ds.ids):
        ref, raw = written("pascal-mt", index), ds.read(sid)
        np.testing.assert_array_equal(raw["semseg"], encode_pascal_semseg(ref["semseg"]))
        np.testing.assert_array_equal(raw["sal"], ref["sal"] > 0.5)
        np.testing.assert_array_equal(raw["human_parts"], ref["human_parts"])
        assert np.isnan(raw["intrinsics"]).all()
        # boundaries exactly where the written LabelMap (semseg + 1) changes, one pixel thin
        sem = ref["semseg"]
        horizontal = sem[:, :-1] != sem[:, 1:]
        assert (raw["edge"][:, :-1].astype(bool) | ~horizontal).all()
        e = raw["edge"].astype(bool)
        changes = np.zeros_like(e)
        changes[:, :-1] |= horizontal
        changes[:-1] |= sem[:-1] != sem[1:]
        np.testing.assert_array_equal(e, changes)
    no_person = ds.read(ds.ids[2])  # every third scene has no person
    assert (no_person["human_parts"] == 255).all()
    assert (ds.read(ds.ids[0])["human_parts"] < 7).all()


def _anno(objects: list[tuple[int, np.ndarray, list[tuple[str, np.ndarray]]]]) -> dict:
    fields = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
    arr = np.zeros((1, len(objects)), dtype=fields)
    for j, (cls, mask, parts) in enumerate(objects):
        if parts:
            p = np.zeros((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
            for k, part in enumerate(parts):
                p[0, k] = part
        else:
            p = np.zeros((0, 0))
        arr[0, j] = ("person" if cls == 15 else "chair", np.array([[cls]], float), mask, p)
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = ("x", arr)
    return {"anno": anno}


def _load_anno(tmp_path: Path, objects) -> object:
    path = tmp_path / "parts.mat"
    scipy.io.savemat(path, _anno(objects))
    return scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)["anno"], path


def test_human_part_groups_from_mat(tmp_path):
    h, w = 8, 10
    box = np.zeros((h, w), np.uint8)

    def m(y0, y1, x0, x1):
        out = box.copy()
        out[y0:y1, x0:x1] = 1
        return out

    person1 = m(0, 8, 0, 5)
    person2 = m(0, 8, 4, 10)
    anno, path = _load_anno(
        tmp_path,
        [
            (9, m(0, 2, 0, 10), []),  # a chair: not a person
            (
                15,
                person1,
                [("hair", m(0, 1, 0, 5)), ("lhand", m(1, 3, 0, 5)), ("rfoot", m(6, 8, 0, 2))],
            ),
            (15, np.zeros((h, w), np.uint8), [("torso", m(0, 8, 0, 10))]),  # empty: not counted
            (15, person2, [("neck", m(2, 4, 4, 10)), ("ruleg", m(2, 3, 4, 6))]),
        ],
    )
    parts = human_parts_from_anno(anno, (h, w), path)
    assert parts[0, 0] == 1  # hair → head
    assert parts[1, 0] == 4  # lhand → lower arm
    assert parts[7, 1] == 6  # rfoot → lower leg
    assert parts[2, 4] == 5  # later part (ruleg of person 2) overwrites person 1's lhand
    assert parts[3, 7] == 2  # neck → torso
    assert parts[5, 3] == 0  # person pixel outside every part: background
    assert parts[5, 9] == 0  # the empty person's torso was not painted
    assert set(np.unique(parts)) <= set(range(7))
    only_chair, _ = _load_anno(tmp_path, [(9, m(0, 4, 0, 4), [])])
    assert (human_parts_from_anno(only_chair, (h, w), path) == 255).all()
    bad, _ = _load_anno(tmp_path, [(15, person1, [("tail", person1)])])
    with pytest.raises(MtcpError, match="unknown person part 'tail'"):
        human_parts_from_anno(bad, (h, w), path)


def test_label_boundaries_thin():
    lab = np.zeros((6, 6), np.uint16)
    lab[:, 3:] = 2
    e = label_boundaries(lab)
    assert e[:, 2].all() and e.sum() == 6


def test_coherence_after_recipe_on_loaded_sample(fixtures):
    ds = NYUDDataset(fixtures["nyud-mt"], "train", ["depth", "normals"])
    raw = ds.read(ds.ids[0])
    out = T.scale_rotate(T.hflip(raw), 1.2, 15.0)
    ang, count = coherence_error(out)
    assert count > 200 and np.median(ang) < 3.0


def test_splits_carved_from_train_deterministically(fixtures):
    root = fixtures["nyud-mt"]
    full = build_dataset(root, "train_full").ids
    train = build_dataset(root, "train", val_fraction=0.25, seed=3).ids
    val = build_dataset(root, "val", val_fraction=0.25, seed=3).ids
    test = build_dataset(root, "test").ids
    assert sorted(train + val) == sorted(full) and not set(train) & set(val)
    assert not set(test) & set(full)
    assert val == build_dataset(root, "val", val_fraction=0.25, seed=3).ids
    ids = list(range(100))
    assert carve_validation(ids, 0.1, 0)[1] != carve_validation(ids, 0.1, 1)[1]
    assert len(carve_validation(ids, 0.1, 0)[1]) == 10
    with pytest.raises(MtcpError, match="val_fraction"):
        build_dataset(root, "val", val_fraction=0)


def test_recipe_sizes_and_pad(fixtures):
    ds = build_dataset(fixtures["pascal-mt"], "train", recipe="auto", size=(64, 64))
    assert ds[0]["image"].shape == (3, 64, 64)
    ds = build_dataset(fixtures["nyudv2"], "test", size=(48, 64), pad_to=(56, 72))
    s = ds[0]
    assert s["image"].shape == (3, 56, 72) and s["valid_size"].tolist() == [48, 64]
    assert s["orig_size"].tolist() == list(SIZE)
    assert (s["semseg"][48:] == 255).all()


def test_synthetic_source():
    train = build_dataset("synthetic", "train", size=(48, 64), n=8, val_fraction=0.25)
    val = build_dataset("synthetic", "val", size=(48, 64), n=8, val_fraction=0.25)
    test = build_dataset("synthetic", "test", ["semseg", "depth"], size=(48, 64), n=3)
    assert (len(train), len(val), len(test)) == (6, 2, 3)
    assert train.tasks["semseg"] == 12 and set(test.tasks) == {"semseg", "depth"}
    s = val[0]
    assert s["image"].shape == (3, 48, 64) and s["orig_size"].tolist() == [48, 64]
    ref = render_scene(0, val.indices[0], (48, 64))
    np.testing.assert_array_equal(s["semseg"].numpy(), ref["semseg"])


# --------------------------------------------------------------------------- own data


@pytest.fixture(scope="session")
def own_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("own")
    for d in ("images", "semseg", "depth", "normals"):
        (root / d).mkdir()
    for i in range(4):
        raw = render_scene(7, i, (48, 64))
        Image.fromarray(raw["image"]).save(root / f"images/im{i}.png")
        Image.fromarray(raw["semseg"]).save(root / f"semseg/im{i}.png")
        if i != 2:  # partial labels: image 2 has no depth
            mm = np.round(raw["depth"] * 1000).astype(np.uint16)
            Image.fromarray(mm).save(root / f"depth/im{i}.png")
        np.save(root / f"normals/im{i}.npy", raw["normals"])
    (root / "splits").mkdir()
    (root / "splits/train.txt").write_text("im0\nim1\nim2\n")
    (root / "splits/test.txt").write_text("im3\n")
    config = {
        "tasks": ["semseg", "depth", "normals"],
        "classes": {"semseg": [f"c{k}" for k in range(12)]},
        "depth": {"units": "mm"},
        "camera": {
            "fx": 500.0,
            "fy": 500.0,
            "cx": 319.5,
            "cy": 239.5,
            "height": 480,
            "width": 640,
        },
    }
    (root / "dataset.yaml").write_text(yaml.safe_dump(config))
    return root


def test_own_folder_with_partial_labels(own_folder):
    assert detect_layout(own_folder) == "own"
    ds = build_dataset(own_folder, "train_full")
    assert ds.tasks == {"semseg": 12, "depth": 1, "normals": 3}
    assert ds.ids == ["im0", "im1", "im2"]
    s = ds[2]
    assert s["labelled"] == {"semseg": True, "depth": False, "normals": True}
    assert (s["depth"] == 0).all()
    ref = render_scene(7, 0, (48, 64))
    s0 = ds[0]
    assert s0["labelled"]["depth"]
    np.testing.assert_allclose(s0["depth"][0].numpy(), ref["depth"], atol=5e-4)  # mm → m
    np.testing.assert_array_equal(s0["semseg"].numpy(), ref["semseg"])
    np.testing.assert_allclose(s0["intrinsics"].numpy(), [50, 50, 31.5, 23.5], rtol=1e-5)
    assert build_dataset(own_folder, "test").ids == ["im3"]
    with pytest.raises(MtcpError, match="not labelled here"):
        build_dataset(own_folder, "test", ["edge"])


# --------------------------------------------------------------------------- bad input


def test_missing_split_file_and_entry(nyud_copy):
    with pytest.raises(MtcpError, match=r"gt_sets/nope\.txt: split file is missing"):
        NYUDDataset(nyud_copy, "nope", ["semseg"])
    with (nyud_copy / "gt_sets/train.txt").open("a") as f:
        f.write("ghost\n")
    with pytest.raises(MtcpError, match=r"images/ghost\.jpg: image file of sample 'ghost'"):
        NYUDDataset(nyud_copy, "train", ["semseg"])


def test_missing_label_file(nyud_copy):
    sid = (nyud_copy / "gt_sets/train.txt").read_text().split()[0]
    (nyud_copy / f"depth/{sid}.npy").unlink()
    with pytest.raises(MtcpError, match=rf"depth/{sid}\.npy: depth label file"):
        NYUDDataset(nyud_copy, "train", ["semseg", "depth"])
    # not checked up front: the error comes when the sample is read
    ds = NYUDDataset(nyud_copy, "train", ["semseg", "depth"], verify="none")
    with pytest.raises(MtcpError, match=rf"depth/{sid}\.npy: depth label file is missing"):
        ds[0]


def test_corrupt_image(nyud_copy):
    sid = (nyud_copy / "gt_sets/train.txt").read_text().split()[1]
    (nyud_copy / f"images/{sid}.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(MtcpError, match=rf"images/{sid}\.jpg: cannot read"):
        NYUDDataset(nyud_copy, "train", ["semseg"])
    ds = NYUDDataset(nyud_copy, "train", ["semseg"], verify="none")
    with pytest.raises(MtcpError, match=rf"images/{sid}\.jpg: cannot read image"):
        ds[1]


def test_truncated_image_found_when_read(nyud_copy):
    sid = (nyud_copy / "gt_sets/train.txt").read_text().split()[0]
    path = nyud_copy / f"images/{sid}.jpg"
    path.write_bytes(path.read_bytes()[:-600])
    ds = NYUDDataset(nyud_copy, "train", ["semseg"])  # header is fine
    with pytest.raises(MtcpError, match=rf"{sid}\.jpg: cannot read image"):
        ds[0]


def test_label_outside_classes(nyud_copy):
    sid = (nyud_copy / "gt_sets/train.txt").read_text().split()[0]
    png = nyud_copy / f"segmentation/{sid}.png"
    stored = np.asarray(Image.open(png)).copy()
    stored[3, 4] = 58  # class 57 with 40 classes
    Image.fromarray(stored).save(png)
    ds = NYUDDataset(nyud_copy, "train", ["semseg"])
    with pytest.raises(MtcpError, match=r"value 58 \(class 57\) is outside the task's 40 classes"):
        ds[0]
    with pytest.raises(MtcpError, match=rf"segmentation/{sid}\.png"):
        NYUDDataset(nyud_copy, "train", ["semseg"], verify="full")
    assert len(NYUDDataset(nyud_copy, "train", {"semseg": 60})) == N - 1


def test_size_mismatch(nyud_copy):
    sid = (nyud_copy / "gt_sets/train.txt").read_text().split()[0]
    np.save(nyud_copy / f"depth/{sid}.npy", np.ones((30, 40), np.float32))
    with pytest.raises(MtcpError, match=r"depth map is 30x40 but its image is 60x80"):
        NYUDDataset(nyud_copy, "train", ["depth"])
    ds = NYUDDataset(nyud_copy, "train", ["depth"], verify="none")
    with pytest.raises(MtcpError, match=rf"depth/{sid}\.npy: depth map is 30x40"):
        ds[0]


def test_skip_errors_reports_at_the_end(nyud_copy, caplog):
    ids = (nyud_copy / "gt_sets/train.txt").read_text().split()
    (nyud_copy / f"images/{ids[0]}.jpg").write_bytes(b"garbage")
    (nyud_copy / f"edge/{ids[1]}.npy").unlink()
    png = nyud_copy / f"segmentation/{ids[2]}.png"
    stored = np.asarray(Image.open(png)).copy()
    stored[0, 0] = 99
    Image.fromarray(stored).save(png)
    with caplog.at_level(logging.WARNING):
        ds = NYUDDataset(nyud_copy, "train", ["semseg", "edge"], skip_errors=True)
    assert [sid for sid, _ in ds.skipped] == ids[:2]
    assert "2 sample(s)" in caplog.text and ids[0] in caplog.text
    assert ds.ids == ids[2:]
    # a bad label value only shows when read: another sample is returned and the skip recorded
    sample = ds[0]
    assert sample["id"] == ids[3]
    assert ds.skipped[-1][0] == ids[2] and "value 99" in ds.skipped[-1][1]
    full = NYUDDataset(nyud_copy, "train", ["semseg", "edge"], skip_errors=True, verify="full")
    assert full.ids == ids[3:] and "value 99" in full.report_skipped()


def test_read_only_dataset_folder(fixtures, tmp_path):
    root = Path(shutil.copytree(fixtures["pascal-mt"], tmp_path / "ro"))
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    paths = [root, *root.rglob("*")]
    for p in paths:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        if os.geteuid() != 0:  # root ignores permissions; the listing check below still holds
            with pytest.raises(PermissionError):
                (root / "probe").write_text("x")
        for split in ("train", "val", "test"):
            ds = build_dataset(root, split, recipe="auto", size=(48, 64), val_fraction=0.25)
            assert ds[0]["image"].shape == (3, 48, 64)
        assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    finally:
        for p in paths:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


# --------------------------------------------------------------------------- splits, coverage


def test_repeated_split_ids_are_kept_once_with_a_warning(nyud_copy, caplog):
    split = nyud_copy / "gt_sets/train.txt"
    ids = split.read_text().split()
    split.write_text("\n".join([*ids, *ids[:2], ids[0]]) + "\n")  # ids[0] 3x, ids[1] 2x
    test_split = nyud_copy / "gt_sets/val.txt"
    test_id = test_split.read_text().split()[0]
    test_split.write_text(f"{test_id}\n" * 3)
    with caplog.at_level(logging.WARNING):
        train = build_dataset(nyud_copy, "train", val_fraction=0.34)
    assert f"{ids[0]} (3x)" in caplog.text and f"{ids[1]} (2x)" in caplog.text
    assert str(split) in caplog.text
    val = build_dataset(nyud_copy, "val", val_fraction=0.34)
    assert len(train.ids) == len(set(train.ids)) and len(val.ids) == len(set(val.ids))
    assert not set(train.ids) & set(val.ids)  # no validation image is a training image
    assert sorted(train.ids + val.ids) == sorted(ids)
    assert build_dataset(nyud_copy, "test").ids == [test_id]  # evaluated once, not 3x
    assert carve_validation(["a", "b", "a", "c", "b"], 0.34) == (["a", "b"], ["c"])


def test_task_labelled_in_few_training_samples_warns(own_folder, tmp_path, caplog):
    root = Path(shutil.copytree(own_folder, tmp_path / "own"))
    for i in range(1, 4):
        (root / f"depth/im{i}.png").unlink(missing_ok=True)
    for i in range(4, 12):  # 12 training images, depth on one
        for d in ("images", "semseg"):
            shutil.copy(root / f"{d}/im0.png", root / f"{d}/im{i}.png")
        shutil.copy(root / "normals/im0.npy", root / f"normals/im{i}.npy")
    (root / "splits/train.txt").write_text("".join(f"im{i}\n" for i in range(12) if i != 3))
    with caplog.at_level(logging.WARNING):
        build_dataset(root, "train_full")
    assert "task 'depth' is labelled in only 1 of the 11 training samples" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        build_dataset(root, "test")  # only training splits are checked
        build_dataset(root, "train_full", ["semseg", "normals"])
    assert "labelled in only" not in caplog.text


# --------------------------------------------------------------------------- PASCAL normals


def test_packaged_pascal_normal_classes():
    valid = layouts.pascal_normals_valid_classes()
    assert len(valid) == 170 and 0 not in valid
    names = set(valid.values())
    assert {"floor", "wall", "chair", "tvmonitor", "person"} <= names
    assert not {"sky", "grass", "aeroplane", "tree", "road"} & names
    shared = Path(__file__).resolve().parents[2] / "shared/data/pascal_normals_valid_classes.json"
    if shared.is_file():  # the package carries the same facts as the project's data
        facts = json.loads(shared.read_text())
        assert sorted(valid) == facts["valid_label_map_ids"]


def test_pascal_normals_invalid_outside_indoor_classes(fixtures, tmp_path):
    root = Path(shutil.copytree(fixtures["pascal-mt"], tmp_path / "pascal"))
    sid = (root / "ImageSets/Context/train.txt").read_text().split()[0]
    mat = root / f"pascal-context/trainval/{sid}.mat"
    label_map = scipy.io.loadmat(mat)["LabelMap"]
    by_name = {v: k for k, v in layouts.pascal_normals_valid_classes().items()}
    assert np.isin(label_map, list(by_name.values())).all()  # synthetic scenes are indoors
    outdoor = np.zeros(label_map.shape, dtype=bool)
    outdoor[:10] = True  # sky (PASCAL-Context id 360) in the top rows, 0 (unlabelled) at left
    label_map[outdoor] = 360
    label_map[:, :5] = 0
    scipy.io.savemat(mat, {"LabelMap": label_map})
    raw = PascalDataset(root, "train", ["normals"]).read(sid)
    length = np.linalg.norm(raw["normals"], axis=-1)
    invalid = outdoor
    invalid[:, :5] = True
    assert (length[invalid] == 0).all()
    np.testing.assert_allclose(length[~invalid], 1, atol=1e-5)


# --------------------------------------------------------------------------- normals frame


def test_normals_converted_from_the_layout_frame(fixtures):
    root = fixtures["nyud-mt"]
    sid = (root / "gt_sets/train.txt").read_text().split()[0]
    stored = np.load(root / f"normals/{sid}.npy")
    raw = NYUDDataset(root, "train", ["normals"]).read(sid)
    np.testing.assert_array_equal(raw["normals"], stored * [1, 1, -1])  # z towards the camera
    assert (raw["normals"][..., 2] < 0).mean() > 0.9  # mtcp frame: most surfaces face -z


@pytest.mark.parametrize("layout", ["nyud-mt", "nyudv2"])
def test_normals_frame_verified_against_depth(fixtures, tmp_path, layout, caplog):
    from mtcp.data.normals_frame import check_normals_frame

    reader = NYUDDataset if layout == "nyud-mt" else NYUDv2Dataset
    with caplog.at_level(logging.INFO):
        good = check_normals_frame(reader(fixtures[layout], "train", ["depth", "normals"]))
    assert "normal labels follow the declared frame" in caplog.text
    assert good["best"] == "as declared" and good["median_deg"]["as declared"] < 5
    assert good["follows_declared"]
    assert good["median_deg"]["z flipped"] > 30
    # labels stored in mtcp's frame while the layout declares z towards the camera
    root = Path(shutil.copytree(fixtures[layout], tmp_path / "flipped"))
    for path in (root / "normals").iterdir():
        if path.suffix == ".npy":
            np.save(path, np.load(path) * np.float32([1, 1, -1]))
        else:
            value = np.asarray(Image.open(path)).copy()
            value[..., 2] = 255 - value[..., 2]
            Image.fromarray(value).save(path)
    with caplog.at_level(logging.WARNING):
        build_dataset(root, "train", val_fraction=0.25)
    assert "agree better with the depth labels with z flipped" in caplog.text
    assert str(root) in caplog.text


def test_own_data_declares_its_normals_frame(own_folder, tmp_path, caplog):
    from mtcp.data.normals_frame import check_normals_frame

    root = Path(shutil.copytree(own_folder, tmp_path / "own"))
    for path in (root / "normals").iterdir():  # stored with z towards the camera
        np.save(path, np.load(path) * np.float32([1, 1, -1]))
    config = yaml.safe_load((root / "dataset.yaml").read_text())
    ds = build_dataset(root, "train_full")
    assert check_normals_frame(ds)["best"] == "z flipped"  # undeclared: the check finds it
    config["normals"] = {"z": "towards_camera"}
    (root / "dataset.yaml").write_text(yaml.safe_dump(config))
    ds = build_dataset(root, "train_full")
    ref = render_scene(7, 0, (48, 64))
    np.testing.assert_allclose(ds.read("im0")["normals"], ref["normals"], atol=1e-6)
    assert check_normals_frame(ds)["best"] == "as declared"
    config["normals"] = {"z": "backwards"}
    (root / "dataset.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(MtcpError, match=r"dataset.yaml: normals z 'backwards' unknown"):
        build_dataset(root, "train_full")
