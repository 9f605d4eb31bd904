"""Tiny Qwen2-VL, Qwen2.5-VL and Qwen3-VL models with their real processor classes.

Images are resized by the processor to multiples of ``patch_size * 2`` between one and nine merged
tokens (28-84 px for patch 14, 32-96 px for Qwen3-VL's patch 16), so a test image costs a few tokens.
With ``image_size=S`` every image is resized to about S x S px instead (S a multiple of
``2 * patch_size``), so it costs ``(S / (2 * patch_size)) ** 2`` visual tokens: ``image_size=112``
gives 16, ``image_size=112, patch_size=7`` gives 64. The tower's width, depth and heads are
``vision_hidden_size``, ``vision_layers`` and ``vision_heads`` (default 32, 2, 2).

``visual_positions`` says how the language model learns where a visual token sits in its image.
``"rotary"`` (the default) keeps the family as released: Qwen2-VL and Qwen2.5-VL tell it only
through rotary angles (2-D inside the tower, M-RoPE in the LM), so a token's content does not say
where it sits (Qwen3-VL's tower also adds learned position embeddings). ``"sincos"`` (Qwen2-VL and
Qwen2.5-VL) adds a fixed 2-D sin-cos embedding of its row and column to every merged visual token,
as BAGEL adds one after its connector, so the same cell of two images (a photo and its depth map)
carries the same vector wherever M-RoPE puts them. It is a forward hook on the tower, which a spec
rebuilds on load; a folder written by ``save_pretrained`` alone does not keep it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2_5_VLTextConfig,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLTextConfig,
    Qwen2VLVideoProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLTextConfig,
    Qwen3VLVideoProcessor,
)

from cooper_lib.backbones.tiny.common import head_dim, instantiate, text_fields, vision_fields
from cooper_lib.backbones.tiny.tokenizer import train_tiny_tokenizer

_MERGE = 2
_NAMED_TOKENS = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}


@dataclass(frozen=True)
class _Spec:
    config_cls: type
    text_config_cls: type
    model_cls: type[nn.Module]
    processor_cls: type
    video_processor_cls: type
    patch_size: int
    tie_word_embeddings: bool  # as in the family's smallest released checkpoint


_SPECS = {
    "qwen2_vl": _Spec(
        Qwen2VLConfig,
        Qwen2VLTextConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
        patch_size=14,
        tie_word_embeddings=False,
    ),
    "qwen2_5_vl": _Spec(
        Qwen2_5_VLConfig,
        Qwen2_5_VLTextConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLVideoProcessor,
        patch_size=14,
        tie_word_embeddings=True,
    ),
    "qwen3_vl": _Spec(
        Qwen3VLConfig,
        Qwen3VLTextConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
        patch_size=16,
        tie_word_embeddings=True,
    ),
}


#: `visual_positions` values: where a visual token's place in its image is told (module docstring).
VISUAL_POSITIONS = ("rotary", "sincos")


def _add_grid_positions(tower: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
    """Forward hook on a Qwen-VL vision tower: add a 2-D sin-cos embedding of each merged token's
    (row, column) to the tower's merged tokens (``output.pooler_output``, raster order per frame)."""
    from timm.layers import build_sincos2d_pos_embed  # timm is imported when a tower runs

    grid_thw = kwargs["grid_thw"] if "grid_thw" in kwargs else args[1]
    merged = output.pooler_output
    merge = tower.spatial_merge_size
    table = torch.cat(
        [
            build_sincos2d_pos_embed([h // merge, w // merge], dim=merged.shape[-1]).repeat(t, 1)
            for t, h, w in grid_thw.tolist()
        ]
    )
    output.pooler_output = merged + table.to(merged)
    return output


def _mrope_section(family: str, half_head_dim: int) -> list[int]:
    """(temporal, height, width) rotary split of half a head, in the released models' proportions."""
    if family == "qwen3_vl":  # interleaved, [24, 20, 20] for 64
        spatial = half_head_dim * 5 // 16
        return [half_head_dim - 2 * spatial, spatial, spatial]
    temporal = half_head_dim // 4  # contiguous, [16, 24, 24] for 64
    height = (half_head_dim - temporal) // 2
    return [temporal, height, half_head_dim - temporal - height]


def _vision_config(family: str, vision: dict[str, Any], text_hidden: int) -> dict[str, Any]:
    patch_size, width, depth = vision["patch_size"], vision["vision_hidden_size"], vision["vision_layers"]
    common = {
        "depth": depth,
        "num_heads": vision["vision_heads"],
        "patch_size": patch_size,
        "spatial_merge_size": _MERGE,
    }
    if family == "qwen2_vl":
        return {**common, "embed_dim": width, "mlp_ratio": 2, "hidden_size": text_hidden}
    vision = {**common, "hidden_size": width, "intermediate_size": 2 * width, "out_hidden_size": text_hidden}
    if family == "qwen2_5_vl":  # 2x2-merged-token windows; the last block attends globally
        return {**vision, "window_size": patch_size * _MERGE * 2, "fullatt_block_indexes": [depth - 1]}
    return {**vision, "num_position_embeddings": 16, "deepstack_visual_indexes": [0]}


def build(family: str, *, seed: int = 0, **overrides: Any) -> tuple[nn.Module, Any]:
    """Tiny random `family` model (eval, float32) and its processor; `overrides` are text-config
    fields and `VISION_OPTIONS` (see the module docstring)."""
    if family not in _SPECS:
        raise ValueError(f"family: expected one of {sorted(_SPECS)}, got {family!r}")
    spec = _SPECS[family]
    overrides = dict(overrides)
    positions = overrides.pop("visual_positions", "rotary")
    accepted = ("rotary",) if family == "qwen3_vl" else VISUAL_POSITIONS
    if positions not in accepted:
        raise ValueError(
            f"visual_positions: expected one of {list(accepted)} for {family}, got {positions!r}"
        )
    vision = vision_fields(
        overrides,
        {
            "vision_hidden_size": 32,
            "vision_layers": 2,
            "vision_heads": 2,
            "image_size": None,
            "patch_size": spec.patch_size,
        },
    )
    tokenizer = train_tiny_tokenizer(
        ["<|im_start|>", *_NAMED_TOKENS.values()],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_attributes=_NAMED_TOKENS,
    )
    factor = vision["patch_size"] * _MERGE
    pixel_range = {"shortest_edge": factor**2, "longest_edge": (3 * factor) ** 2}
    if vision["image_size"] is not None:
        if vision["image_size"] % factor:
            raise ValueError(
                f"image_size: expected a multiple of 2 * patch_size = {factor}, got {vision['image_size']}"
            )
        pixel_range = {"shortest_edge": vision["image_size"] ** 2, "longest_edge": vision["image_size"] ** 2}
    geometry = {"patch_size": vision["patch_size"], "merge_size": _MERGE, "temporal_patch_size": 2}
    processor = spec.processor_cls(
        image_processor=Qwen2VLImageProcessor(size=pixel_range, **geometry),
        tokenizer=tokenizer,
        video_processor=spec.video_processor_cls(size=pixel_range, **geometry),
    )

    tie = overrides.pop("tie_word_embeddings", spec.tie_word_embeddings)
    text = text_fields(tokenizer, spec.text_config_cls, overrides)
    rope = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": _mrope_section(family, head_dim(text) // 2),
    }
    if family == "qwen3_vl":  # its text config states head_dim explicitly and interleaves the sections
        text["head_dim"] = head_dim(text)
        rope["mrope_interleaved"] = True
    text.setdefault("rope_parameters", rope)
    ids = {
        name.removesuffix("_token") + "_token_id": tokenizer.convert_tokens_to_ids(t)
        for name, t in _NAMED_TOKENS.items()
    }
    config = spec.config_cls(
        text_config=text,
        vision_config=_vision_config(family, vision, text["hidden_size"]),
        tie_word_embeddings=tie,
        **ids,
    )
    model = instantiate(spec.model_cls, config, seed)
    if positions == "sincos":
        model.model.visual.register_forward_hook(_add_grid_positions, with_kwargs=True)
    return model, processor
