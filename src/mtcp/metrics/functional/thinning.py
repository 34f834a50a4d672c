"""Morphological thinning of binary maps to one-pixel-wide lines (the BSDS benchmark's step 2).

The two-sub-iteration parallel algorithm of Guo & Hall (1989) in the formulation of Lam, Lee &
Suen (1992), the one MATLAB's ``bwmorph(BW, 'thin', Inf)`` applies: :func:`thin` on one mask,
and :func:`thin_map`, the numba kernel that :mod:`mtcp.metrics.functional.boundary` runs on the
nested binarisations of one probability map (it only re-tests pixels whose neighbourhood just
changed, so its cost is proportional to the pixels it deletes).
"""

from __future__ import annotations

import numpy as np

from mtcp.errors import MtcpError
from mtcp.metrics.functional.matching import njit

# Neighbours x1..x8 of the thinning rules as (dy, dx): E, NE, N, NW, W, SW, S, SE.
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def thinning_luts() -> np.ndarray:
    """Deletion tables ``[2, 256]`` of the two sub-iterations, indexed by the neighbour code.

    Bit ``i`` of the code is neighbour ``x_{i+1}``. A pixel is deleted when
    G1: ``X_H = 1`` with ``X_H = #{i ≤ 4 : x_{2i-1} = 0 and (x_{2i} or x_{2i+1})}``;
    G2: ``2 <= min(n1, n2) <= 3`` with ``n1 = Σ_k (x_{2k-1} or x_{2k})``,
    ``n2 = Σ_k (x_{2k} or x_{2k+1})`` (``x9 = x1``); and G3 ``(x2 or x3 or not x8) and x1 == 0``
    in the first sub-iteration, G3' ``(x6 or x7 or not x4) and x5 == 0`` in the second.
    """
    luts = np.zeros((2, 256), dtype=np.bool_)
    for code in range(256):
        x = [0, *((code >> i) & 1 for i in range(8)), code & 1]  # x[1..9], x9 = x1
        x_h = sum(1 for i in range(1, 5) if not x[2 * i - 1] and (x[2 * i] or x[2 * i + 1]))
        n1 = sum(1 for k in range(1, 5) if x[2 * k - 1] or x[2 * k])
        n2 = sum(1 for k in range(1, 5) if x[2 * k] or x[2 * k + 1])
        if x_h == 1 and 2 <= min(n1, n2) <= 3:
            luts[0, code] = not ((x[2] or x[3] or not x[8]) and x[1])
            luts[1, code] = not ((x[6] or x[7] or not x[4]) and x[5])
    return luts


LUTS = thinning_luts()


def neighbour_offsets(stride: int) -> np.ndarray:
    return np.array([dy * stride + dx for dy, dx in _NEIGHBOURS], dtype=np.int64)


@njit
def thin_map(fg, n_border, nbr, luts, stamp, step, bufs, removed):
    """Thin the binary map ``fg`` (uint8 ``[N]``, padded with background) in place.

    ``bufs[0, :n_border]``: every foreground pixel with a background neighbour. Each
    sub-iteration decides on the map as it was before it (parallel rule) and only tests pixels
    whose neighbourhood changed during the two previous sub-iterations, so the cost is
    proportional to the deleted pixels. Deleted pixels are listed in ``removed``. ``stamp``
    (int32 ``[N]``, below ``2 * step + 2``) and ``bufs`` (``[4, N]``) are scratch.

    Returns:
        (next ``step``, number of deleted pixels).
    """
    last, older, fresh, dead = bufs[0], bufs[1], bufs[2], bufs[3]
    n_last, n_older, sub, n_removed = n_border, 0, 0, 0
    while n_last + n_older > 0:
        step += 1
        tested, queued = 2 * step, 2 * step + 1
        n_dead = 0
        for i in range(n_last + n_older):
            p = last[i] if i < n_last else older[i - n_last]
            if stamp[p] == tested or fg[p] == 0:
                continue
            stamp[p] = tested
            code = 0
            for b in range(8):
                code |= fg[p + nbr[b]] << b
            if luts[sub, code]:
                dead[n_dead] = p
                n_dead += 1
        n_fresh = 0
        for i in range(n_dead):
            fg[dead[i]] = 0
        for i in range(n_dead):
            p = dead[i]
            removed[n_removed] = p
            n_removed += 1
            for o in nbr:
                q = p + o
                if fg[q] and stamp[q] != queued:
                    stamp[q] = queued
                    fresh[n_fresh] = q
                    n_fresh += 1
        older, last, fresh = last, fresh, older
        n_last, n_older = n_fresh, n_last
        sub ^= 1
    return step, n_removed


@njit
def _thin_mask(fg, nbr, luts):
    bufs = np.empty((4, fg.size), dtype=np.int32)
    n_border = np.int64(0)
    for p in range(fg.size):
        if fg[p]:
            for o in nbr:
                if not fg[p + o]:
                    bufs[0, n_border] = p
                    n_border += 1
                    break
    stamp = np.zeros(fg.size, dtype=np.int32)
    removed = np.empty(fg.size, dtype=np.int32)
    thin_map(fg, n_border, nbr, luts, stamp, np.int64(0), bufs, removed)


def thin(mask: np.ndarray) -> np.ndarray:
    """Morphological thinning of a binary ``[H, W]`` mask to 8-connected one-pixel-wide lines.

    The two-sub-iteration parallel algorithm of Guo & Hall (1989) in the formulation of Lam, Lee
    & Suen (1992) (the one MATLAB's ``bwmorph(BW, 'thin', Inf)`` applies), run until nothing
    changes; outside the image counts as background. Returns a bool mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise MtcpError(f"edge: thin expects a [H, W] mask, got shape {mask.shape}")
    fg = np.pad(mask, 1).astype(np.uint8)
    _thin_mask(fg.ravel(), neighbour_offsets(fg.shape[1]), LUTS)
    return fg[1:-1, 1:-1].astype(bool)
