"""One-to-one matching of boundary pixels within a distance tolerance (shared by the boundary
and coherence metrics).

Two sets of pixels ``A`` (e.g. predicted boundary pixels) and ``B`` (target boundary pixels) are
joined by an edge whenever their Euclidean distance is ``<= radius`` (pixels). The number of
matched pairs is the size of a **maximum-cardinality** bipartite matching in that graph, so each
pixel is used at most once: two predicted pixels next to a single target pixel give one match.

The BSDS benchmark (``correspondPixels``) solves a min-cost assignment in which leaving a pixel
unmatched costs far more than any real match, so it also maximises the number of matches first
and only then the total distance; our counts are those of the exact maximum.

The graph lives on the pixel grid: images are padded by ``pad_for(radius)`` pixels and
flattened; the graph (:func:`build_graph`) lists for every pixel the ``B`` pixels within the
tolerance, nearest first, found by walking the flat offsets of the disc (:func:`disc_offsets`)
around every ``B`` pixel (cost ``|B| x |disc|``). :func:`augment` grows
a matching to a maximum one: a greedy pass (each free ``A`` pixel takes its nearest free ``B``
pixel) followed by Hopcroft–Karp phases, ``O(E·√V)``. It can start from any valid matching,
which lets the boundary metric reuse one threshold's matching for the next. The kernels are
compiled with numba (``nogil``, so threads run them in parallel).
"""

from __future__ import annotations

import math

import numba
import numpy as np


def njit(fn):
    """``numba.njit(nogil=True, cache=True)``, without the on-disk cache where none is writable.

    numba stores the cache in ``__pycache__`` next to the source, else in the user's cache
    directory; it refuses ``cache=True`` at decoration time when neither is writable.
    """
    try:
        return numba.njit(nogil=True, cache=True)(fn)
    except RuntimeError:  # pragma: no cover - depends on the file system
        return numba.njit(nogil=True)(fn)


def pad_for(radius: float) -> int:
    """Padding (pixels) that keeps every disc offset of ``radius`` inside a padded image."""
    return math.floor(radius) + 1


def disc_offsets(radius: float, stride: int) -> np.ndarray:
    """Flat offsets ``dy * stride + dx`` of the pixels at distance ``<= radius`` (int64 ``[n]``).

    Sorted by distance, then by ``dy``, ``dx`` (deterministic greedy choices).
    """
    r = math.floor(radius)
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1].reshape(2, -1)
    d2 = dy * dy + dx * dx
    keep = d2 <= radius * radius + 1e-9
    dy, dx, d2 = dy[keep], dx[keep], d2[keep]
    order = np.lexsort((dx, dy, d2))
    return (dy[order] * stride + dx[order]).astype(np.int64)


@njit
def build_graph(targets, allowed, disc):
    """The tolerance graph between the ``allowed`` pixels and the ``targets``, both ways.

    Args:
        targets: int32 flat padded pixel of every ``B`` pixel (its index is its ``B`` index).
        allowed: bool ``[N]``: pixels that may be ``A`` pixels.
        disc: :func:`disc_offsets` of the padded width (symmetric, nearest first).

    Returns:
        ``ptr, adj``: for pixel ``p``, the ``B`` indices within tolerance
        ``adj[ptr[p]:ptr[p + 1]]`` (empty unless ``allowed[p]``); ``rptr, radj``: for ``B``
        index ``t``, the allowed pixels within tolerance. All lists nearest first (int32).
    """
    rptr = np.zeros(targets.size + 1, dtype=np.int32)
    ptr = np.zeros(allowed.size + 1, dtype=np.int32)
    for i in range(targets.size):
        for d in disc:
            p = targets[i] + d
            if allowed[p]:
                ptr[p + 1] += 1
                rptr[i + 1] += 1
    for i in range(targets.size):
        rptr[i + 1] += rptr[i]
    for p in range(allowed.size):
        ptr[p + 1] += ptr[p]
    radj = np.empty(rptr[-1], dtype=np.int32)
    adj = np.empty(ptr[-1], dtype=np.int32)
    fill = ptr[:-1].copy()
    for d in disc:  # offsets by distance, so every pixel's list comes out nearest first
        for i in range(targets.size):
            p = targets[i] + d
            if allowed[p]:
                adj[fill[p]] = i
                fill[p] += 1
    n = 0
    for i in range(targets.size):
        for d in disc:
            p = targets[i] + d
            if allowed[p]:
                radj[n] = p
                n += 1
    return ptr, adj, rptr, radj


