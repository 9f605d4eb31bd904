"""Generation heads: from query hidden states to auxiliary maps, chosen by `add_spatial_heads(head=...)`."""

from cooper_lib.heads.base import PerceptionHead, build_head, head_names, register_head
from cooper_lib.heads.denoiser import FlowDenoiser
from cooper_lib.heads.dense import DenseHead
from cooper_lib.heads.discrete import DiscreteHead
from cooper_lib.heads.flow import FlowHead
from cooper_lib.heads.sampler import (
    SAMPLING_PRESETS,
    Guidance,
    euler_timesteps,
    guide,
    sample_euler,
    shift_timesteps,
)

__all__ = [
    "SAMPLING_PRESETS",
    "DenseHead",
    "DiscreteHead",
    "FlowDenoiser",
    "FlowHead",
    "Guidance",
    "PerceptionHead",
    "build_head",
    "euler_timesteps",
    "guide",
    "head_names",
    "register_head",
    "sample_euler",
    "shift_timesteps",
]
