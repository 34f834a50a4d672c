"""Image corruptions (mtcp.inference.corruptions): deterministic, strong worse than mild."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtcp.errors import MtcpError
from mtcp.inference.corruptions import KINDS, corrupt, corrupt_batch, to_uint8


def _image() -> np.ndarray:
    y, x = np.mgrid[0:64, 0:80]
    rgb = np.stack([x * 3, y * 4, (x + y) * 2], -1) % 256
    rgb[20:40, 30:50] = 220
    return rgb.astype(np.uint8)


@pytest.mark.parametrize("kind", KINDS)
def test_strong_corruptions_change_the_image_more_than_mild_ones(kind):
    image = _image()
    mild, strong = corrupt(image, kind, "mild", seed=1), corrupt(image, kind, "strong", seed=1)
    assert mild.shape == strong.shape == image.shape and strong.dtype == np.uint8
    err = [np.abs(c.astype(float) - image).mean() for c in (mild, strong)]
    assert 0 < err[0] < err[1]
    assert np.array_equal(corrupt(image, kind, "strong", seed=1), strong)


def test_low_light_darkens_and_occlusion_covers_the_stated_area():
    image = _image()
    assert corrupt(image, "low_light", "strong").mean() < 0.2 * image.mean()
    covered = (corrupt(np.zeros_like(image), "occlusion", "strong") == 128).all(-1).mean()
    assert covered == pytest.approx(0.35, abs=0.03)


def test_batches_round_trip_and_bad_names():
    from mtcp.data.sample import normalize_image

    batch = torch.stack([normalize_image(_image())] * 2)
    assert np.array_equal(to_uint8(batch[0]), _image())
    out = corrupt_batch(batch, "noise", "strong", first=3)
    assert out.shape == batch.shape
    assert np.array_equal(to_uint8(out[1]), corrupt(_image(), "noise", "strong", seed=4))
    with pytest.raises(MtcpError, match="unknown corruption 'fog'"):
        corrupt(_image(), "fog", "mild")
    with pytest.raises(MtcpError, match="unknown severity"):
        corrupt(_image(), "blur", "medium")
