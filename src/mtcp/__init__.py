"""mtcp: multi-task dense prediction with cross-task coherence and loss prioritization.

>>> import mtcp
>>> model = mtcp.create_model("mtcp_tiny", tasks=["semseg", "depth", "normals"])
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "evaluate", "load"]


def create_model(name: str, tasks: Any, **kwargs: Any) -> Any:
    """Build a registered model; see :func:`mtcp.models.registry.create_model`."""
    from mtcp.models.registry import create_model as _create_model

    return _create_model(name, tasks=tasks, **kwargs)


def load(path: Any, **kwargs: Any) -> Any:
    """Load a trained model for inference; see :func:`mtcp.inference.load`."""
    from mtcp.inference import load as _load

    return _load(path, **kwargs)


def evaluate(model: Any, data: Any = None, **kwargs: Any) -> dict[str, Any]:
    """Score a model on a dataset split; see :func:`mtcp.inference.evaluate.evaluate`."""
    from mtcp.inference.evaluate import evaluate as _evaluate

    return _evaluate(model, data, **kwargs)
