"""A tiny Mllama (Llama 3.2 Vision) with its real processor class.

The tokenizer is laid out like Llama 3.2's: the text vocabulary (BPE plus reserved special tokens
up to a multiple of 64) comes first and `<|image|>` right after it, so with the default vocabulary
its id equals the text `vocab_size`: it has an input-embedding row (Mllama builds
``vocab_size + 8``) but no lm_head row.
Images are cut into at most 4 tiles of 32 px (8 px patches). One decoder layer in four, from the
second on, is a cross-attention layer (layer 1 of the default 2).

transformers initialises the cross-attention layers' tanh gates (`cross_attn_attn_gate`,
`cross_attn_mlp_gate`) to zero: the text then ignores the images and no gradient reaches the
vision tower. The builder sets them to 1 (tanh(1) ~ 0.76), so a fresh tiny model sees its images.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    MllamaConfig,
    MllamaForConditionalGeneration,
    MllamaImageProcessor,
    MllamaProcessor,
    MllamaTextConfig,
)

from cooper_lib.backbones.tiny.common import instantiate, padded_vocab, text_fields
from cooper_lib.backbones.tiny.tokenizer import train_tiny_tokenizer

_TILE = 32
_PATCH = 8
_MAX_TILES = 4
_IMAGE_TOKEN = "<|image|>"


def build(family: str, *, seed: int = 0, **overrides: Any) -> tuple[nn.Module, Any]:
    """Tiny random Mllama (eval, float32) and its processor; `overrides` are text-config fields.

    Mllama's lm_head is never tied to the input embedding (their row counts differ).
    """
    if family != "mllama":
        raise ValueError(f"family: expected 'mllama', got {family!r}")
    tokenizer = train_tiny_tokenizer(
        ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|python_tag|>"],
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        pad_token="<|finetune_right_pad_id|>",
    )
    text_vocab = padded_vocab(tokenizer)
    reserved = [f"<|reserved_special_token_{i}|>" for i in range(text_vocab - len(tokenizer))]
    tokenizer.add_special_tokens(
        {"extra_special_tokens": [*reserved, _IMAGE_TOKEN]}, replace_extra_special_tokens=False
    )
    image_processor = MllamaImageProcessor(size={"height": _TILE, "width": _TILE}, max_image_tiles=_MAX_TILES)
    processor = MllamaProcessor(image_processor, tokenizer)

    if overrides.get("tie_word_embeddings"):
        raise ValueError(
            "overrides: tie_word_embeddings=True is impossible for Mllama, whose embedding has 8 rows more than lm_head"
        )
    text = text_fields(tokenizer, MllamaTextConfig, {"vocab_size": text_vocab, **overrides})
    text.setdefault("cross_attention_layers", list(range(1, text["num_hidden_layers"], 4)))
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_global_layers": 1,
        "attention_heads": 2,
        "image_size": _TILE,
        "patch_size": _PATCH,
        "max_num_tiles": _MAX_TILES,
        "intermediate_layers_indices": [0],
        "vision_output_dim": 32 * 2,  # final state + one intermediate layer, concatenated
    }
    config = MllamaConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=tokenizer.convert_tokens_to_ids(_IMAGE_TOKEN),
    )
    model = instantiate(MllamaForConditionalGeneration, config, seed)
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            for name in ("cross_attn_attn_gate", "cross_attn_mlp_gate"):
                if hasattr(layer, name):
                    getattr(layer, name).fill_(1.0)
    return model, processor
