"""Per-image review score: how likely a prediction is wrong, from what the maps themselves say.

For one image the network sees (normalised input ``x`` ``[3, h, w]`` at the network's input
size, its outputs at that size, the training camera at that size), :func:`review_parts`
measures *raw parts*, each higher = more suspicious:

=========================  ==========================================================  =======
part                       what                                                        unit
=========================  ==========================================================  =======
``depth_normal_deg``       depth–normal coherence (:mod:`mtcp.metrics.coherence`)      degrees
``boundary_disagreement``  ``1 − F`` of the boundary coherence (undefined F: NaN)       [0, 1]
``<task>_entropy``         mean per-pixel entropy of the softmax (classes tasks,       [0, 1]
                           divided by ``ln C``) or sigmoid (binary tasks, by ``ln 2``)
``depth_mean_m``           mean predicted depth (far scenes have larger depth errors   metres
                           in metres)
``input_distance``         RMS z-score of the image statistics against those of the    —
                           training images (:mod:`mtcp.inference.input_stats`)
=========================  ==========================================================  =======

A *calibration* (fitted on the validation split at the end of ``mtcp train``,
:mod:`mtcp.inference.review_calibration`; a JSON-able dict stored in checkpoints and exported
files) maps the parts to a score in ``[0, 1]``:

* ``ŷ = b + Σ_j c_j (p_j − μ_j) / σ_j`` (non-negative ``c_j``: no part can lower the score;
  NaN parts count as their mean) predicts ``log`` of the per-image error
  (:func:`mtcp.metrics.per_image.per_image_gm_error`); ``s_err = sigmoid((ŷ − m) / s)`` with
  ``m, s`` the mean and standard deviation of ``ŷ`` over the validation images;
* images further from the training images than nearly all of them (``input_distance`` above
  ``d_ref``, the 99th percentile over the training images; ``d_typ`` is their median) are out
  of distribution, which the validation images cannot teach the regression:
  ``s_ood = sigmoid(4 (d − d_ref) / (d_ref − d_typ))`` (0.5 at ``d_ref``, rising beyond);
* ``score = max(s_err, s_ood)``, flagged when ``score > t``. ``t`` is the explicit threshold,
  or the one for a review budget ``rate``: a point between the validation images' scores such
  that ``round(rate · N)`` of the ``N`` validation images lie above it.

Without a calibration (older checkpoints) the score is the mean of the bounded parts
(``depth_normal_deg / 90``, ``boundary_disagreement``, entropies) and the flag the legacy rule
(depth–normal > 30° or boundary F < 0.2); the result says it is uncalibrated.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mtcp.errors import MtcpError
from mtcp.inference.input_stats import input_distance, input_features
from mtcp.metrics import coherence
from mtcp.tasks import get_task

#: legacy, uncalibrated flag rule (``mtcp predict`` before calibration existed)
LEGACY_MAX_ANGLE = 30.0
LEGACY_MIN_BOUNDARY_F = 0.2
#: slope of ``s_ood`` in units of ``(d - d_ref) / (d_ref - d_typ)``
OOD_SLOPE = 4.0

DESCRIPTIONS = {
    "depth_normal_deg": "depth and normals disagree",
    "boundary_disagreement": "segmentation boundaries do not match depth/normal edges",
    "input_distance": "image statistics unlike the training images",
    "depth_mean_m": "far scene (depth errors grow with distance)",
}


def describe_part(name: str) -> str:
    """Words for a part name (``semseg_entropy`` → ``semseg uncertain``)."""
    if name.endswith("_entropy"):
        return f"{name.removesuffix('_entropy')} uncertain"
    return DESCRIPTIONS.get(name, name)


@dataclasses.dataclass
class Review:
    """The review of one image.

    Attributes:
        score: in ``[0, 1]``, higher = more likely wrong.
        flag: True when a person should look at the image.
        reasons: why it is flagged, in words ('' when not flagged).
        parts: the raw parts (module docstring).
        threshold: the score above which an image is flagged.
        calibrated: False for a model without a review calibration.
    """

    score: float
    flag: bool
    reasons: str
    parts: dict[str, float]
    threshold: float
    calibrated: bool


def _mean_entropy(logits: torch.Tensor, binary: bool) -> torch.Tensor:
    x = logits.float()
    if binary:
        p = x.sigmoid()
        h = -(p * torch.nn.functional.logsigmoid(x) + (1 - p) * torch.nn.functional.logsigmoid(-x))
        return (h / math.log(2)).flatten(1).mean(1).double()
    logp = torch.log_softmax(x, dim=1)
    h = -(logp.exp() * logp).sum(1) / math.log(max(x.shape[1], 2))
    return h.flatten(1).mean(1).double()


@torch.no_grad()
def review_parts(
    outputs: Mapping[str, torch.Tensor],
    tasks: Mapping[str, int],
    intrinsics: Sequence[float] | torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """Raw parts of a batch (module docstring) except ``input_distance``: ``{name: float64 [B]}``.

    Args:
        outputs: model outputs at the network's input size (:mod:`mtcp.tasks` units).
        tasks: ``{task: channels}`` of the model.
        intrinsics: ``(fx, fy, cx, cy)`` of the camera at that size (``[4]`` or ``[B, 4]``);
            None or non-finite: no depth–normal part.
    """
    out = {t: outputs[t].detach().float().cpu() for t in tasks}
    n = next(iter(out.values())).shape[0]
    parts: dict[str, torch.Tensor] = {}
    k = None
    if intrinsics is not None:
        k = torch.as_tensor(intrinsics, dtype=torch.float32).reshape(-1, 4).expand(n, 4)
        k = k if bool(torch.isfinite(k).all()) else None
    if "depth" in out and "normals" in out and k is not None:
        dn = coherence.depth_normal_coherence(out["depth"], out["normals"], k)
        parts["depth_normal_deg"] = torch.as_tensor(dn, dtype=torch.float64).reshape(n)
    if "semseg" in out and "depth" in out:
        f = coherence.boundary_coherence(
            out["semseg"].argmax(1), out["depth"], out.get("normals"), k
        )
        parts["boundary_disagreement"] = 1.0 - torch.as_tensor(f, dtype=torch.float64).reshape(n)
    if "depth" in out:
        parts["depth_mean_m"] = out["depth"].clamp_min(0).flatten(1).mean(1).double()
    for task in tasks:
        kind = get_task(task).kind
        if kind in ("classes", "binary"):
            parts[f"{task}_entropy"] = _mean_entropy(out[task], binary=kind == "binary")
    return parts


def threshold_for_rate(scores: Sequence[float], rate: float) -> float:
    """A threshold with ``round(rate · N)`` of ``scores`` strictly above it."""
    if not 0.0 <= rate <= 1.0:
        raise MtcpError(f"review rate must lie in [0, 1], got {rate}")
    ordered = sorted((float(s) for s in scores), reverse=True)
    if not ordered:
        raise MtcpError("review calibration holds no validation scores")
    k = round(rate * len(ordered))
    if k <= 0:
        return min(1.0, ordered[0] + 1e-9)
    if k >= len(ordered):
        return max(0.0, ordered[-1] - 1e-9)
    return 0.5 * (ordered[k - 1] + ordered[k])


def review_threshold(
    calibration: Mapping[str, Any], rate: float | None = None, threshold: float | None = None
) -> float:
    """The score threshold: ``threshold``, else the one for ``rate``, else the calibration's
    own (its explicit ``threshold`` or its ``rate``)."""
    if threshold is None and rate is None:
        threshold = calibration.get("threshold")
    if threshold is not None:
        return float(threshold)
    return threshold_for_rate(
        calibration["val_scores"], calibration["rate"] if rate is None else rate
    )


def error_score(parts: Mapping[str, torch.Tensor], calibration: Mapping[str, Any]) -> torch.Tensor:
    """``s_err`` ``[B]`` of the calibration (module docstring); parts must include
    ``input_distance`` when the calibration uses it."""
    names = calibration["parts"]
    missing = [p for p in names if p not in parts]
    if missing:
        raise MtcpError(f"review calibration needs parts {missing}, which this model lacks")
    x = torch.stack([parts[p].double() for p in names], dim=1)
    center = torch.tensor(calibration["center"], dtype=torch.float64)
    scale = torch.tensor(calibration["scale"], dtype=torch.float64)
    x = torch.where(x.isnan(), center.expand_as(x), x)
    z = (x - center) / scale
    y = calibration["intercept"] + z @ torch.tensor(calibration["coef"], dtype=torch.float64)
    return torch.sigmoid((y - calibration["pred_mean"]) / calibration["pred_std"])


def ood_score(distance: torch.Tensor, calibration: Mapping[str, Any]) -> torch.Tensor:
    """``s_ood`` ``[B]`` of input distances (module docstring); 0 where the distance is NaN."""
    stats = calibration["input"]
    d_ref, d_typ = stats["ref_distance"], stats["typical_distance"]
    step = OOD_SLOPE * (distance.double() - d_ref) / max(d_ref - d_typ, 1e-6)
    return torch.nan_to_num(torch.sigmoid(step), nan=0.0)


def combined_score(
    parts: Mapping[str, torch.Tensor], calibration: Mapping[str, Any]
) -> torch.Tensor:
    """The review score ``max(s_err, s_ood)`` ``[B]`` in ``[0, 1]``."""
    s_err = error_score(parts, calibration)
    if "input_distance" not in parts:
        return s_err
    return torch.maximum(s_err, ood_score(parts["input_distance"], calibration))


def score_parts(
    parts: Mapping[str, torch.Tensor],
    calibration: Mapping[str, Any] | None,
    rate: float | None = None,
    threshold: float | None = None,
) -> list[Review]:
    """Reviews of a batch from its raw parts (with ``input_distance`` when calibrated).

    Args:
        parts: ``{name: [B]}`` from :func:`review_parts` (+ ``input_distance``).
        calibration: the stored calibration, or None (uncalibrated: legacy rule).
        rate: review budget overriding the calibration's ``rate``.
        threshold: explicit score threshold overriding both.
    """
    n = next(iter(parts.values())).shape[0]
    rows = [{k: float(v[i]) for k, v in parts.items()} for i in range(n)]
    if calibration is None:
        return [_uncalibrated(row) for row in rows]
    t = review_threshold(calibration, rate, threshold)
    combined = combined_score(parts, calibration)
    d_ref = calibration["input"]["ref_distance"]
    reviews = []
    for i, row in enumerate(rows):
        d = row.get("input_distance", math.nan)
        score = float(combined[i])
        flag = score > t
        reasons = _reasons(row, calibration, d > d_ref) if flag else ""
        reviews.append(Review(score, flag, reasons, row, t, True))
    return reviews


def _reasons(row: Mapping[str, float], calibration: Mapping[str, Any], ood: bool) -> str:
    words = []
    if ood:
        stats = calibration["input"]
        words.append(
            f"{describe_part('input_distance')} (distance {row['input_distance']:.2f} > "
            f"{stats['ref_distance']:.2f}, the 99th percentile of the training images)"
        )
    contributions = []
    for name, c, mu, sd in zip(
        calibration["parts"], calibration["coef"], calibration["center"], calibration["scale"]
    ):
        value = row.get(name, math.nan)
        if c > 0 and math.isfinite(value) and value > mu and not (ood and name == "input_distance"):
            contributions.append((c * (value - mu) / sd, name, value))
    for _, name, value in sorted(contributions, reverse=True)[:3]:
        typical = calibration["typical"][name]
        words.append(f"{describe_part(name)} ({value:.3g}, typical {typical:.3g})")
    return "; ".join(words) or "high overall score"


def _uncalibrated(row: Mapping[str, float]) -> Review:
    bounded = [min(row["depth_normal_deg"] / 90.0, 1.0)] if "depth_normal_deg" in row else []
    bounded += [v for k, v in row.items() if k == "boundary_disagreement" or k.endswith("_entropy")]
    bounded = [v for v in bounded if math.isfinite(v)]
    score = min(max(sum(bounded) / len(bounded), 0.0), 1.0) if bounded else math.nan
    text = review_flag(coherence_of(row))
    if text:
        text = f"uncalibrated model, legacy rule: {text}"
    return Review(score, bool(text), text, dict(row), math.nan, False)


def coherence_of(parts: Mapping[str, float]) -> dict[str, float]:
    """The coherence scores ``{"depth_normal_deg", "boundary_f"}`` of a review's raw parts
    (:attr:`Review.parts`, at the network's input size); NaN where the model lacks the tasks
    (and, for ``depth_normal_deg``, the camera)."""
    return {
        "depth_normal_deg": parts.get("depth_normal_deg", math.nan),
        "boundary_f": 1.0 - parts.get("boundary_disagreement", math.nan),
    }


def review_flag(
    scores: Mapping[str, float],
    max_angle: float = LEGACY_MAX_ANGLE,
    min_boundary_f: float = LEGACY_MIN_BOUNDARY_F,
) -> str:
    """The legacy rule of uncalibrated models: reasons to send an image to review (``""`` =
    none), ``depth_normal_deg > max_angle`` or ``boundary_f < min_boundary_f`` (NaN never
    flags)."""
    reasons = []
    if scores["depth_normal_deg"] > max_angle:
        reasons.append(f"depth-normal {scores['depth_normal_deg']:.1f} deg > {max_angle:g}")
    if scores["boundary_f"] < min_boundary_f:
        reasons.append(f"boundary F {scores['boundary_f']:.2f} < {min_boundary_f:g}")
    return "; ".join(reasons)


def review_batch(
    image: torch.Tensor,
    outputs: Mapping[str, torch.Tensor],
    tasks: Mapping[str, int],
    intrinsics: Sequence[float] | torch.Tensor | None,
    calibration: Mapping[str, Any] | None,
    rate: float | None = None,
    threshold: float | None = None,
) -> list[Review]:
    """Reviews of a batch: normalised network inputs ``[B, 3, h, w]`` and the model's outputs
    at that size (see :func:`review_parts` and :func:`score_parts`)."""
    parts = review_parts(outputs, tasks, intrinsics)
    if calibration is not None:
        parts["input_distance"] = input_distance(input_features(image.cpu()), calibration)
    return score_parts(parts, calibration, rate=rate, threshold=threshold)
