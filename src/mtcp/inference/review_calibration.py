"""Fit and measure the review score (:mod:`mtcp.inference.review`) on labelled images.

:func:`collect` runs a model over a dataset the way :class:`mtcp.inference.Predictor` does
(inputs resized to the network size; parts at that size with the training camera) and, where
the images are labelled, measures each image's real error
(:func:`mtcp.metrics.per_image.per_image_errors` on the outputs resized back to the labels).

:func:`fit_calibration` turns the validation images' parts and errors into the calibration
dict stored in checkpoints and exported files (JSON-able; keys documented there):

1. input statistics (mean and standard deviation of
   :func:`~mtcp.inference.input_stats.input_features`) over the training images; ``d_ref`` =
   the 99th percentile of the training images' input distances, ``d_typ`` their median;
2. the parts are standardised over the validation images and a non-negative ridge regression
   (``scipy.optimize.nnls`` on the ridge-augmented system) predicts ``log(gm_error)``; the ridge
   strength is chosen by leave-one-out squared error among ``{0.01, 0.1, 1, 10} · N``;
3. ``val_scores``: the validation images' review scores ``max(s_err, s_ood)``, from which a
   threshold for any review budget follows (:func:`~mtcp.inference.review.threshold_for_rate`).

:func:`ranking_stats` says how well a score ranks images by their error: AUROC for "among the
worst 20 % by per-image gm_error", Spearman correlation, and the mean error of flagged vs
unflagged images. At calibration it is reported in sample and leave-one-out (the honest figure:
each image scored by a regression fitted without it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, default_collate

from mtcp.errors import MtcpError
from mtcp.inference.input_stats import (
    FEATURE_STD_FLOOR,
    INPUT_FEATURES,
    input_distance,
    input_features,
)
from mtcp.inference.review import (
    ood_score,
    review_parts,
    threshold_for_rate,
)
from mtcp.metrics.per_image import per_image_errors, per_image_gm_error

CALIBRATION_VERSION = 1
#: share of images counted as "worst" for the AUROC
WORST_FRACTION = 0.2
RIDGE_GRID = (0.01, 0.1, 1.0, 10.0)
#: quantile of the training images' input distances beyond which an image is unusual
OOD_QUANTILE = 0.99


def _batches(dataset: Dataset, batch_size: int) -> Iterator[dict[str, Any]]:
    """Consecutive samples of the same image size, at most ``batch_size`` per batch."""
    buffer: list[dict[str, Any]] = []
    for i in range(len(dataset)):
        sample = dataset[i]
        if buffer and (
            len(buffer) == batch_size or sample["image"].shape != buffer[0]["image"].shape
        ):
            yield default_collate(buffer)
            buffer = []
        buffer.append(sample)
    if buffer:
        yield default_collate(buffer)


@torch.no_grad()
def collect(
    model: Any,
    dataset: Dataset,
    tasks: Mapping[str, int],
    size: Sequence[int],
    intrinsics: Sequence[float] | None,
    protocol: str = "mtinet",
    metric_dataset: str = "nyud",
    batch_size: int = 8,
    errors: bool = True,
    transform: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Parts, input features and (``errors=True``) per-image errors of every image.

    Args:
        model: torch model or :class:`~mtcp.inference.onnx_runtime.OnnxModel` (normalised
            ``[B, 3, h, w]`` in).
        dataset: samples in :mod:`mtcp.tasks` conventions.
        tasks: ``{task: channels}`` of the model.
        size: network input ``(h, w)``.
        intrinsics: the training camera at ``size`` (None: no depth–normal part).
        transform: ``(normalised images [B, 3, H, W], index of the first) → images``, applied
            before resizing (e.g. :func:`mtcp.inference.corruptions.corrupt_batch`).
        limit: at most this many images.

    Returns:
        ``{"parts": {name: [N]}, "features": [N, F], "errors": {task: [N]}, "gm_error": [N],
        "ids": [N]}`` (float64 tensors; no errors without labels).
    """
    device = next(iter(model.parameters())).device if hasattr(model, "parameters") else "cpu"
    parts: dict[str, list[torch.Tensor]] = {}
    feats, errs, ids = [], {}, []
    seen = 0
    for batch in _batches(dataset, batch_size):
        image = batch["image"]
        if limit is not None and seen >= limit:
            break
        if transform is not None:
            image = transform(image, seen)
        net_in = F.interpolate(image, size=tuple(size), mode="bilinear", antialias=True)
        out = {t: v.float().cpu() for t, v in model(net_in.to(device)).items() if t in tasks}
        for name, value in review_parts(out, tasks, intrinsics).items():
            parts.setdefault(name, []).append(value)
        feats.append(input_features(net_in))
        if errors:
            hw = batch["image"].shape[-2:]
            resized = {
                t: F.interpolate(v, size=hw, mode="bilinear", align_corners=False)
                for t, v in out.items()
            }
            for t, e in per_image_errors(resized, batch, tasks, protocol, metric_dataset).items():
                errs.setdefault(t, []).append(e)
        ids += list(batch.get("id", range(seen, seen + image.shape[0])))
        seen += image.shape[0]
    if not feats:
        raise MtcpError("review: the dataset holds no image")
    result: dict[str, Any] = {
        "parts": {k: torch.cat(v) for k, v in parts.items()},
        "features": torch.cat(feats),
        "ids": [str(i) for i in ids],
    }
    if errors:
        result["errors"] = {t: torch.cat(v) for t, v in errs.items()}
        result["gm_error"] = per_image_gm_error(result["errors"])
    if limit is not None:
        result = _head(result, limit)
    return result


