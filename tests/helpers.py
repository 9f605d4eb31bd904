"""Shared test helpers: tiny backbones with spatial heads, and images."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from cooper_lib import add_spatial_heads
from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.ops.dispatch import HAS_TRITON

OP_BACKENDS = [
    "torch",
    pytest.param(
        "triton",
        marks=pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (the triton extra)"),
    ),
]
"""Backends the op tests run: the PyTorch path everywhere, the Triton kernels (interpreted on CPU) with triton."""

SMALL_HEADS = {"num_classes": 6, "output_size": (16, 16), "query_grid": (2, 2), "head_width": 32}


def images(n: int, size: int = 56) -> list[Image.Image]:
    """`n` distinct deterministic RGB images."""
    generator = torch.Generator().manual_seed(n)
    return [
        Image.fromarray((torch.rand(size, size, 3, generator=generator) * 255).byte().numpy())
        for _ in range(n)
    ]


def tiny_spatial(family: str, **kwargs):
    """A tiny `family` backbone with small depth + segmentation heads attached."""
    model, processor = build_tiny_backbone(family)
    return add_spatial_heads(model, processor, **{**SMALL_HEADS, **kwargs})
