"""Tiny LLaVA and LLaVA-OneVision models with their real processor classes.

LLaVA: a CLIP tower on 32 px crops of 8 px patches (16 image tokens, CLS dropped) and a Llama
decoder. LLaVA-OneVision: a SigLIP tower on 32 px views, anyres tiling over 32-64 px pinpoints
(a 16-token base view plus the unpadded tiles), and a Qwen2 decoder.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaImageProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    LlavaProcessor,
    Qwen2Config,
    SiglipVisionConfig,
)

from cooper_lib.backbones.tiny.common import instantiate, text_fields
from cooper_lib.backbones.tiny.tokenizer import train_tiny_tokenizer

_IMAGE = 32
_PATCH = 8
_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": _IMAGE,
    "patch_size": _PATCH,
}
_PINPOINTS = [[_IMAGE, _IMAGE], [_IMAGE, 2 * _IMAGE], [2 * _IMAGE, _IMAGE], [2 * _IMAGE, 2 * _IMAGE]]


def build(family: str, *, seed: int = 0, **overrides: Any) -> tuple[nn.Module, Any]:
    """Tiny random `family` model (eval, float32) and its processor; `overrides` are text-config fields."""
    builders = {"llava": _llava, "llava_onevision": _onevision}
    if family not in builders:
        raise ValueError(f"family: expected one of {sorted(builders)}, got {family!r}")
    return builders[family](seed, dict(overrides))


def _llava(seed: int, overrides: dict[str, Any]) -> tuple[nn.Module, Any]:
    tokenizer = train_tiny_tokenizer(
        ["<image>"],
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_attributes={"image_token": "<image>"},
    )
    processor = LlavaProcessor(
        image_processor=LlavaImageProcessor(
            size={"shortest_edge": _IMAGE}, crop_size={"height": _IMAGE, "width": _IMAGE}
        ),
        tokenizer=tokenizer,
        patch_size=_PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
    )
    tie = overrides.pop("tie_word_embeddings", False)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**_VISION),
        text_config=LlamaConfig(**text_fields(tokenizer, LlamaConfig, overrides)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(_IMAGE // _PATCH) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=tie,
    )
    return instantiate(LlavaForConditionalGeneration, config, seed), processor


def _onevision(seed: int, overrides: dict[str, Any]) -> tuple[nn.Module, Any]:
    named = {"image_token": "<image>", "video_token": "<video>"}
    tokenizer = train_tiny_tokenizer(
        ["<|im_start|>", *named.values()],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_attributes=named,
    )
    view = {"height": _IMAGE, "width": _IMAGE}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=view, image_grid_pinpoints=_PINPOINTS),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=view),
        num_image_tokens=(_IMAGE // _PATCH) ** 2,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
    )
    tie = overrides.pop("tie_word_embeddings", True)  # as llava-onevision-qwen2-0.5b
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**_VISION),
        text_config=Qwen2Config(**text_fields(tokenizer, Qwen2Config, overrides)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=_PINPOINTS,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=tie,
    )
    return instantiate(LlavaOnevisionForConditionalGeneration, config, seed), processor
