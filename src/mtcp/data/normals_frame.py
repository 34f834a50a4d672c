"""Which camera frame do a dataset's normal labels follow? Checked against its depth labels.

mtcp's frame is x right, y down, z forward (visible surfaces have ``n_z ≤ 0``). Each layout
declares the frame of its files (:attr:`mtcp.data.base.FolderDataset.normals_signs`) and the
reader converts on load. :func:`check_normals_frame` verifies that declaration when a dataset is
first read: on a few samples with depth, normals and a camera it compares the loaded normals,
and their axis sign flips, with the normals implied by the depth
(:func:`mtcp.geometry.normals_from_depth`), and warns, naming the flip, when another frame
agrees better than the declared one.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import torch

from mtcp.data.base import FolderDataset
from mtcp.errors import MtcpError
from mtcp.geometry import angle_deg, normals_from_depth

log = logging.getLogger(__name__)

#: Samples compared per dataset.
SAMPLES = 4
#: A flip must beat the declared frame's median angle by this many degrees to be reported.
MARGIN_DEG = 15.0
#: Every axis sign flip, identity first.
FLIPS: tuple[tuple[int, int, int], ...] = tuple(itertools.product((1, -1), repeat=3))
_checked: set[tuple[str, str]] = set()


def flip_name(signs: tuple[int, int, int]) -> str:
    """``(1, 1, -1)`` → ``"z flipped"``; the identity → ``"as declared"``."""
    axes = [a for a, s in zip("xyz", signs) if s < 0]
    return f"{', '.join(axes)} flipped" if axes else "as declared"


def depth_normal_angles(
    normals: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray
) -> dict[tuple[int, int, int], np.ndarray]:
    """Angles (degrees) between ``signs · normals`` and the depth's normals, per flip.

    ``normals`` float ``[H, W, 3]`` in mtcp's frame, ``depth`` ``[H, W]`` metres,
    ``intrinsics`` ``fx, fy, cx, cy``; only pixels valid in both (and smooth in the depth).
    """
    n_d, smooth = normals_from_depth(
        torch.from_numpy(np.ascontiguousarray(depth))[None, None],
        torch.from_numpy(np.asarray(intrinsics, dtype=np.float64))[None],
    )
    n = torch.from_numpy(np.ascontiguousarray(normals)).double().permute(2, 0, 1)[None]
    ok = smooth[:, 0] & (n.abs().sum(1) > 0)
    out = {}
    for signs in FLIPS:
        s = torch.tensor(signs, dtype=n.dtype).view(1, 3, 1, 1)
        out[signs] = angle_deg(n * s, n_d)[ok].numpy()
    return out


def check_normals_frame(dataset: FolderDataset, samples: int = SAMPLES) -> dict | None:
    """Median depth–normal angle per axis flip on ``samples`` samples; warns on a better flip.

    Returns ``None`` when the dataset cannot tell (no depth or normals task, unknown camera);
    else ``{"declared": signs, "median_deg": {flip name: degrees}, "best": flip name,
    "follows_declared": bool}`` (logged: info when the declaration fits, else a warning).
    The check runs once per dataset folder and layout in a process.
    """
    if not {"depth", "normals"} <= set(dataset.tasks):
        return None
    angles: dict[tuple[int, int, int], list[np.ndarray]] = {s: [] for s in FLIPS}
    used = 0
    for sample_id in dataset.ids:
        if used == samples:
            break
        try:
            raw = dataset.read(sample_id)
        except MtcpError:
            continue
        intr = np.asarray(raw["intrinsics"], dtype=np.float64)
        if raw.get("depth") is None or raw.get("normals") is None or not np.isfinite(intr).all():
            continue
        for signs, a in depth_normal_angles(raw["normals"], raw["depth"], intr).items():
            angles[signs].append(a)
        used += 1
    pooled = {s: np.concatenate(a) if a else np.zeros(0) for s, a in angles.items()}
    if used == 0 or pooled[FLIPS[0]].size == 0:
        return None
    median = {s: float(np.median(a)) for s, a in pooled.items()}
    best = min(median, key=median.get)
    report = {
        "declared": tuple(dataset.normals_signs),
        "median_deg": {flip_name(s): round(m, 2) for s, m in median.items()},
        "best": flip_name(best),
    }
    fits = best == FLIPS[0] or median[best] + MARGIN_DEG >= median[FLIPS[0]]
    report["follows_declared"] = fits
    if fits:
        log.info(
            "%s: the normal labels follow the declared frame (median depth-normal angle "
            "%.1f° on %d samples; best other: %s, %.1f°)",
            dataset.root,
            median[FLIPS[0]],
            used,
            flip_name(min(FLIPS[1:], key=median.get)),
            min(median[s] for s in FLIPS[1:]),
        )
    else:
        log.warning(
            "%s: the %s normal labels agree better with the depth labels with %s (median "
            "depth-normal angle %.1f° vs %.1f° as declared, on %d samples); the layout "
            "declares signs %s from the files to mtcp's frame (x right, y down, z forward): "
            "coherence figures on these labels would be off by a convention",
            dataset.root,
            dataset.layout,
            flip_name(best),
            median[best],
            median[FLIPS[0]],
            used,
            dataset.normals_signs,
        )
    return report


def check_once(dataset: FolderDataset) -> dict | None:
    """:func:`check_normals_frame` the first time a folder and layout are read here."""
    key = (str(dataset.root.resolve()), dataset.layout)
    if key in _checked:
        return None
    _checked.add(key)
    return check_normals_frame(dataset)
