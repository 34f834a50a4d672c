"""Measure the review score on held-out data (``mtcp evaluate``'s review section).

:func:`review_check` scores the evaluated images with the model's calibration and reports

* on the (labelled) images: the fraction flagged, AUROC of the score for "among the worst
  20 % by per-image gm_error", Spearman correlation of score and error, and the mean error of
  flagged vs unflagged images (:func:`mtcp.inference.review_calibration.ranking_stats`);
* the corruption check: the fraction flagged of the same images under each corruption of
  :mod:`mtcp.inference.corruptions`, mild and strong, against the clean fraction;
* real photographs (scikit-image's bundled sample photos, offline; optional ``review``
  extra): for a model trained on synthetic scenes they are out of distribution and should be
  flagged more often than the held-out scenes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mtcp.data.sample import normalize_image
from mtcp.inference.corruptions import KINDS, SEVERITIES, corrupt_batch
from mtcp.inference.input_stats import input_distance
from mtcp.inference.review import review_threshold, score_parts
from mtcp.inference.review_calibration import collect, ranking_stats

#: scikit-image sample photographs used as real, out-of-distribution images
PHOTOS = ("astronaut", "camera", "cat", "chelsea", "coffee", "coins", "rocket")


class _Photos(Dataset):
    def __init__(self, images: Sequence[np.ndarray]) -> None:
        self.images = list(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rgb = np.array(self.images[i])
        rgb = np.repeat(rgb[..., None], 3, -1) if rgb.ndim == 2 else rgb[..., :3]
        return {"image": normalize_image(rgb), "id": PHOTOS[i]}


def sample_photos() -> list[np.ndarray] | None:
    """The :data:`PHOTOS` as uint8 arrays, or None without scikit-image."""
    try:
        import skimage.data  # optional: the 'review' extra
    except ImportError:
        return None
    return [getattr(skimage.data, name)() for name in PHOTOS]


def _flags(collected: Mapping[str, Any], calibration: Any, **budget: Any) -> torch.Tensor:
    parts = dict(collected["parts"])
    if calibration is not None:
        parts["input_distance"] = input_distance(collected["features"], calibration)
    reviews = score_parts(parts, calibration, **budget)
    return torch.tensor([r.flag for r in reviews]), torch.tensor([r.score for r in reviews])


def review_check(
    model: Any,
    dataset: Dataset,
    tasks: Mapping[str, int],
    size: Sequence[int],
    intrinsics: Sequence[float] | None,
    calibration: Mapping[str, Any] | None,
    protocol: str = "mtinet",
    metric_dataset: str = "nyud",
    corruptions: bool = True,
    photos: bool = True,
    rate: float | None = None,
    threshold: float | None = None,
    batch_size: int = 8,
) -> dict[str, Any]:
    """The review report of ``model`` on ``dataset`` (module docstring); JSON-ready."""
    common = dict(tasks=tasks, size=size, intrinsics=intrinsics, batch_size=batch_size)
    budget = dict(rate=rate, threshold=threshold)
    clean = collect(model, dataset, protocol=protocol, metric_dataset=metric_dataset, **common)
    flags, scores = _flags(clean, calibration, **budget)
    report: dict[str, Any] = {
        "calibrated": calibration is not None,
        "threshold": None,
        **ranking_stats(scores, clean["gm_error"], flags),
    }
    if calibration is not None:
        report["threshold"] = review_threshold(calibration, **budget)
    clean_rate = float(flags.double().mean())
    if corruptions:
        table: dict[str, dict[str, float]] = {}
        for kind in KINDS:
            for severity in SEVERITIES:
                spoilt = collect(
                    model,
                    dataset,
                    errors=False,
                    transform=lambda x, first, k=kind, s=severity: corrupt_batch(x, k, s, first),
                    **common,
                )
                table.setdefault(kind, {})[severity] = float(
                    _flags(spoilt, calibration, **budget)[0].double().mean()
                )
        strong = [table[k]["strong"] for k in KINDS]
        mild = [table[k]["mild"] for k in KINDS]
        report["corruptions"] = {
            "clean": clean_rate,
            "flagged": table,
            "mild_mean": float(np.mean(mild)),
            "strong_mean": float(np.mean(strong)),
            "strong_vs_clean": float(np.mean(strong)) / clean_rate if clean_rate else math.inf,
        }
    images = sample_photos() if photos else None
    if photos:
        if images is None:
            report["photos"] = {"skipped": "needs scikit-image: pip install 'mtcp[review]'"}
        else:
            real = collect(model, _Photos(images), errors=False, **common)
            real_flags = _flags(real, calibration, **budget)[0]
            report["photos"] = {
                "n": len(images),
                "flagged": float(real_flags.double().mean()),
                "synthetic_flagged": clean_rate,
                "flagged_names": [n for n, f in zip(PHOTOS, real_flags.tolist()) if f],
            }
    return report


def describe_review(report: Mapping[str, Any]) -> list[str]:
    """Lines for the terminal."""
    if not report.get("calibrated"):
        head = "Review score: uncalibrated model (legacy rule: depth-normal > 30 deg or F < 0.2)"
    else:
        head = f"Review score (threshold {report['threshold']:.3f}):"
    lines = [
        head,
        f"  flagged {report['fraction_flagged']:.0%} of {int(report['n'])} images; AUROC for the "
        f"worst 20% by per-image gm_error {report['auroc_worst20']:.3f}; Spearman(score, error) "
        f"{report['spearman']:.3f}",
        f"  mean error flagged {report['mean_error_flagged']:.4g} vs unflagged "
        f"{report['mean_error_unflagged']:.4g} ({report['error_ratio']:.2f}x; flagging the "
        f"truly worst as many: {report['oracle_error_ratio']:.2f}x)",
    ]
    if "corruptions" in report:
        c = report["corruptions"]
        cells = ", ".join(f"{k} {v['mild']:.0%}/{v['strong']:.0%}" for k, v in c["flagged"].items())
        lines.append(
            f"  corruptions flagged (mild/strong): {cells}; clean {c['clean']:.0%}, strong mean "
            f"{c['strong_mean']:.0%} ({c['strong_vs_clean']:.1f}x clean)"
        )
    photos = report.get("photos")
    if photos and "skipped" in photos:
        lines.append(f"  real photographs: skipped ({photos['skipped']})")
    elif photos:
        lines.append(
            f"  real photographs (scikit-image samples): {photos['flagged']:.0%} of "
            f"{photos['n']} flagged vs {photos['synthetic_flagged']:.0%} of held-out images"
        )
    return lines
