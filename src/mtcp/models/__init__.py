"""MT-CP models: presets, the assembled model, baselines and their building blocks.

>>> from mtcp.models import create_model
>>> model = create_model("mtcp_tiny", tasks=["semseg", "depth", "normals"])
"""

from mtcp.models.attention import (
    CBAM,
    CoherenceAttention,
    chunked_attention,
    coherence_attention,
    dense_attention,
)
from mtcp.models.backbones import Mask2FormerBackbone, TimmBackbone, build_backbone
from mtcp.models.base import DenseModel
from mtcp.models.baselines import HardSharing
from mtcp.models.coherence import CoherenceFusion
from mtcp.models.decoder import FPN, TaskDecoder
from mtcp.models.heads import AuxHead, FinalHead
from mtcp.models.mtcp import MTCP
from mtcp.models.registry import create_model, list_models, load_weights, register_model
from mtcp.models.traceback import SpatialRefinement, TraceBack

__all__ = [
    "CBAM",
    "FPN",
    "MTCP",
    "AuxHead",
    "CoherenceAttention",
    "CoherenceFusion",
    "DenseModel",
    "FinalHead",
    "HardSharing",
    "Mask2FormerBackbone",
    "SpatialRefinement",
    "TaskDecoder",
    "TimmBackbone",
    "TraceBack",
    "build_backbone",
    "chunked_attention",
    "coherence_attention",
    "create_model",
    "dense_attention",
    "list_models",
    "load_weights",
    "register_model",
]
