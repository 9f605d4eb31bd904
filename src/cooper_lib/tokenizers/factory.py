"""Build or load a tokenizer by kind, so callers can select one by name or from a saved folder."""

from __future__ import annotations

import os
from typing import Any

from cooper_lib.tokenizers._files import read_config
from cooper_lib.tokenizers.patch import PatchTokenizer
from cooper_lib.tokenizers.vq import VQConfig, VQTokenizer

__all__ = ["TOKENIZER_TYPES", "build_tokenizer", "load_tokenizer"]

TOKENIZER_TYPES: dict[str, type[PatchTokenizer] | type[VQTokenizer]] = {
    "patch": PatchTokenizer,
    "vq": VQTokenizer,
}


def build_tokenizer(kind: str, **config: Any) -> PatchTokenizer | VQTokenizer:
    """A new tokenizer: ``"patch"`` takes ``PatchTokenizer`` arguments, ``"vq"`` ``VQConfig`` fields."""
    if kind == "patch":
        return PatchTokenizer(**config)
    if kind == "vq":
        return VQTokenizer(VQConfig.from_dict(config))
    raise ValueError(f"kind: expected one of {sorted(TOKENIZER_TYPES)}, got {kind!r}")


def load_tokenizer(
    directory: str | os.PathLike, autoencoder: Any | None = None
) -> PatchTokenizer | VQTokenizer:
    """Load whichever tokenizer ``save_pretrained`` wrote to ``directory``."""
    kind = read_config(directory).get("tokenizer_type")
    if kind == "patch":
        return PatchTokenizer.from_pretrained(directory, autoencoder=autoencoder)
    if kind == "vq":
        if autoencoder is not None:
            raise ValueError("autoencoder: a VQ tokenizer takes no autoencoder")
        return VQTokenizer.from_pretrained(directory)
    raise ValueError(f"directory: unknown tokenizer_type {kind!r} in {directory}")
