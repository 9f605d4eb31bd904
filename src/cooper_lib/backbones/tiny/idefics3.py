"""Tiny Idefics3 and SmolVLM models with their real processor classes.

The vision tower sees 32 px tiles of 8 px patches; the connector's pixel shuffle (factor 2) makes
each tile or global view 4 `<image>` tokens. The image processor scales an image's longest edge
to 64 px, so it is cut into at most 2 x 2 tiles plus the global view: at most 20 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn
from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessor,
    Idefics3Processor,
    LlamaConfig,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessor,
    SmolVLMProcessor,
    SmolVLMVideoProcessor,
)

from cooper_lib.backbones.tiny.common import instantiate, text_fields
from cooper_lib.backbones.tiny.tokenizer import train_tiny_tokenizer

_TILE = 32
_PATCH = 8
_SCALE = 2
_IMAGE_SEQ_LEN = (_TILE // _PATCH) ** 2 // _SCALE**2
_NAMED_TOKENS = {
    "image_token": "<image>",
    "fake_image_token": "<fake_token_around_image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}
#: The processors name split tiles `<row_i_col_j>` for up to 6 x 6 tiles; real tokenizers hold them as tokens.
_TILE_TOKENS = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]


@dataclass(frozen=True)
class _Spec:
    config_cls: type
    model_cls: type[nn.Module]
    image_processor_cls: type
    smolvlm: bool


_SPECS = {
    "idefics3": _Spec(Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, False),
    "smolvlm": _Spec(SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessor, True),
}


def build(family: str, *, seed: int = 0, **overrides: Any) -> tuple[nn.Module, Any]:
    """Tiny random `family` model (eval, float32) and its processor; `overrides` are text-config fields.

    ``tie_word_embeddings`` may be overridden too; it defaults to the config class's (False).
    """
    if family not in _SPECS:
        raise ValueError(f"family: expected one of {sorted(_SPECS)}, got {family!r}")
    spec = _SPECS[family]
    tokenizer = train_tiny_tokenizer(
        [*_NAMED_TOKENS.values(), *_TILE_TOKENS],
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        extra_attributes=_NAMED_TOKENS,
    )
    sizes = {"size": {"longest_edge": 2 * _TILE}, "max_image_size": {"longest_edge": _TILE}}
    image_processor = spec.image_processor_cls(**sizes)
    if spec.smolvlm:
        processor = SmolVLMProcessor(
            image_processor, tokenizer, SmolVLMVideoProcessor(**sizes), image_seq_len=_IMAGE_SEQ_LEN
        )
    else:
        processor = Idefics3Processor(image_processor, tokenizer, image_seq_len=_IMAGE_SEQ_LEN)

    overrides = dict(overrides)
    tie = overrides.pop("tie_word_embeddings", spec.config_cls.tie_word_embeddings)
    text = {"model_type": "llama", **text_fields(tokenizer, LlamaConfig, overrides)}
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": _TILE,
        "patch_size": _PATCH,
    }
    config = spec.config_cls(
        text_config=text,
        vision_config=vision,
        scale_factor=_SCALE,
        image_token_id=tokenizer.convert_tokens_to_ids(_NAMED_TOKENS["image_token"]),
        tie_word_embeddings=tie,
    )
    return instantiate(spec.model_cls, config, seed), processor
