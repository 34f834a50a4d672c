"""Pictures carry their meaning: palette, depth colour direction, normals mapping, legends."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import colormaps

from mtcp import viz


def test_class_palette_is_distinct_and_ignore_is_black() -> None:
    for n in (5, 13, 40, 59):
        palette = viz.class_palette(n)
        assert palette.shape == (n, 3) and len({tuple(c) for c in palette}) == n
    ids = np.array([[0, 1], [255, 2]])
    rgb = viz.colorize_classes(ids, 3)
    assert rgb[1, 0].tolist() == list(viz.INVALID_RGB)
    assert rgb[0, 1].tolist() == viz.class_palette(3)[1].tolist()


def test_depth_colour_runs_near_blue_to_far_red() -> None:
    depth = np.linspace(1.0, 5.0, 50, dtype=np.float32)[None].repeat(4, 0)
    rgb = viz.colorize_depth(depth, vmin=1.0, vmax=5.0).astype(int)
    near, far = rgb[0, 0], rgb[0, -1]
    assert near[2] > near[0] and far[0] > far[2]  # turbo: blue near, red far
    assert rgb[0, 0].tolist() == (np.array(colormaps["turbo"](0.0)[:3]) * 255).round().tolist()
    depth[0, 0] = 0.0
    assert viz.colorize_depth(depth)[0, 0].tolist() == [0, 0, 0]  # invalid is black


def test_normals_rgb_mapping() -> None:
    n = np.array([[[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]]], np.float32)
    rgb = viz.colorize_normals(n)
    assert rgb[0, 0].tolist() == [255, 128, 128]  # x right → red
    assert rgb[0, 1].tolist() == [128, 128, 0]  # facing the camera (z = -1)
    assert rgb[0, 2].tolist() == [0, 0, 0]  # zero vector = invalid


def test_colour_bar_matches_the_map_it_explains() -> None:
    bar = viz.legend("depth", np.array([[0.0]]), width=100, vmin=1.0, vmax=3.0)
    ramp = (np.asarray(colormaps["turbo"](np.linspace(0, 1, 100)))[:, :3] * 255).round()
    assert np.array_equal(bar[0], ramp.astype(np.uint8))
    depth = np.full((4, 4), 2.0, np.float32)
    depth[0, 0] = 1.0
    depth[-1, -1] = 3.0
    lo, hi = viz.depth_range(depth)
    assert lo == pytest.approx(np.percentile(depth, 2))
    assert hi == pytest.approx(np.percentile(depth, 98))


def test_class_key_lists_the_classes_present_largest_first() -> None:
    ids = np.array([[3] * 6 + [1] * 2 + [255] * 2])
    key = viz.class_key(ids, 5, width=120, names=["a", "b", "c", "d", "e"])
    palette = viz.class_palette(5)
    assert key.shape[0] == 2 * viz.LABEL_HEIGHT + 2  # two classes, ignore not listed
    assert key[1 + 5, 6].tolist() == palette[3].tolist()  # first swatch: class 3 (most pixels)
    assert key[1 + viz.LABEL_HEIGHT + 5, 6].tolist() == palette[1].tolist()


def test_panel_puts_each_legend_under_its_picture() -> None:
    pictures = {"image": np.zeros((10, 20, 3), np.uint8), "depth": np.zeros((10, 20, 3), np.uint8)}
    strip = np.full((7, 20, 3), 9, np.uint8)
    out = viz.panel(pictures, legends={"depth": strip})
    assert out.shape == (viz.LABEL_HEIGHT + 10 + 7, 20 + 2 + 20, 3)
    assert (out[viz.LABEL_HEIGHT + 10 :, 22:] == 9).all()  # under depth
    assert (out[viz.LABEL_HEIGHT + 10 :, :20] == 255).all()  # white under the image
    assert viz.panel(pictures).shape == (viz.LABEL_HEIGHT + 10, 42, 3)
