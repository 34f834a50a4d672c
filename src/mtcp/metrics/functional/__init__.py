"""Pure metric functions (no state): what the :mod:`mtcp.metrics` classes accumulate."""

from mtcp.metrics.functional.thresholds import rational_thresholds, threshold_levels

__all__ = ["rational_thresholds", "threshold_levels"]
