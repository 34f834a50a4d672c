"""Pure metric functions (no state), as ``torchmetrics.functional`` is to ``torchmetrics``: what
the classes of :mod:`mtcp.metrics` accumulate.

* :mod:`~mtcp.metrics.functional.thresholds`: exact thresholds compared in the scores' precision;
* :mod:`~mtcp.metrics.functional.thinning`: binary thinning (the BSDS ``bwmorph 'thin'``);
* :mod:`~mtcp.metrics.functional.matching`: one-to-one pixel matching within a tolerance;
* :mod:`~mtcp.metrics.functional.boundary`: BSDS counts per threshold and ``odsF/oisF/AP``;
* :mod:`~mtcp.metrics.functional.coherence`: depth–normal and boundary coherence.
"""

from mtcp.metrics.functional.boundary import boundary_counts, bsds_scores, bsds_thresholds
from mtcp.metrics.functional.coherence import boundary_coherence, depth_normal_coherence
from mtcp.metrics.functional.matching import match_count
from mtcp.metrics.functional.thinning import thin
from mtcp.metrics.functional.thresholds import rational_thresholds, threshold_levels

__all__ = [
    "boundary_coherence",
    "boundary_counts",
    "bsds_scores",
    "bsds_thresholds",
    "depth_normal_coherence",
    "match_count",
    "rational_thresholds",
    "thin",
    "threshold_levels",
]