@njit
def augment(left, n_left, adj, ptr, mate, back, usable, mark, work, phase):
    """Grow a matching to a maximum one (in place); returns (augmentations, next phase stamp).

    Args:
        left: ids of the left vertices ``[>= n_left]``; the first ``n_left`` take part and
            include every matched left vertex.
        adj, ptr: CSR adjacency: right vertices of ``v`` are ``adj[ptr[v]:ptr[v + 1]]``.
        mate: right vertex of each left vertex, or -1; back: left vertex of each right vertex,
            or -1 (a valid matching).
        usable, mark: only right vertices ``u`` with ``usable[u] == mark`` take part.
        work: int32 ``[5, >= n left ids]`` scratch (BFS stamp, layer, edge cursor, queue,
            stack); phase: larger than any stamp in ``work[0]``.

    A greedy pass (each free vertex takes its first free neighbour: the nearest with
    :func:`build_graph`) then Hopcroft–Karp phases (shortest vertex-disjoint augmenting paths).
    """
    seen, dist, cursor, queue, stack = work[0], work[1], work[2], work[3], work[4]
    found = 0
    for i in range(n_left):
        v = left[i]
        if mate[v] < 0:
            for e in range(ptr[v], ptr[v + 1]):
                u = adj[e]
                if back[u] < 0 and usable[u] == mark:
                    mate[v] = u
                    back[u] = v
                    found += 1
                    break
    no_path = 1 << 30
    while True:
        phase += 1
        tail = 0
        for i in range(n_left):
            v = left[i]
            if mate[v] < 0:
                seen[v] = phase
                dist[v] = 0
                cursor[v] = ptr[v]
                queue[tail] = v
                tail += 1
        n_free = tail
        limit = no_path  # length of the shortest augmenting paths
        head = 0
        while head < tail:
            v = queue[head]
            head += 1
            if dist[v] + 1 >= limit:
                break
            for e in range(ptr[v], ptr[v + 1]):
                u = adj[e]
                if usable[u] != mark:
                    continue
                w = back[u]
                if w < 0:
                    limit = dist[v] + 1
                elif seen[w] != phase:
                    seen[w] = phase
                    dist[w] = dist[v] + 1
                    cursor[w] = ptr[w]
                    queue[tail] = w
                    tail += 1
        if limit == no_path:
            return found, phase
        for i in range(n_free):  # vertex-disjoint shortest paths along the BFS layers
            top = 0
            stack[0] = queue[i]
            while top >= 0:
                v = stack[top]
                descended = False
                while cursor[v] < ptr[v + 1]:
                    u = adj[cursor[v]]
                    if usable[u] == mark:
                        w = back[u]
                        if w < 0:
                            if dist[v] + 1 == limit:
                                for k in range(top, -1, -1):  # flip the path
                                    x = stack[k]
                                    y = adj[cursor[x]]
                                    mate[x] = y
                                    back[y] = x
                                found += 1
                                top = -1
                                descended = True
                                break
                        elif seen[w] == phase and dist[w] == dist[v] + 1 and dist[w] < limit:
                            top += 1
                            stack[top] = w
                            descended = True
                            break
                    cursor[v] += 1
                if not descended:
                    dist[v] = -1  # dead end for the rest of this phase
                    top -= 1
                    if top >= 0:
                        cursor[stack[top]] += 1


@njit
def _match_masks(a, b, disc):
    targets = np.flatnonzero(b).astype(np.int32)
    ptr, adj, _, _ = build_graph(targets, a, disc)
    present = np.flatnonzero(ptr[1:] > ptr[:-1]).astype(np.int32)
    mate = np.full(a.size, -1, dtype=np.int32)
    tmate = np.full(targets.size, -1, dtype=np.int32)
    work = np.zeros((5, a.size), dtype=np.int32)
    usable = np.zeros(targets.size, dtype=np.int32)
    zero = np.int64(0)  # not a literal 0: one compiled specialisation for every caller
    return augment(present, present.size, adj, ptr, mate, tmate, usable, zero, work, zero)[0]


def match_count(a: np.ndarray, b: np.ndarray, radius: float) -> int:
    """Number of one-to-one matches between the ``True`` pixels of two ``[H, W]`` masks.

    ``radius`` is the tolerance in pixels (pairs at Euclidean distance ``<= radius`` match).
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    pad = pad_for(radius)
    disc = disc_offsets(radius, a.shape[1] + 2 * pad)
    return int(_match_masks(np.pad(a, pad).ravel(), np.pad(b, pad).ravel(), disc))
