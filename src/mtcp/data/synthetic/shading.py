"""From z-buffer to raw sample: the numba shading and edge kernels, and the label maps."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from mtcp.data.synthetic.palette import CLASS_ID, PERSON_PARTS, SALIENT_CLASSES
from mtcp.data.synthetic.raycast import Canvas
from mtcp.tasks import IGNORE_INDEX

_F32 = np.float32


def _njit(fn):
    """``numba.njit(cache=True)``, without the on-disk cache where none is writable."""
    try:
        return numba.njit(nogil=True, cache=True)(fn)
    except RuntimeError:  # pragma: no cover - depends on the file system
        return numba.njit(nogil=True)(fn)


def shade_and_label(cv: Canvas, rng, dims, intr: np.ndarray) -> dict[str, Any]:
    """Turn the z-buffer into the image and the label maps of a raw sample."""
    sid = cv.sid.astype(np.intp)  # np.take converts other index types on every call
    surfs, looks = cv.surfaces, cv.looks

    def lut(values, dtype) -> np.ndarray:
        return np.take(np.asarray(values, dtype=dtype), sid)

    salient = {CLASS_ID[c] for c in SALIENT_CLASSES}
    semseg = lut([s.cls for s in surfs], np.uint8)
    sal = lut([s.cls in salient for s in surfs], _F32)
    if any(s.part for s in surfs):
        human_parts = lut([PERSON_PARTS.get(s.part, 0) for s in surfs], np.uint8)
    else:
        human_parts = np.zeros(sid.shape, dtype=np.uint8)
    if not human_parts.any():
        human_parts[:] = IGNORE_INDEX

    light = (rng.uniform(0.25, 0.75) * dims[0], rng.uniform(0.25, 0.75) * dims[1], dims[2] - 0.4)
    ambient, diffuse = rng.uniform(0.25, 0.45), rng.uniform(0.55, 0.85)
    tint = rng.uniform(0.85, 1.0, 3) * 255.0
    noise = rng.integers(0, 256, sid.shape, dtype=np.uint8)
    noise_scale = rng.uniform(1.0, 4.0) / 127.5
    curved = np.array([n is None for n in cv.flat_normals])
    flat = np.array([np.zeros(3) if n is None else n for n in cv.flat_normals], dtype=_F32)
    kind = np.array([look[1] for look in looks])
    image = np.empty((*sid.shape, 3), dtype=np.uint8)
    normals = np.empty((*sid.shape, 3), dtype=_F32)
    _shade_kernel(
        cv.sid,
        cv.depth,
        cv.d,
        np.array(cv.o + light + (ambient, diffuse, noise_scale), dtype=_F32),
        cv.rot.astype(_F32),
        flat,
        curved,
        cv.n,
        np.array([look[2] for look in looks], dtype=_F32),
        kind == 1,
        np.array([look[3] if look[1] > 0 else 0.0 for look in looks], dtype=_F32),
        kind < 0,
        np.array([look[0] for look in looks], dtype=_F32),
        tint.astype(_F32),
        noise,
        image,
        normals,
    )
    edge = np.zeros(sid.shape, dtype=np.uint8)
    _edge_kernel(np.asarray(cv.edge_keys, dtype=np.int32), cv.sid, cv.depth, edge)
    return {
        "image": image,
        "semseg": semseg,
        "depth": cv.depth,
        "normals": normals,
        "edge": edge,
        "sal": sal,
        "human_parts": human_parts,
        "intrinsics": intr.astype(_F32),
    }


@_njit
def _shade_kernel(
    sid, depth, d, scalars, rot, flat, curved, pixel_n, freq, checker, amp, emissive, albedo,
    tint, noise, image, normals
):  # fmt: skip
    """Image and camera-frame normals of every pixel, in float32 throughout.

    ``scalars``: camera origin (3), light position (3), ambient, diffuse, noise scale.
    Shading: a Lambertian point light plus ambient, times a solid texture
    ``1 + amp * (pattern - 0.5)`` where ``pattern`` is the parity of the 3-D cell index
    (checker) or of the height index only (stripes); windows are emissive (shade 1).
    The operations and their order are part of the data: changing them changes the scenes.
    """
    zero, one, half = np.float32(0.0), np.float32(1.0), np.float32(0.5)
    mid, top = np.float32(127.5), np.float32(255.0)
    o0, o1, o2, l0, l1, l2, ambient, diffuse, noise_scale = scalars
    h, w = sid.shape
    for i in range(h):
        for j in range(w):
            s = sid[i, j]
            if curved[s]:
                n0, n1, n2 = pixel_n[0, i, j], pixel_n[1, i, j], pixel_n[2, i, j]
            else:
                n0, n1, n2 = flat[s, 0], flat[s, 1], flat[s, 2]
            for c in range(3):  # n_cam = R^T n_world
                normals[i, j, c] = zero + rot[0, c] * n0 + rot[1, c] * n1 + rot[2, c] * n2
            t = depth[i, j]
            p0, p1, p2 = t * d[0, i, j] + o0, t * d[1, i, j] + o1, t * d[2, i, j] + o2
            v0, v1, v2 = l0 - p0, l1 - p1, l2 - p2
            ndotl = (n0 * v0 + n1 * v1 + n2 * v2) / np.sqrt(v0 * v0 + v1 * v1 + v2 * v2)
            if ndotl < zero:
                ndotl = zero
            shade = ambient + diffuse * ndotl
            if emissive[s]:
                shade = one
            elif amp[s] != zero:  # amp = 0 gives a factor of exactly 1
                f = freq[s]
                fx = np.int32(np.floor(p0 * f))
                fy = np.int32(np.floor(p1 * f))
                cell = np.int32(np.floor(p2 * f))
                if checker[s]:
                    cell += fx + fy
                shade = shade * (one + amp[s] * (np.float32(cell & 1) - half))
            grain = (np.float32(noise[i, j]) - mid) * noise_scale
            for c in range(3):
                v = albedo[s, c] * shade * tint[c] + grain
                image[i, j, c] = np.uint8(min(max(v, zero), top))


@_njit
def _edge_kernel(keys, sid, depth, edge):
    """Mark pixels where the visible surface changes: of each 4-neighbour pair whose edge keys
    differ, the nearer pixel (the first one on equal depth)."""
    h, w = sid.shape
    for i in range(h):
        for j in range(w):
            k = keys[sid[i, j]]
            if i + 1 < h and keys[sid[i + 1, j]] != k:
                if depth[i, j] <= depth[i + 1, j]:
                    edge[i, j] = 1
                else:
                    edge[i + 1, j] = 1
            if j + 1 < w and keys[sid[i, j + 1]] != k:
                if depth[i, j] <= depth[i, j + 1]:
                    edge[i, j] = 1
                else:
                    edge[i, j + 1] = 1
