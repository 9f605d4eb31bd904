"""Adapters for LLaVA and LLaVA-OneVision.

LLaVA crops an image to the tower's square input and gives one token per vision patch.
LLaVA-OneVision adds "anyres": an image alone in its sample is a low-resolution base view (a full
patch grid) followed by high-resolution tiles, unpadded back to the image's aspect ratio, pooled
when larger than ``anyres_max_N`` tiles, with a learned newline token closing every row.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from cooper_lib.backbones.base import BackboneAdapter, VisualLayout
from cooper_lib.backbones.registry import register_adapter


@register_adapter
class LlavaAdapter(BackboneAdapter):
    """LLaVA (1.5 and later single-resolution models): one CLIP/SigLIP patch grid per image."""

    family = "llava"
    model_types = ("llava",)
    square_image_block = True
    layout_notes = (
        "(rows, cols) = processed image size // vision patch size, the same for every image; "
        "a kept CLS token comes first (grid_offset 1)"
    )

    def visual_layout(self, processor: Any, image_size: tuple[int, int]) -> VisualLayout:
        """The vision tower's patch grid on the processed image, plus the extra tokens it keeps."""
        batch = self._single_image_inputs(processor, image_size)
        height, width = batch["pixel_values"].shape[-2:]
        patch = int(self.config.vision_config.patch_size)
        grid = (height // patch, width // patch)
        # Tokens before the patches (CLS); the "default" strategy drops the first one.
        extra = processor.num_additional_image_tokens - (
            processor.vision_feature_select_strategy == "default"
        )
        if extra < 0:
            raise ValueError(
                "processor: vision_feature_select_strategy='default' with num_additional_image_tokens=0 drops "
                "the first image patch, so no token grid covers the image; expected a tower with a CLS token "
                "or the 'full' strategy"
            )
        return VisualLayout(extra + grid[0] * grid[1], grid, grid_offset=extra)

    def check_processor(self, processor: Any) -> None:
        """Also reject a processor whose patch size or feature strategy differs from the model's."""
        super().check_processor(processor)
        self._check_processor_value(processor, "patch_size", self.config.vision_config.patch_size)
        self._check_processor_value(
            processor, "vision_feature_select_strategy", self.config.vision_feature_select_strategy
        )


@register_adapter
class LlavaOnevisionAdapter(BackboneAdapter):
    """LLaVA-OneVision: "anyres" tiling, so the processor needs `image_sizes` and grids vary per image."""

    family = "llava_onevision"
    model_types = ("llava_onevision",)
    required_inputs = ("input_ids", "attention_mask", "pixel_values", "image_sizes")
    image_input_axes = {"pixel_values": 0, "image_sizes": 0}
    #: Without `batch_num_images` every image keeps the single-image ("anyres") layout it was
    #: tokenised with; with it, a context holding several images would switch them all to base-view
    #: only, which no longer matches their tokens.
    continuation_drop_keys = ("batch_num_images",)
    layout_notes = (
        "(rows, cols) = the base view's patch grid, first; then the anyres tiles, unpadded, one newline "
        "token per row. Applies to an image alone in its sample: in a multi-image sample every image "
        "is the base grid plus one newline token"
    )

    def visual_layout(self, processor: Any, image_size: tuple[int, int]) -> VisualLayout:
        """Base-view grid first, then the unpadded anyres tiles with a newline per row (single image)."""
        if processor.vision_feature_select_strategy != "full":
            raise ValueError(
                f"processor: vision_feature_select_strategy is {processor.vision_feature_select_strategy!r}; "
                "LLaVA-OneVision's base view is a full patch grid only with 'full'"
            )
        from transformers.models.llava_onevision.modeling_llava_onevision import (
            get_anyres_image_grid_shape,
            unpad_image,
        )

        batch = self._single_image_inputs(processor, image_size)
        original = batch["image_sizes"][0].tolist()
        vision = self.config.vision_config
        side = vision.image_size // vision.patch_size
        tile_rows, tile_cols = get_anyres_image_grid_shape(
            original, self.config.image_grid_pinpoints, vision.image_size
        )
        # unpad_image only reads the shape; this mirrors the model's packing of the tile features.
        height, width = unpad_image(torch.empty(1, tile_rows * side, tile_cols * side), original).shape[-2:]
        max_tiles = int(self.config.vision_aspect_ratio.removeprefix("anyres_max_"))
        ratio = math.sqrt(height * width / (max_tiles * side**2))
        if ratio > 1.1:  # the model pools oversized tile grids down to about max_tiles tiles
            height, width = int(height // ratio), int(width // ratio)
        return VisualLayout(side * side + height * (width + 1), (side, side))

    def check_processor(self, processor: Any) -> None:
        """Also reject a processor whose base-view size or anyres settings differ from the model's."""
        super().check_processor(processor)
        vision = self.config.vision_config
        self._check_processor_value(
            processor, "num_image_tokens", (vision.image_size // vision.patch_size) ** 2
        )
        self._check_processor_value(processor, "vision_aspect_ratio", self.config.vision_aspect_ratio)
        self._check_processor_value(
            processor, "vision_feature_select_strategy", self.config.vision_feature_select_strategy
        )
        self._check_processor_value(
            processor, "image_processor.image_grid_pinpoints", self.config.image_grid_pinpoints
        )
