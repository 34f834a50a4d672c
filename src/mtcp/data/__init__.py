"""Datasets, on-disk layouts, synthetic scenes and label-aware transforms."""
