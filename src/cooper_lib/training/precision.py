"""Precision and memory switches of the training loop.

The documented default is fp32 master weights (``model.dtype: float32``) with bf16 autocast
(``run.mixed_precision: bf16``, or the launcher's ``accelerate launch --mixed_precision bf16``) on
GPU. AdamW on bf16 weights rounds away any update smaller than about 2**-9 of a weight, so at
COOPER's lr 5e-6 most weights never move (benchmarks/bf16_recipe.py measures it); `warn_low_precision`
says so when a run is set up that way.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

#: Below this peak lr, AdamW updates (about lr per step) on bf16/fp16 weights of typical magnitude
#: (0.01-0.1) fall under half a unit in the last place and are rounded away.
LOW_PRECISION_LR = 1e-4


def warn_low_precision(model: nn.Module, lr: float) -> list[str]:
    """Warn when trainable weights are bf16/fp16 and `lr` is small; returns the dtypes found.

    A `UserWarning` names the parameter count and the fix (load in float32 and train with bf16 autocast).
    """
    low = {}
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            name = str(param.dtype).removeprefix("torch.")
            low[name] = low.get(name, 0) + param.numel()
    if low and lr < LOW_PRECISION_LR:
        counts = ", ".join(f"{n:,} {dtype}" for dtype, n in sorted(low.items()))
        warnings.warn(
            f"optim.lr={lr:g} with trainable weights in low precision ({counts} parameters): AdamW "
            "updates this small are mostly rounded away (at lr 5e-6, 5 steps change only a few % of "
            "bf16 weights). Load the backbone in float32 (model.dtype: float32) and train with bf16 "
            "autocast (run.mixed_precision: bf16, or accelerate launch --mixed_precision bf16).",
            UserWarning,
            stacklevel=3,
        )
    return sorted(low)


def enable_gradient_checkpointing(backbone: nn.Module) -> None:
    """Turn on transformers' activation (gradient) checkpointing, non-reentrant, on `backbone`.

    Raises:
        TypeError: if `backbone` is not a transformers model that supports it.
    """
    if not getattr(backbone, "supports_gradient_checkpointing", False):
        raise TypeError(
            f"model.gradient_checkpointing: {type(backbone).__name__} does not support gradient checkpointing"
        )
    if hasattr(backbone, "activation_checkpointing_enable"):  # transformers >= 5.x name
        backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(backbone, "config"):
        backbone.config.use_cache = False
