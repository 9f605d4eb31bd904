"""Tiny LLaVA and LLaVA-OneVision models with their real processor classes.

LLaVA: a CLIP tower on 32 px crops of 8 px patches (16 image tokens, CLS dropped) and a Llama
decoder. LLaVA-OneVision: a SigLIP tower on 32 px views, anyres tiling over 32-64 px pinpoints
(a 16-token base view plus the unpadded tiles), and a Qwen2 decoder.

``image_size`` and ``patch_size`` (a multiple of it) change the crop / view side and the patch side,
so an image costs ``(image_size // patch_size) ** 2`` tokens (LLaVA-OneVision: per view, pinpoints
scaled alike); ``vision_hidden_size``, ``vision_layers``, ``vision_heads`` size the tower.
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

from cooper_lib.backbones.tiny.common import instantiate, text_fields, vision_fields
from cooper_lib.backbones.tiny.tokenizer import train_tiny_tokenizer

_DEFAULTS = {
    "vision_hidden_size": 32,
    "vision_layers": 2,
    "vision_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}


def _tower(overrides: dict[str, Any]) -> dict[str, int]:
    """CLIP / SigLIP config fields from the vision options popped out of `overrides`."""
    vision = vision_fields(overrides, _DEFAULTS)
    if vision["image_size"] % vision["patch_size"]:
        raise ValueError(
            f"image_size: expected a multiple of patch_size={vision['patch_size']}, got {vision['image_size']}"
        )
    return {
        "hidden_size": vision["vision_hidden_size"],
        "intermediate_size": 2 * vision["vision_hidden_size"],
        "num_hidden_layers": vision["vision_layers"],
        "num_attention_heads": vision["vision_heads"],
        "image_size": vision["image_size"],
        "patch_size": vision["patch_size"],
    }


def build(family: str, *, seed: int = 0, **overrides: Any) -> tuple[nn.Module, Any]:
    """Tiny random `family` model (eval, float32) and its processor; `overrides` are text-config
    fields and `VISION_OPTIONS` (see the module docstring)."""
    builders = {"llava": _llava, "llava_onevision": _onevision}
    if family not in builders:
        raise ValueError(f"family: expected one of {sorted(builders)}, got {family!r}")
    overrides = dict(overrides)
    tower = _tower(overrides)
    return builders[family](seed, tower, overrides)


def _llava(seed: int, tower: dict[str, int], overrides: dict[str, Any]) -> tuple[nn.Module, Any]:
    side, patch = tower["image_size"], tower["patch_size"]
    tokenizer = train_tiny_tokenizer(
        ["<image>"],
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_attributes={"image_token": "<image>"},
    )
    processor = LlavaProcessor(
        image_processor=LlavaImageProcessor(
            size={"shortest_edge": side}, crop_size={"height": side, "width": side}
        ),
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
    )
    tie = overrides.pop("tie_word_embeddings", False)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**tower),
        text_config=LlamaConfig(**text_fields(tokenizer, LlamaConfig, overrides)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(side // patch) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=tie,
    )
    return instantiate(LlavaForConditionalGeneration, config, seed), processor


def _onevision(seed: int, tower: dict[str, int], overrides: dict[str, Any]) -> tuple[nn.Module, Any]:
    side, patch = tower["image_size"], tower["patch_size"]
    pinpoints = [[side, side], [side, 2 * side], [2 * side, side], [2 * side, 2 * side]]
    named = {"image_token": "<image>", "video_token": "<video>"}
    tokenizer = train_tiny_tokenizer(
        ["<|im_start|>", *named.values()],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_attributes=named,
    )
    view = {"height": side, "width": side}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=view, image_grid_pinpoints=pinpoints),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=view),
        num_image_tokens=(side // patch) ** 2,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
    )
    tie = overrides.pop("tie_word_embeddings", True)  # as llava-onevision-qwen2-0.5b
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**tower),
        text_config=Qwen2Config(**text_fields(tokenizer, Qwen2Config, overrides)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=tie,
    )
    return instantiate(LlavaOnevisionForConditionalGeneration, config, seed), processor
