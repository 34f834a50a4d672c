"""MT-CP models: presets, the assembled model, baselines and their building blocks.

>>> from mtcp.models import create_model
>>> model = create_model("mtcp_tiny", tasks=["semseg", "depth", "normals"])
>>> list_models("mtcp_*")
['mtcp_base', 'mtcp_paper', 'mtcp_tiny']
>>> model.data_config["mean"], model.forward_features(image).shape   # R [B, 32, H/4, W/4]
>>> model.save_pretrained("my_model"); same = DenseModel.from_pretrained("my_model")
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
from mtcp.models.pretrained import from_pretrained, save_pretrained
from mtcp.models.registry import create_model, list_models, load_weights, register_model
from mtcp.models.release import ReleaseConversion, convert_release_state
from mtcp.models.traceback import SpatialRefinement, TraceBack
from mtcp.models.weights import load_state

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
    "ReleaseConversion",
    "SpatialRefinement",
    "TaskDecoder",
    "TimmBackbone",
    "TraceBack",
    "build_backbone",
    "chunked_attention",
    "coherence_attention",
    "convert_release_state",
    "create_model",
    "dense_attention",
    "from_pretrained",
    "list_models",
    "load_state",
    "load_weights",
    "register_model",
    "save_pretrained",
]
