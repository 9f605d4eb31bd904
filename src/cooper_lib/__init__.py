"""cooper-lib: COOPER's auxiliary-modality generation and adaptive interleaved reasoning for any HF MLLM."""

from cooper_lib.attach import add_spatial_heads
from cooper_lib.backbones import BackboneAdapter, adapter_for, register_adapter, supported_families
from cooper_lib.config import ModalitySpec, SpatialConfig
from cooper_lib.heads import DenseHead
from cooper_lib.model import SpatialModel, SpatialOutput

__version__ = "0.1.0"

__all__ = [
    "BackboneAdapter",
    "DenseHead",
    "ModalitySpec",
    "SpatialConfig",
    "SpatialModel",
    "SpatialOutput",
    "adapter_for",
    "add_spatial_heads",
    "register_adapter",
    "supported_families",
]
