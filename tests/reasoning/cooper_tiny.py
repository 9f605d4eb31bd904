"""A tiny `CooperModel` and a character tokenizer for its 128-token vocabulary (reasoner and trainer tests)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cooper_lib.models.cooper import CooperModel, preset


class CharTokenizer:
    """One token per ASCII character (ids 32-126; anything else becomes '?'); ids 0-31 decode to ''."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) if 32 <= ord(c) < 127 else ord("?") for c in text]

    def decode(
        self, ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool = False
    ) -> str:
        return "".join(chr(i) for i in ids if 32 <= i < 127)


def tiny_model(seed: int = 0) -> CooperModel:
    torch.manual_seed(seed)
    return CooperModel(preset("tiny")).eval()


def scene(seed: int = 0, size: tuple[int, int] = (40, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
