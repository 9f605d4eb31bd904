"""A tiny PaliGemma 2 (SigLIP + Gemma 2 decoder) with its real processor class.

The decoder is Gemma 2, as in PaliGemma 2, so the final logit soft-capping (30) and the attention
logit soft-capping (50) of released checkpoints are exercised. Images are resized to 32 px and cut
into 8 px patches: 16 `<image>` tokens. The processor adds PaliGemma's 1,152 `<locXXXX>` /
`<segXXX>` tokens to the tokenizer, so the vocabulary is about 1.7k.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import (
    Gemma2Config,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    SiglipImageProcessor,
)

from cooper_lib.backbones.tiny.common import head_dim, instantiate, text_fields
from cooper_lib.backbones.tiny.tokenizer import train_tiny_tokenizer

_IMAGE = 32
_PATCH = 8


def build(family: str, *, seed: int = 0, **overrides: Any) -> tuple[nn.Module, Any]:
    """Tiny random PaliGemma 2 (eval, float32) and its processor; `overrides` are text-config fields.

    ``tie_word_embeddings`` may be overridden too; it defaults to PaliGemma's (True).
    """
    if family != "paligemma":
        raise ValueError(f"family: expected 'paligemma', got {family!r}")
    tokenizer = train_tiny_tokenizer([], bos_token="<bos>", extra_attributes={"image_token": "<image>"})
    image_processor = SiglipImageProcessor(
        size={"height": _IMAGE, "width": _IMAGE}, image_seq_length=(_IMAGE // _PATCH) ** 2
    )
    processor = PaliGemmaProcessor(image_processor, tokenizer)  # adds the location / segmentation tokens

    overrides = dict(overrides)
    tie = overrides.pop("tie_word_embeddings", True)
    text = {"model_type": "gemma2", **text_fields(tokenizer, Gemma2Config, overrides)}
    text.setdefault("head_dim", head_dim(text))
    text.setdefault("query_pre_attn_scalar", text["head_dim"])
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
    config = PaliGemmaConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=processor.image_token_id,
        projection_dim=text["hidden_size"],
        hidden_size=text["hidden_size"],
        vocab_size=text["vocab_size"],
        tie_word_embeddings=tie,
    )
    return instantiate(PaliGemmaForConditionalGeneration, config, seed), processor
