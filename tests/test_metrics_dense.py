"""Dense metrics against values computed by hand on tiny arrays (SPEC §6)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mtcp.errors import MtcpError
from mtcp.metrics import DepthMetrics, NormalsMetrics, SaliencyMetrics, SegmentationMetrics
from mtcp.metrics.saliency import ATRC_THRESHOLDS, MTINET_THRESHOLDS

# ----------------------------------------------------------------------------- segmentation


def _onehot_logits(labels: torch.Tensor, c: int) -> torch.Tensor:
    return F.one_hot(labels.clamp(0, c - 1), c).permute(0, 3, 1, 2).float()


def test_segmentation_hand_values_and_absent_class() -> None:
    target = torch.tensor([[[0, 0, 1], [1, 255, 0]]])
    pred = torch.tensor([[[0, 1, 1], [1, 2, 0]]])  # class 2 only predicted on the ignored pixel
    m = SegmentationMetrics(3)
    m.update(_onehot_logits(pred, 3), target)
    out = m.compute()
    # class 0: TP 2, FN 1 -> 2/3; class 1: TP 2, FP 1 -> 2/3; class 2 never appears -> 0.
    assert out["mIoU"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert out["mIoU_present"] == pytest.approx(2 / 3)
    assert out["pixel_acc"] == pytest.approx(4 / 5)
    assert out["n_absent"] == 1
    assert m.absent_classes() == [2]
    assert m.per_class_iou() == pytest.approx([2 / 3, 2 / 3, 0.0])


def test_segmentation_absent_class_predicted_adds_false_positives() -> None:
    target = torch.tensor([[[0, 0], [1, 1]]])
    pred = torch.tensor([[[0, 2], [1, 1]]])  # class 2 absent from target but predicted once
    m = SegmentationMetrics(3)
    m.update(pred, target)  # integer class maps accepted as well as logits
    # class 0: TP1 FN1 -> 1/2; class 1: 1; class 2: FP 1 -> 0
    assert m.compute()["mIoU"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m.compute()["mIoU_present"] == pytest.approx(0.75)


def test_segmentation_rejects_out_of_range_target() -> None:
    m = SegmentationMetrics(3, task="semseg")
    with pytest.raises(MtcpError, match=r"semseg.*class 7"):
        m.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))


def test_human_parts_skips_images_without_person() -> None:
    person = torch.tensor([[0, 1], [2, 255]])
    all_bg = torch.zeros(2, 2, dtype=torch.long)
    no_label = torch.full((2, 2), 255)
    target = torch.stack([person, all_bg, no_label])
    pred = torch.tensor([[[0, 1], [1, 1]], [[1, 1], [1, 1]], [[1, 1], [1, 1]]])
    skip = SegmentationMetrics(3, skip_uniform_images=True)
    skip.update(pred, target)
    only_person = SegmentationMetrics(3)
    only_person.update(pred[:1], target[:1])
    assert skip.compute() == only_person.compute()
    # counted person image: class 0 TP1 -> 1; class 1 TP1 FP1 -> 1/2; class 2 FN1 -> 0
    assert skip.compute()["mIoU"] == pytest.approx(0.5)
    assert int(skip.n_images) == 1
    # without the rule, the all-background image adds 4 background FN and class-1 FP
    keep = SegmentationMetrics(3)
    keep.update(pred, target)
    assert keep.compute()["mIoU"] == pytest.approx((1 / 5 + 1 / 6 + 0) / 3)


# ----------------------------------------------------------------------------- depth


def test_depth_hand_values_with_release_cap() -> None:
    target = torch.tensor([[[[1.0, 2.0], [0.0, 8.0]]]])  # 0 invalid, 8 m above the 6.5535 cap
    pred = torch.tensor([[[[2.0, 2.0], [5.0, 1.0]]]])
    m = DepthMetrics(max_depth=6.5535)
    m.update(pred, target)
    out = m.compute()
    assert out["n_pixels"] == 2
    assert out["rmse"] == pytest.approx(math.sqrt(1 / 2))
    assert out["log_rmse"] == pytest.approx(math.log(2) / math.sqrt(2))
    assert out["abs_rel"] == pytest.approx(0.5)
    assert out["delta1"] == out["delta2"] == out["delta3"] == pytest.approx(0.5)
    nocap = DepthMetrics(max_depth=None)
    nocap.update(pred, target)
    assert nocap.compute()["rmse"] == pytest.approx(math.sqrt((1 + 0 + 49) / 3))


def test_depth_nonpositive_prediction_clamped_and_255_ignored() -> None:
    target = torch.tensor([[[[1.0, 255.0]]]])
    pred = torch.tensor([[[[-3.0, 1.0]]]])
    m = DepthMetrics(max_depth=None)
    m.update(pred, target)
    out = m.compute()
    assert out["n_pixels"] == 1
    assert out["rmse"] == pytest.approx(1.0)  # |1 - 1e-9|, not |1 - (-3)|
    assert out["log_rmse"] == pytest.approx(math.log(1e9))


def test_depth_pooled_over_pixels_not_per_image() -> None:
    t1 = torch.full((1, 1, 2, 2), 2.0)
    t2 = torch.tensor([[[[4.0, 0.0], [0.0, 0.0]]]])
    m = DepthMetrics()
    m.update(t1 + 1.0, t1)  # four pixels, error 1
    m.update(t2 - 3.0, t2)  # one valid pixel, error 3
    pooled = math.sqrt((4 * 1 + 9) / 5)
    per_image = (1.0 + 3.0) / 2
    assert m.compute()["rmse"] == pytest.approx(pooled)
    assert abs(pooled - per_image) > 0.1


def test_depth_all_invalid_gives_nan() -> None:
    m = DepthMetrics()
    m.update(torch.rand(2, 1, 3, 3), torch.zeros(2, 1, 3, 3))
    out = m.compute()
    assert out["n_pixels"] == 0
    assert all(math.isnan(v) for k, v in out.items() if k != "n_pixels")


# ----------------------------------------------------------------------------- normals


def _normals_case() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.tensor([0.0, 0.0, -1.0])
    target = torch.stack([g, g, g, g, torch.zeros(3), torch.full((3,), 255.0)], 1)
    pred = torch.stack(
        [
            torch.tensor([0.0, 0.0, -2.0]),  # 0°, not unit length
            torch.tensor([1.0, 0.0, -1.0]),  # 45°
            torch.tensor([0.0, 1.0, 0.0]),  # 90°
            torch.tensor([0.0, 0.0, 1.0]),  # 180°
            torch.tensor([1.0, 0.0, 0.0]),  # invalid target (zero)
            torch.tensor([1.0, 0.0, 0.0]),  # invalid target (255)
        ],
        1,
    )
    return pred.view(1, 3, 1, 6), target.view(1, 3, 1, 6)


@pytest.mark.parametrize("angle", ["arccos", "atan2"])
def test_normals_hand_values(angle: str) -> None:
    pred, target = _normals_case()
    m = NormalsMetrics(angle=angle)
    m.update(pred, target)
    out = m.compute()
    assert out["mean"] == pytest.approx((0 + 45 + 90 + 180) / 4)
    assert out["rmse"] == pytest.approx(math.sqrt((45**2 + 90**2 + 180**2) / 4))
    assert out["median"] == pytest.approx((45 + 90) / 2, abs=m.bin_width)
    assert out["11.25"] == out["22.5"] == out["30"] == pytest.approx(25.0)


def test_normals_median_resolution_matches_exact_median() -> None:
    g = F.normalize(torch.randn(1, 3, 9, 7), dim=1)
    p = F.normalize(g + 0.4 * torch.randn(1, 3, 9, 7), dim=1)
    m = NormalsMetrics(bin_width=0.01)
    m.update(p, g)
    exact = torch.rad2deg(torch.arccos((p.double() * g.double()).sum(1).clamp(-1, 1))).flatten()
    assert abs(m.compute()["median"] - exact.sort().values[31].item()) <= 0.005 + 1e-9  # 63 px


def test_normals_png_roundtrip_costs_perfect_prediction() -> None:
    g = torch.tensor([0.0, 0.0, -1.0]).view(1, 3, 1, 1)
    exact = NormalsMetrics()
    exact.update(g, g)
    assert exact.compute()["mean"] == pytest.approx(0.0, abs=1e-6)
    png = NormalsMetrics(png_roundtrip=True)
    png.update(g, g)
    # x, y: trunc(127.5) = 127 -> -1/255 each; z: 0 -> -1
    expected = math.degrees(math.atan(math.sqrt(2) / 255))
    assert png.compute()["mean"] == pytest.approx(expected, rel=1e-6)


def test_normals_all_invalid_gives_nan() -> None:
    m = NormalsMetrics()
    m.update(torch.randn(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))
    assert all(math.isnan(v) for v in m.compute().values())


# ----------------------------------------------------------------------------- saliency


def _sal_batch() -> tuple[torch.Tensor, torch.Tensor]:
    # probabilities far from every threshold, so each threshold sees the same masks
    pred = torch.tensor([[0.95, 0.1, 0.95, 0.1, 0.95], [0.1, 0.1, 0.1, 0.1, 0.1]])
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0, 255.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    return pred.view(2, 1, 1, 5), target.view(2, 1, 1, 5)


def test_saliency_mtinet_per_image_with_empty_target() -> None:
    pred, target = _sal_batch()
    m = SaliencyMetrics(MTINET_THRESHOLDS, pooling="image", beta2=1.0)
    m.update(pred, target)
    # image 1: TP1 FP1 FN1 -> P=R=1/2, J=1/3; image 2 (empty target, nothing predicted):
    # P = R = 0, J = 1.  Means P=R=1/4, J=2/3; F = 2PR/(P+R) = 1/4.
    out = m.compute()
    assert out["maxF"] == pytest.approx(0.25)
    assert out["mIoU"] == pytest.approx(2 / 3)


def test_saliency_atrc_pixel_pooling_differs_from_per_image() -> None:
    pred, target = _sal_batch()
    m = SaliencyMetrics(ATRC_THRESHOLDS, pooling="pixel", beta2=0.3)
    m.update(pred, target)
    # pooled TP1 FP1 FN1: P=R=1/2, F = 1.3 PR / (0.3 P + R) = 0.5, IoU 1/3
    out = m.compute()
    assert out["maxF"] == pytest.approx(0.5)
    assert out["mIoU"] == pytest.approx(1 / 3)
    assert len(ATRC_THRESHOLDS) == 19 and ATRC_THRESHOLDS[0] == 0.05
    # same thresholds and β² as MTI-Net, only the pooling changed: 0.5 pooled vs 0.25 per image
    pixel = SaliencyMetrics(MTINET_THRESHOLDS, pooling="pixel", beta2=1.0)
    pixel.update(pred, target)
    assert pixel.compute()["maxF"] == pytest.approx(0.5)


def test_saliency_threshold_inclusive_and_png_roundtrip() -> None:
    target = torch.ones(1, 1, 1, 1)
    on = SaliencyMetrics((0.5, 0.7))
    on.update(torch.full((1, 1, 1, 1), 0.5), target)  # exactly on 0.5: positive
    assert on.compute()["maxF"] == pytest.approx(1.0)
    p = torch.full((1, 1, 1, 1), 0.5019)  # 255·p = 127.98 -> 127 -> 0.498 < 0.5
    plain, png = SaliencyMetrics((0.5,)), SaliencyMetrics((0.5,), png_roundtrip=True)
    plain.update(p, target)
    png.update(p, target)
    assert plain.compute()["maxF"] == pytest.approx(1.0)
    assert png.compute()["maxF"] == 0.0


def test_saliency_skips_all_ignore_images_and_empty_set_is_nan() -> None:
    pred, target = _sal_batch()
    m = SaliencyMetrics()
    m.update(torch.rand(1, 1, 1, 5), torch.full((1, 1, 1, 5), 255.0))
    assert int(m.n_images) == 0
    assert math.isnan(m.compute()["maxF"])
    m.update(pred, target)
    assert m.compute()["maxF"] == pytest.approx(0.25)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("thresholds", [MTINET_THRESHOLDS, ATRC_THRESHOLDS])
def test_saliency_png_values_on_a_threshold_are_positive(dtype, thresholds) -> None:
    """Every 8-bit value k/255 is positive exactly at the thresholds j/20 <= k/255."""
    from fractions import Fraction

    k = torch.arange(256)
    pred = (k.to(dtype) / 255).view(256, 1, 1, 1)  # one image per PNG value
    m = SaliencyMetrics(thresholds, pooling="image")
    m.update(pred, torch.ones(256, 1, 1, 1))
    # recall of a single positive pixel is 1 where predicted: summed over images per threshold
    got = (m.curves()["recall"] * 256).round().long().tolist()
    rationals = [Fraction(round(t * 20), 20) for t in thresholds]
    assert got == [sum(Fraction(int(v), 255) >= t for v in k) for t in rationals]
    # 153 = 0.6 in particular counts at 0.6 (and 0.7 typed as a float32 counts at 0.7)
    at = SaliencyMetrics((0.6, 0.7))
    at.update(torch.tensor([153 / 255, 0.7], dtype=dtype).view(2, 1, 1, 1), torch.ones(2, 1, 1, 1))
    assert at.curves()["recall"].tolist() == [1.0, 0.5]
