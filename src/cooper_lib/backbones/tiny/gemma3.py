"""A tiny Gemma3 image-text model with its real processor class.

Images are resized to 32 px, cut into 8 px patches (4 x 4) and average-pooled to 2 x 2 = 4 soft
tokens. Decoder layers alternate sliding-window and full attention (released models use five
sliding layers per full one), so both mask kinds are exercised.

transformers initialises Gemma3's projector weight (`mm_input_projection_weight`) to zeros: image
features are then zero and no gradient reaches the vision tower. The builder redraws it from
``N(0, initializer_range**2)`` with the builder's seed, so a fresh tiny model sees its images.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessor,
    Gemma3Processor,
    Gemma3TextConfig,
)

from cooper_lib.backbones.tiny.common import head_dim, instantiate, text_fields
from cooper_lib.backbones.tiny.tokenizer import train_tiny_tokenizer

_IMAGE = 32
_PATCH = 8
_TOKENS_PER_IMAGE = 4
_NAMED_TOKENS = {
    "image_token": "<image_soft_token>",
    "boi_token": "<start_of_image>",
    "eoi_token": "<end_of_image>",
}


def build(family: str, *, seed: int = 0, **overrides: Any) -> tuple[nn.Module, Any]:
    """Tiny random Gemma3 (eval, float32) and its processor; `overrides` are text-config fields.

    ``tie_word_embeddings`` may be overridden too; it defaults to Gemma3's (True).
    """
    if family != "gemma3":
        raise ValueError(f"family: expected 'gemma3', got {family!r}")
    tokenizer = train_tiny_tokenizer(
        ["<start_of_turn>", "<end_of_turn>", *_NAMED_TOKENS.values()],
        bos_token="<bos>",
        extra_attributes=_NAMED_TOKENS,
    )
    processor = Gemma3Processor(
        Gemma3ImageProcessor(size={"height": _IMAGE, "width": _IMAGE}),
        tokenizer,
        image_seq_length=_TOKENS_PER_IMAGE,
    )

    overrides = dict(overrides)
    tie = overrides.pop("tie_word_embeddings", True)
    text = text_fields(tokenizer, Gemma3TextConfig, overrides)
    text.setdefault("head_dim", head_dim(text))
    text.setdefault("query_pre_attn_scalar", text["head_dim"])
    text.setdefault(
        "layer_types",
        ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(text["num_hidden_layers"])],
    )
    vision = {
        "model_type": "siglip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": _IMAGE,
        "patch_size": _PATCH,
        "vision_use_head": False,
    }
    ids = {
        f"{name.removesuffix('_token')}_token_index": tokenizer.convert_tokens_to_ids(t)
        for name, t in _NAMED_TOKENS.items()
    }
    config = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=_TOKENS_PER_IMAGE,
        tie_word_embeddings=tie,
        **ids,
    )
    model = instantiate(Gemma3ForConditionalGeneration, config, seed)
    generator = torch.Generator().manual_seed(seed)
    projection = model.model.multi_modal_projector.mm_input_projection_weight
    with torch.no_grad():
        projection.normal_(0.0, config.initializer_range, generator=generator)
    return model, processor
