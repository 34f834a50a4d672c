"""mtcp.load(...).predict(...): any input form and size, physical units, safe loading."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import mtcp
from checkpoint_fixtures import write_train_checkpoint
from mtcp.errors import MtcpError
from mtcp.export import save_safetensors

TASKS = {"semseg": 12, "depth": 1, "normals": 3, "edge": 1, "sal": 1}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint in the layout ``mtcp train`` writes (untrained weights, tiny widths)."""
    torch.manual_seed(0)
    model = mtcp.create_model("mtcp_tiny", TASKS, channels=32, decoder_dims=[32, 64, 128])
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    return write_train_checkpoint(path, model, {"size": [64, 64]}, [60.0, 60.0, 31.5, 31.5])


def _check(maps, size):
    h, w = size
    assert set(maps) == set(TASKS)
    assert maps["semseg"].shape == (h, w) and maps["semseg"].dtype == np.int64
    assert maps["semseg"].min() >= 0 and maps["semseg"].max() < TASKS["semseg"]
    assert maps["depth"].shape == (h, w) and maps["depth"].dtype == np.float32
    assert (maps["depth"] >= 0).all()
    assert maps["normals"].shape == (h, w, 3)
    np.testing.assert_allclose(np.linalg.norm(maps["normals"], axis=-1), 1.0, atol=1e-4)
    for task in ("edge", "sal"):
        assert maps[task].shape == (h, w) and 0 <= maps[task].min() <= maps[task].max() <= 1


def test_predict_accepts_every_input_form(checkpoint, tmp_path):
    predictor = mtcp.load(checkpoint)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 90, 3), dtype=np.uint8)
    _check(predictor.predict(rgb), (37, 90))
    _check(predictor.predict(rgb[..., 0]), (37, 90))  # grayscale
    rgba = np.concatenate([rgb, np.full((37, 90, 1), 128, np.uint8)], axis=-1)
    np.testing.assert_array_equal(
        predictor.predict(rgba)["semseg"], predictor.predict(rgb)["semseg"]
    )
    Image.fromarray(rgb).save(tmp_path / "a.png")
    from_path = predictor.predict(tmp_path / "a.png")
    np.testing.assert_allclose(from_path["depth"], predictor.predict(rgb)["depth"], rtol=1e-5)
    batch = predictor.predict(
        [Image.fromarray(rgb).convert("L"), rgb[:20, :33], tmp_path / "a.png"]
    )
    for maps, size in zip(batch, [(37, 90), (20, 33), (37, 90)]):
        _check(maps, size)
    _check(predictor.predict(rgb.astype(np.float32) / 255.0), (37, 90))
    assert predictor.camera((128, 128)) == pytest.approx([120.0, 120.0, 63.5, 63.5])


def test_unreadable_inputs_raise_clear_errors(checkpoint, tmp_path):
    predictor = mtcp.load(checkpoint)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(MtcpError, match=r"broken\.jpg: cannot read"):
        predictor.predict(tmp_path / "broken.jpg")
    with pytest.raises(MtcpError, match="expected"):
        predictor.predict(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(MtcpError, match="no such file"):
        mtcp.load(tmp_path / "missing.ckpt")


def test_pickled_checkpoints_are_refused_unless_trusted(checkpoint, tmp_path):
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["extra"] = argparse.Namespace(note="arbitrary object")  # needs full unpickling
    path = tmp_path / "pickled.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(MtcpError, match="trust=True"):
        mtcp.load(path)
    _check(mtcp.load(path, trust=True).predict(np.zeros((20, 30, 3), np.uint8)), (20, 30))


def test_safetensors_weights_give_identical_outputs(checkpoint, tmp_path):
    predictor = mtcp.load(checkpoint)
    path = save_safetensors(
        predictor.model,
        tmp_path / "model.safetensors",
        size=predictor.size,
        intrinsics=predictor.intrinsics,
    )
    again = mtcp.load(path)
    image = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    a, b = predictor.predict(image), again.predict(image)
    for task in TASKS:
        np.testing.assert_array_equal(a[task], b[task])
    assert again.intrinsics == predictor.intrinsics and again.size == (64, 64)


def test_safetensors_without_input_size_is_refused(checkpoint, tmp_path):
    path = save_safetensors(mtcp.load(checkpoint).model, tmp_path / "nosize.safetensors")
    with pytest.raises(MtcpError, match=r"nosize\.safetensors: no input size"):
        mtcp.load(path)


# ImageNet statistics written out here, independently of mtcp.tasks: the oracle of the test below
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _raw_by_hand(model, rgb, size, channel_order=(0, 1, 2), mean=MEAN, std=STD):
    """Normalise → resize to the network size → model → resize back, written out by hand."""
    x = torch.tensor(rgb[..., list(channel_order)]).permute(2, 0, 1)[None].float() / 255.0
    x = (x - mean) / std
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        out = model(x)
    h, w = rgb.shape[:2]
    return {
        t: F.interpolate(v.float(), size=(h, w), mode="bilinear", align_corners=False)[0]
        for t, v in out.items()
    }


def test_predict_equals_normalise_model_resize_done_by_hand(checkpoint):
    predictor = mtcp.load(checkpoint)
    rng = np.random.default_rng(3)
    # smooth, strongly coloured image: each channel its own gradient, so a swap shows
    yy, xx = np.mgrid[0:45, 0:70]
    rgb = np.stack([xx * 3, yy * 5, 255 - xx * 2], axis=-1).clip(0, 255).astype(np.uint8)
    rgb = (rgb + rng.integers(0, 8, rgb.shape)).clip(0, 255).astype(np.uint8)
    raw = _raw_by_hand(predictor.model, rgb, predictor.size)
    got = predictor.predict_raw([rgb])[0]
    for task in TASKS:
        torch.testing.assert_close(got[task], raw[task], rtol=1e-4, atol=1e-5, msg=task)
    maps = predictor.predict(rgb)
    assert (maps["semseg"] == raw["semseg"].argmax(0).numpy()).mean() > 0.999
    np.testing.assert_allclose(maps["depth"], raw["depth"][0].clamp_min(0).numpy(), atol=1e-5)
    normals = F.normalize(raw["normals"], dim=0).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(maps["normals"], normals, atol=1e-5)
    for task in ("edge", "sal"):
        np.testing.assert_allclose(maps[task], raw[task][0].sigmoid().numpy(), atol=1e-5)
    # the comparison is sharp enough to see a BGR input or another normalisation
    swapped = _raw_by_hand(predictor.model, rgb, predictor.size, channel_order=(2, 1, 0))
    assert (swapped["semseg"] - got["semseg"]).abs().max() > 1e-3
    half = torch.full((1, 3, 1, 1), 0.5)
    other = _raw_by_hand(predictor.model, rgb, predictor.size, mean=half, std=half)
    assert (other["semseg"] - got["semseg"]).abs().max() > 1e-3
