"""Tiny InternVL model with its real processor class.

An InternViT tower on 32 px tiles of 8 px patches, pixel-shuffled by 0.5 to 2x2 = 4 tokens per
tile; the processor splits an image into up to 4 tiles plus a thumbnail; the decoder is Qwen2.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import (
    GotOcr2ImageProcessor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    InternVLVideoProcessor,
    InternVLVisionConfig,
    Qwen2Config,
)

from cooper_lib.backbones.tiny.common import instantiate, text_fields
from cooper_lib.backbones.tiny.tokenizer import train_tiny_tokenizer

_TILE = 32
_PATCH = 8
_DOWNSAMPLE = 0.5
_NAMED_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}


def build(family: str, *, seed: int = 0, **overrides: Any) -> tuple[nn.Module, Any]:
    """Tiny random InternVL model (eval, float32) and its processor; `overrides` are text-config fields."""
    if family != "internvl":
        raise ValueError(f"family: expected 'internvl', got {family!r}")
    tokenizer = train_tiny_tokenizer(
        ["<|im_start|>", *_NAMED_TOKENS.values()],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_attributes=_NAMED_TOKENS,
    )
    tile = {"height": _TILE, "width": _TILE}
    tokens_per_tile = int(_TILE // _PATCH * _DOWNSAMPLE) ** 2
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=tile, crop_to_patches=True, min_patches=1, max_patches=4),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=tile),
        image_seq_length=tokens_per_tile,
    )
    overrides = dict(overrides)
    tie = overrides.pop("tie_word_embeddings", True)  # InternVL's default, as InternVL3-1B
    vision = InternVLVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=[_TILE, _TILE],
        patch_size=[_PATCH, _PATCH],
    )
    config = InternVLConfig(
        vision_config=vision,
        text_config=Qwen2Config(**text_fields(tokenizer, Qwen2Config, overrides)),
        image_token_id=tokenizer.convert_tokens_to_ids(_NAMED_TOKENS["context_image_token"]),
        image_seq_length=tokens_per_tile,
        downsample_ratio=_DOWNSAMPLE,
        vision_feature_layer=-1,
        tie_word_embeddings=tie,
    )
    return instantiate(InternVLForConditionalGeneration, config, seed), processor