@torch.no_grad()
def dataset_features(
    dataset: Dataset, size: Sequence[int], limit: int | None = None, batch_size: int = 8
) -> torch.Tensor:
    """:func:`~mtcp.inference.input_stats.input_features` ``[N, F]`` of (the first ``limit``)
    images of ``dataset`` resized to the network size ``(h, w)``; no model needed."""
    feats, seen = [], 0
    for batch in _batches(dataset, batch_size):
        if limit is not None and seen >= limit:
            break
        image = batch["image"]
        feats.append(
            input_features(F.interpolate(image, size=tuple(size), mode="bilinear", antialias=True))
        )
        seen += image.shape[0]
    if not feats:
        raise MtcpError("review: the training dataset holds no image")
    return torch.cat(feats)[:limit]


def _head(result: dict[str, Any], n: int) -> dict[str, Any]:
    out = dict(result)
    out["parts"] = {k: v[:n] for k, v in result["parts"].items()}
    out["features"] = result["features"][:n]
    out["ids"] = result["ids"][:n]
    if "errors" in result:
        out["errors"] = {k: v[:n] for k, v in result["errors"].items()}
        out["gm_error"] = result["gm_error"][:n]
    return out


def _nnls_ridge(z: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    from scipy.optimize import nnls

    p = z.shape[1]
    a = np.vstack([z, math.sqrt(lam) * np.eye(p)])
    b = np.concatenate([y, np.zeros(p)])
    return nnls(a, b)[0]


def _loo(z: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Leave-one-out predictions of the centred ridge fit."""
    pred = np.empty_like(y)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        mean = y[keep].mean()
        pred[i] = mean + z[i] @ _nnls_ridge(z[keep], y[keep] - mean, lam)
    return pred


def fit_calibration(
    val: Mapping[str, Any],
    train_features: torch.Tensor,
    rate: float = 0.1,
    threshold: float | None = None,
) -> dict[str, Any]:
    """The calibration dict from :func:`collect` on validation images (with errors) and the
    training images' :func:`~mtcp.inference.input_stats.input_features` ``[M, F]``."""
    if not 0.0 < rate < 1.0:
        raise MtcpError(f"review.rate must lie in (0, 1), got {rate}")
    gm = val["gm_error"].numpy()
    keep = np.isfinite(gm)
    if keep.sum() < 4:
        raise MtcpError(
            f"review calibration needs at least 4 labelled validation images, got {keep.sum()}"
        )
    train_features = train_features.double()
    stats = {
        "names": list(INPUT_FEATURES),
        "mean": train_features.mean(0).tolist(),
        "std": train_features.std(0).clamp_min(FEATURE_STD_FLOOR).tolist()
        if len(train_features) > 1
        else [1.0] * len(INPUT_FEATURES),
    }
    calib: dict[str, Any] = {"input": stats}
    d_train = input_distance(train_features, calib)
    d_val = input_distance(val["features"], calib)
    stats["ref_distance"] = float(torch.quantile(d_train, OOD_QUANTILE))
    stats["typical_distance"] = float(d_train.median())
    parts = {**val["parts"], "input_distance": d_val}
    names, columns, center, scale = [], [], [], []
    for name in sorted(parts):
        x = parts[name].numpy()[keep]
        finite = np.isfinite(x)
        if finite.sum() < 2 or np.std(x[finite]) < 1e-9:
            continue  # constant or undefined on the validation images: says nothing
        mu, sd = float(np.mean(x[finite])), float(np.std(x[finite]))
        names.append(name)
        center.append(mu)
        scale.append(sd)
        columns.append((np.where(finite, x, mu) - mu) / sd)
    y = np.log(np.maximum(gm[keep], 1e-6))
    z = np.stack(columns, 1) if columns else np.zeros((len(y), 0))
    n = len(y)
    if z.shape[1]:
        losses = {lam: float(np.mean((_loo(z, y, lam * n) - y) ** 2)) for lam in RIDGE_GRID}
        lam = min(losses, key=losses.get) * n
        coef = _nnls_ridge(z, y - y.mean(), lam)
        loo = _loo(z, y, lam)
    else:
        lam, coef, loo = 0.0, np.zeros(0), np.full(n, y.mean())
    fitted = y.mean() + z @ coef
    pred_std = float(np.std(fitted)) or 1.0
    calib.update(
        version=CALIBRATION_VERSION,
        parts=names,
        center=center,
        scale=scale,
        coef=coef.tolist(),
        intercept=float(y.mean()),
        ridge=float(lam),
        pred_mean=float(np.mean(fitted)),
        pred_std=pred_std,
        rate=float(rate),
        threshold=None if threshold is None else float(threshold),
        typical={k: float(np.nanmedian(parts[k].numpy())) for k in names},
    )
    s_err = 1.0 / (1.0 + np.exp(-(fitted - calib["pred_mean"]) / pred_std))
    scores = np.maximum(s_err, ood_score(d_val[torch.from_numpy(keep)], calib).numpy())
    calib["val_scores"] = sorted(float(s) for s in scores)
    t = threshold if threshold is not None else threshold_for_rate(calib["val_scores"], rate)
    error = torch.from_numpy(gm[keep])
    calib["validation"] = {
        "in_sample": ranking_stats(torch.from_numpy(scores), error, torch.from_numpy(scores > t)),
        "leave_one_out": ranking_stats(torch.from_numpy(loo), error, None),
    }
    return calib


def ranking_stats(
    score: torch.Tensor, error: torch.Tensor, flags: torch.Tensor | None
) -> dict[str, float]:
    """How well ``score`` ranks images by ``error`` (module docstring); ``flags`` optional.

    Returns:
        ``n``, ``auroc_worst20``, ``spearman``, and with flags ``fraction_flagged``,
        ``mean_error_flagged``, ``mean_error_unflagged``, their ``error_ratio`` and the
        ``oracle_error_ratio`` (the ratio when the same number of truly worst images is
        flagged: the most any score can reach on these images).
    """
    from scipy.stats import spearmanr
    from torchmetrics.functional.classification import binary_auroc

    score, error = score.double(), error.double()
    ok = torch.isfinite(score) & torch.isfinite(error)
    s, e = score[ok], error[ok]
    out: dict[str, float] = {"n": float(ok.sum())}
    k = max(1, round(WORST_FRACTION * len(e)))
    worst = torch.zeros_like(e, dtype=torch.long)
    if len(e) >= 2:
        worst[torch.argsort(e, descending=True)[:k]] = 1
        out["auroc_worst20"] = (
            float(binary_auroc(s.float(), worst)) if worst.min() == 0 else math.nan
        )
        out["spearman"] = float(spearmanr(s.numpy(), e.numpy()).statistic)
    else:
        out["auroc_worst20"] = out["spearman"] = math.nan
    if flags is not None:
        f = flags[ok].bool()
        out["fraction_flagged"] = float(f.double().mean()) if len(f) else math.nan
        out["mean_error_flagged"] = float(e[f].mean()) if f.any() else math.nan
        out["mean_error_unflagged"] = float(e[~f].mean()) if (~f).any() else math.nan
        flagged, unflagged = out["mean_error_flagged"], out["mean_error_unflagged"]
        out["error_ratio"] = flagged / unflagged if unflagged > 0 else math.nan
        # the best any score can do: flag the same number of images, the truly worst ones
        best = torch.zeros_like(f)
        best[torch.argsort(e, descending=True)[: int(f.sum())]] = True
        rest = e[~best].mean() if (~best).any() else math.nan
        out["oracle_error_ratio"] = float(e[best].mean() / rest) if best.any() else math.nan
    return out


def describe_calibration(calib: Mapping[str, Any] | None) -> str:
    """One paragraph for the end of ``mtcp train``."""
    if not calib:
        return "Review score: uncalibrated (see the warning above)."
    v = calib["validation"]
    ins, loo = v["in_sample"], v["leave_one_out"]
    t = calib["threshold"]
    rule = f"threshold {t:g}" if t is not None else f"review.rate {calib['rate']:g}"
    weights = ", ".join(f"{p} {c:.3g}" for p, c in zip(calib["parts"], calib["coef"]) if c > 0)
    return (
        f"Review score calibrated on {int(ins['n'])} validation images ({rule}: "
        f"{ins['fraction_flagged']:.0%} flagged). Ranking by real per-image error (gm_error): "
        f"Spearman {loo['spearman']:.2f}, AUROC (worst 20%) {loo['auroc_worst20']:.2f} "
        f"leave-one-out (in sample {ins['spearman']:.2f} / {ins['auroc_worst20']:.2f}); "
        f"flagged images' mean error {ins['error_ratio']:.2f}x the others'. "
        f"Weights: {weights or 'none (no part predicts the error)'}."
    )
