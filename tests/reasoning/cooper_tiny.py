"""A tiny `CooperModel` and a character tokenizer for its 128-token vocabulary (reasoner and trainer tests)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cooper_lib.models.cooper import CharTokenizer, CooperModel, preset

__all__ = ["CharTokenizer", "scene", "tiny_model"]


def tiny_model(seed: int = 0) -> CooperModel:
    torch.manual_seed(seed)
    return CooperModel(preset("tiny")).eval()


def scene(seed: int = 0, size: tuple[int, int] = (40, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
