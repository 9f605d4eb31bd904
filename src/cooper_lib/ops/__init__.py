"""Fused loss ops: Triton kernels on CUDA, exact PyTorch implementations everywhere else.

Every op takes ``backend="auto" | "triton" | "torch"`` (see :mod:`cooper_lib.ops.dispatch`) and has a
``*_reference`` twin in plain PyTorch, used by the tests and benchmarks.
"""

from cooper_lib.ops.depth_losses import (
    silog_loss,
    silog_loss_reference,
    ssi_depth_loss,
    ssi_depth_loss_reference,
)
from cooper_lib.ops.dispatch import resolve_backend
from cooper_lib.ops.flow_matching import flow_matching_loss, flow_matching_loss_reference
from cooper_lib.ops.hf_patch import patch_linear_cross_entropy, unpatch_linear_cross_entropy
from cooper_lib.ops.linear_ce import (
    LinearCrossEntropyOutput,
    default_block_size,
    default_chunk_size,
    linear_cross_entropy,
    linear_cross_entropy_reference,
)
from cooper_lib.ops.linear_ce_module import LinearCrossEntropy
from cooper_lib.ops.seg_ce_dice import seg_ce_dice_loss, seg_ce_dice_loss_reference

__all__ = [
    "LinearCrossEntropy",
    "LinearCrossEntropyOutput",
    "default_block_size",
    "default_chunk_size",
    "flow_matching_loss",
    "flow_matching_loss_reference",
    "linear_cross_entropy",
    "linear_cross_entropy_reference",
    "patch_linear_cross_entropy",
    "resolve_backend",
    "seg_ce_dice_loss",
    "seg_ce_dice_loss_reference",
    "silog_loss",
    "silog_loss_reference",
    "ssi_depth_loss",
    "ssi_depth_loss_reference",
    "unpatch_linear_cross_entropy",
]
