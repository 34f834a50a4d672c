"""One-to-one matching of boundary pixels within a distance tolerance (shared by the boundary
and coherence metrics).

Two sets of pixels ``A`` (e.g. predicted boundary pixels) and ``B`` (target boundary pixels) are
joined by an edge whenever their Euclidean distance is ``<= radius`` (pixels). The number of
matched pairs is the size of a **maximum-cardinality** bipartite matching in that graph, so each
pixel is used at most once: two predicted pixels next to a single target pixel give one match.

The BSDS benchmark (``correspondPixels``) solves a min-cost assignment in which leaving a pixel
unmatched costs far more than any real match, so it also maximises the number of matches first
and only then the total distance; our counts are those of the exact maximum.

The maximum is computed as a unit-capacity max-flow (source → A → B → sink) with Dinic's
algorithm (``scipy.sparse.csgraph.maximum_flow``), which stays ``O(E·√V)`` on the long chains of
near-parallel boundaries where SciPy's ``maximum_bipartite_matching`` can take seconds.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import maximum_flow
from scipy.spatial import cKDTree


def pair_graph(a_yx: np.ndarray, b_yx: np.ndarray, radius: float) -> csr_array:
    """Bipartite graph ``[len(a), len(b)]`` with an entry for every pair at distance ``<= radius``.

    Args:
        a_yx, b_yx: integer pixel coordinates ``[N, 2]`` (row, column).
        radius: tolerance in pixels.
    """
    shape = (len(a_yx), len(b_yx))
    if 0 in shape:
        return csr_array(shape, dtype=np.int8)
    coo = cKDTree(a_yx).sparse_distance_matrix(cKDTree(b_yx), radius, output_type="coo_matrix")
    ones = np.ones(coo.nnz, dtype=np.int8)  # keep distance-0 pairs (their stored value is 0)
    graph = csr_array((ones, (coo.row, coo.col)), shape=shape)
    graph.sort_indices()
    return graph


def max_matching_size(graph: csr_array) -> int:
    """Size of a maximum-cardinality matching of the bipartite ``graph`` ``[n_a, n_b]``."""
    n_a, n_b = graph.shape
    nnz = int(graph.indptr[-1])
    if nnz == 0:
        return 0
    # Flow network nodes: A = 0..n_a-1, B = n_a..n_a+n_b-1, source, sink.
    src, snk = n_a + n_b, n_a + n_b + 1
    indptr = np.concatenate([graph.indptr, nnz + 1 + np.arange(n_b), [nnz + n_b + n_a] * 2]).astype(
        np.int32
    )
    indices = np.concatenate([graph.indices + n_a, np.full(n_b, snk), np.arange(n_a)]).astype(
        np.int32
    )
    net = csr_array(
        (np.ones(indices.size, dtype=np.int32), indices, indptr), shape=(snk + 1, snk + 1)
    )
    return int(maximum_flow(net, src, snk, method="dinic").flow_value)


def match_count(a: np.ndarray, b: np.ndarray, radius: float) -> int:
    """Number of one-to-one matches between the ``True`` pixels of two ``[H, W]`` masks."""
    return max_matching_size(pair_graph(np.argwhere(a), np.argwhere(b), radius))
