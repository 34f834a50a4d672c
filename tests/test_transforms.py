"""Joint transforms keep image, labels, depth, normals and intrinsics consistent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from mtcp.data import transforms as T
from mtcp.data.synthetic import render_scene
from mtcp.errors import MtcpError
from mtcp.geometry import scale_intrinsics

SIZE = (72, 96)


@pytest.fixture(scope="module")
def raw() -> dict:
    return render_scene(3, 1, SIZE, person_prob=1.0)


def normals_from_depth(depth: np.ndarray, intr: np.ndarray, k: int = 3):
    """Camera-frame normals of the back-projected depth: least-squares plane per 7x7 window.

    Returns ``(normals [H, W, 3] facing the camera, mask of windows fully valid)``.
    """
    fx, fy, cx, cy = (float(v) for v in intr)
    h, w = depth.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([(xs - cx) * depth / fx, (ys - cy) * depth / fy, depth], -1)
    valid = (depth > 0).astype(np.float64)

    def box(a: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(a, 2 * k + 1, mode="constant")

    count = np.maximum(box(valid), 1e-9)
    mean = np.stack([box(pts[..., i] * valid) for i in range(3)], -1) / count[..., None]
    cov = np.empty((h, w, 3, 3))
    for i in range(3):
        for j in range(3):
            cov[..., i, j] = box(pts[..., i] * pts[..., j] * valid) / count
            cov[..., i, j] -= mean[..., i] * mean[..., j]
    n = np.linalg.eigh(cov)[1][..., :, 0]  # direction of least spread
    n = np.where((np.sum(n * mean, -1) > 0)[..., None], -n, n)
    return n, box(valid) > 0.999


def coherence_error(sample: dict, k: int = 3) -> tuple[np.ndarray, int]:
    """Angles (degrees) between stored normals and normals from depth on smooth pixels."""
    n, full = normals_from_depth(sample["depth"], sample["intrinsics"], k)
    gt = sample["normals"]
    # smooth: the stored normals are (almost) constant over the window
    mean_len2 = sum(ndimage.uniform_filter(gt[..., i], 2 * k + 1) ** 2 for i in range(3))
    ok = full & (np.linalg.norm(gt, axis=-1) > 0.5) & (mean_len2 > 0.998)
    ang = np.degrees(np.arccos(np.clip(np.sum(n * gt, -1), -1, 1)))
    return ang[ok], int(ok.sum())


def test_coherence_helper_agrees_on_untouched_scene(raw):
    ang, count = coherence_error(raw)
    assert count > 1000
    assert np.median(ang) < 0.5


@pytest.mark.parametrize(
    "name, fn",
    [
        ("flip", T.hflip),
        ("zoom_in", lambda s: T.scale_rotate(s, 1.2)),
        ("zoom_out", lambda s: T.scale_rotate(s, 0.8)),
        ("rotate", lambda s: T.scale_rotate(s, 1.0, 20.0)),
        ("zoom_rotate", lambda s: T.scale_rotate(s, 1.25, -15.0)),
        ("resize", T.Resize((60, 70))),
        ("flip_resize", lambda s: T.Resize((90, 100))(T.hflip(s))),
    ],
)
def test_normals_from_transformed_depth_agree(raw, name, fn):
    out = fn(raw)
    ang, count = coherence_error(out)
    assert count > 300, name
    assert np.median(ang) < 3.0, (name, np.median(ang))
    assert np.percentile(ang, 75) < 5.0, (name, np.percentile(ang, 75))


def test_unrotated_normals_are_detected(raw):
    """The check above is sensitive: normals left unrotated disagree with the depth."""
    out = T.scale_rotate(raw, 1.0, 20.0)
    out["normals"] = T.scale_rotate(raw, 1.0, 1e-6)["normals"]
    assert np.median(coherence_error(out)[0]) > 5.0
    flipped = T.hflip(raw)
    flipped["normals"] = flipped["normals"] * np.array([-1, 1, 1], np.float32)
    assert np.median(coherence_error(flipped)[0]) > 5.0


def test_hflip_exact(raw):
    out = T.hflip(raw)
    np.testing.assert_array_equal(out["image"], raw["image"][:, ::-1])
    np.testing.assert_array_equal(out["semseg"], raw["semseg"][:, ::-1])
    np.testing.assert_array_equal(out["normals"][..., 0], -raw["normals"][:, ::-1, 0])
    np.testing.assert_array_equal(out["normals"][..., 1:], raw["normals"][:, ::-1, 1:])
    assert out["intrinsics"][2] == pytest.approx(SIZE[1] - 1 - raw["intrinsics"][2])
    back = T.hflip(out)
    for key in ("image", "semseg", "depth", "normals", "edge", "human_parts"):
        np.testing.assert_array_equal(back[key], raw[key])


def test_zoom_divides_depth_and_scales_focal(raw):
    s = 1.5
    out = T.scale_rotate(raw, s)
    h, w = SIZE
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    for y, x in [(10, 20), (40, 50), (h // 2, w // 2)]:
        sx, sy = np.floor(c + (np.array([x, y]) - c) / s + 0.5).astype(int)
        assert out["depth"][y, x] == pytest.approx(raw["depth"][sy, sx] / s)
        assert out["semseg"][y, x] == raw["semseg"][sy, sx]
    np.testing.assert_allclose(out["intrinsics"][:2], raw["intrinsics"][:2] * s, rtol=1e-6)
    np.testing.assert_allclose(out["intrinsics"][2:], c + s * (raw["intrinsics"][2:] - c), 1e-5)


def test_out_of_image_is_ignore_never_background(raw):
    out = T.scale_rotate(raw, 0.6, 25.0)
    corner = (slice(0, 3), slice(0, 3))
    assert (out["semseg"][corner] == 255).all()
    assert (out["human_parts"][corner] == 255).all()
    assert (out["edge"][corner] == 255).all()
    assert (out["sal"][corner] == 255).all()
    assert (out["depth"][corner] == 0).all()
    assert (out["normals"][corner] == 0).all()
    assert (out["image"][corner] == 0).all()


def test_labels_nearest_no_blending(raw):
    out = T.scale_rotate(raw, 1.3, 13.0)
    assert set(np.unique(out["semseg"])) <= set(np.unique(raw["semseg"])) | {255}
    assert set(np.unique(out["edge"])) <= {0, 1, 255}
    length = np.linalg.norm(out["normals"], axis=-1)
    assert np.all((np.abs(length - 1) < 1e-3) | (length == 0))
    assert out["image"].dtype == np.uint8


def test_resize_scales_intrinsics_and_keeps_depth(raw):
    out = T.Resize((36, 64), "bicubic")(raw)
    assert out["image"].shape == (36, 64, 3) and out["image"].dtype == np.uint8
    assert out["semseg"].shape == (36, 64) and out["normals"].shape == (36, 64, 3)
    np.testing.assert_allclose(
        out["intrinsics"], scale_intrinsics(raw["intrinsics"], SIZE, (36, 64)), rtol=1e-5
    )
    assert np.isin(out["depth"], raw["depth"]).all()  # nearest: depth values unchanged


def test_random_crop_pads_with_ignore_and_shifts_principal_point(raw):
    out = T.RandomCrop((80, 60))(raw, np.random.default_rng(0))
    assert out["image"].shape == (80, 60, 3)
    assert (out["semseg"][SIZE[0] :] == 255).all() and (out["depth"][SIZE[0] :] == 0).all()
    left = raw["intrinsics"][2] - out["intrinsics"][2]
    assert left == int(left) and 0 <= left <= SIZE[1] - 60
    np.testing.assert_array_equal(out["semseg"][: SIZE[0]], raw["semseg"][:, int(left) :][:, :60])


def test_recipes_are_deterministic_given_a_generator(raw):
    recipe = T.build_recipe("pascal_train", (48, 64))
    a = recipe(raw, np.random.default_rng(5))
    b = recipe(raw, np.random.default_rng(5))
    c = recipe(raw, np.random.default_rng(6))
    assert a["image"].shape == (48, 64, 3)
    np.testing.assert_array_equal(a["normals"], b["normals"])
    assert not np.array_equal(a["image"], c["image"])
    torch.manual_seed(1)
    d = recipe(raw)
    torch.manual_seed(1)
    np.testing.assert_array_equal(recipe(raw)["semseg"], d["semseg"])


def test_recipe_names_and_sizes(raw):
    assert T.build_recipe(None) is None
    assert T.build_recipe("test") is None
    assert T.build_recipe("nyud_train").transforms[-1].size == (480, 640)
    assert T.build_recipe("pascal_train").transforms[-1].size == (512, 512)
    out = T.build_recipe("test", (40, 50))(raw)
    assert out["semseg"].shape == (40, 50)
    with pytest.raises(MtcpError, match="unknown transform recipe"):
        T.build_recipe("imagenet")


def test_pad_and_restore_size(raw):
    small = T.Resize((50, 70))(raw)
    out = T.PadTo((64, 96))(small)
    assert out["valid_size"] == (50, 70)
    assert (out["semseg"][50:] == 255).all() and (out["normals"][:, 70:] == 0).all()
    np.testing.assert_array_equal(out["semseg"][:50, :70], small["semseg"])
    pred = torch.from_numpy(out["semseg"].astype(np.int64))[None]
    back = T.restore_size(pred, SIZE, out["valid_size"], mode="nearest")
    assert back.shape == (1, *SIZE) and back.dtype == torch.int64
    assert (back != 255).all()  # the padded border was cut off before resizing
    logits = torch.randn(3, 64, 96)
    assert T.restore_size(logits, SIZE, (50, 70)).shape == (3, *SIZE)
    with pytest.raises(MtcpError, match="larger than the pad size"):
        T.PadTo((32, 32))(raw)
