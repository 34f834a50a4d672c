"""mtcp: multi-task dense prediction with cross-task coherence and loss prioritization.

>>> import mtcp
>>> model = mtcp.create_model("mtcp_tiny", tasks=["semseg", "depth", "normals"])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # typing only: importing the models here would slow `mtcp --help`
    from mtcp.inference import Predictor
    from mtcp.models.base import DenseModel

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "evaluate", "list_models", "load"]


def create_model(name: str, tasks: Iterable[str] | Mapping[str, int], **kwargs: Any) -> DenseModel:
    """Build a registered model; see :func:`mtcp.models.registry.create_model`."""
    from mtcp.models.registry import create_model as _create_model

    return _create_model(name, tasks=tasks, **kwargs)


def list_models(filter: str = "") -> list[str]:
    """Names of the registered models; see :func:`mtcp.models.registry.list_models`."""
    from mtcp.models.registry import list_models as _list_models

    return _list_models(filter)


def load(path: Any, **kwargs: Any) -> Predictor:
    """Load a trained model for inference; see :func:`mtcp.inference.load`."""
    from mtcp.inference import load as _load

    return _load(path, **kwargs)


def evaluate(model: Any, data: Any = None, **kwargs: Any) -> dict[str, Any]:
    """Score a model on a dataset split; see :func:`mtcp.inference.evaluate.evaluate`."""
    from mtcp.inference.evaluate import evaluate as _evaluate

    return _evaluate(model, data, **kwargs)
