"""Adapters for Idefics3 and SmolVLM (same architecture: SigLIP tiles, pixel shuffle, Llama-style decoder).

Their processors split an image into square tiles of the vision encoder's size plus one global
view of the whole image (a small image is the global view alone); every view becomes
`image_seq_len` `<image>` tokens, the vision patches after the connector's pixel shuffle, in
row-major order on a ``side x side`` grid. The tiles come first (tile by tile, not row-major over
the image) and the global view last, so `visual_layout` reports that view: ``grid = (side, side)``
at ``grid_offset = num_tokens - side**2``.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from cooper_lib.backbones.base import BackboneAdapter, BackboneNotSupportedError, VisualLayout
from cooper_lib.backbones.registry import register_adapter


@register_adapter
class Idefics3Adapter(BackboneAdapter):
    """Idefics3: the decoder is `model.model.text_model`, images need `pixel_attention_mask`."""

    family = "idefics3"
    model_types = ("idefics3",)
    required_inputs = ("input_ids", "attention_mask", "pixel_values", "pixel_attention_mask")
    layout_notes = (
        "(rows, cols) = one view's pixel-shuffled token grid; a split image's tiles come first and the "
        "whole-image global view last (grid_offset)"
    )

    image_input_axes = {"pixel_values": 1, "pixel_attention_mask": 1}

    def language_model(self) -> nn.Module:
        """The text decoder stack (Idefics3 calls it `text_model`)."""
        return self.decoder().text_model

    @property
    def tokens_per_view(self) -> int:
        """`<image>` tokens per tile or global view: vision patches divided by the pixel-shuffle factor squared."""
        vision = self.config.vision_config
        return (vision.image_size // vision.patch_size) ** 2 // self.config.scale_factor**2

    def visual_layout(self, processor: Any, image_size: tuple[int, int]) -> VisualLayout:
        """All `<image>` tokens of the image's views; the grid is the global view, last (see the module doc)."""
        batch = self._single_image_inputs(processor, image_size)
        count = int((batch["input_ids"] == self.image_token_id).sum())
        views = int(batch["pixel_values"].shape[1])
        side = math.isqrt(self.tokens_per_view)
        if side * side != self.tokens_per_view or count != views * self.tokens_per_view:
            raise BackboneNotSupportedError(
                f"{self.family!r}: the processor gave {count} image tokens for {views} views, expected "
                f"{self.tokens_per_view} per view on a square grid"
            )
        return VisualLayout(count, (side, side), grid_offset=count - side * side)

    def check_processor(self, processor: Any) -> None:
        """The generic checks, plus the processor's `image_seq_len` against the model's tokens per view."""
        super().check_processor(processor)
        self._check_processor_value(processor, "image_seq_len", self.tokens_per_view)


@register_adapter
class SmolVLMAdapter(Idefics3Adapter):
    """SmolVLM: Idefics3's architecture and processor layout under another `model_type`."""

    family = "smolvlm"
    model_types = ("smolvlm",)
