"""Adapter for Mllama (Llama 3.2 Vision): images reach the text through cross-attention layers.

An image is *not* a run of tokens in the sequence: the text holds one `<|image|>` token per image,
and the decoder's cross-attention layers attend to the vision states of the image's tiles, as the
processor's `cross_attention_mask` allows (each text token sees the images whose `<|image|>`
precedes it; text before an image does not see it). So `visual_layout` reports the one
placeholder, ``VisualLayout(num_tokens=1, grid=(1, 1))``, and `tile_arrangement` the
``(rows, cols)`` of tiles the image processor cuts the image into (each tile gives
``(image_size // patch_size)**2 + 1`` cross-attention states, the class token included).

In a continued context every image is appended to the cross-attention layers' cache (the layer
adds a new image's states after the cached ones), and the context keeps the whole
`cross_attention_mask`, one column block per image slot, extended by the processor's rule: a
token sees the latest image before it, so a segment's tokens before its new image keep seeing
the previous one. A step of several rows in which any row inserts an image gives every row a
slot; rows without an image get a zero image there that no token sees.

A full forward is not causal for text before the first image: such rows see no image, and the
model then un-masks them (they attend to every image of the sequence, later ones included).
Continuing from the cache keeps those rows as they were computed, which is what `generate` does;
a re-prefill of a context holding a later image changes them. So Mllama's next-token logits after
an insertion equal those of a re-prefill of everything after the prompt, not of the prompt too.

Mllama's input embedding has 8 rows more than its text vocabulary and lm_head (`<|image|>` sits in
them, so it can be read but never predicted), so the two are resized separately; see
`resize_embeddings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torch import nn

from cooper_lib.backbones.base import BackboneAdapter, BackboneNotSupportedError, VisualLayout
from cooper_lib.backbones.continuation import ContinuationState, Inputs
from cooper_lib.backbones.registry import register_adapter


@register_adapter
class MllamaAdapter(BackboneAdapter):
    """Mllama: one `<|image|>` token per image, vision states enter through cross-attention."""

    family = "mllama"
    model_types = ("mllama",)
    required_inputs = (
        "input_ids",
        "attention_mask",
        "pixel_values",
        "aspect_ratio_ids",
        "aspect_ratio_mask",
        "cross_attention_mask",
    )
    layout_notes = (
        "images enter through cross-attention: one <|image|> token per image (1 x 1); "
        "`tile_arrangement()` gives the (rows, cols) of vision tiles"
    )
    min_transformers = (
        "5.24",
        "before it a continued KV-cache context (the reasoner inserting a map) fails on the length "
        "of the cross-attention mask",
    )

    image_input_axes = {"pixel_values": 1, "aspect_ratio_ids": 1, "aspect_ratio_mask": 1}

    def continuation_inputs(
        self, state: ContinuationState, rows: Sequence[Inputs | None], length: int
    ) -> dict[str, Any]:
        """The whole context's `cross_attention_mask`, extended by this step (see the module doc)."""
        tiles = int(self.config.vision_config.max_num_tiles)
        previous = state.extra.get("cross_attention_mask")
        if previous is None:
            previous = torch.zeros(len(rows), 0, 0, tiles, dtype=torch.long)
        has_image = [seg is not None and "pixel_values" in seg for seg in rows]
        if any(has_image):
            previous = torch.cat(
                [previous, previous.new_zeros(len(rows), previous.shape[1], 1, tiles)], dim=2
            )
        step = previous.new_zeros(len(rows), length, previous.shape[2], tiles)
        for row, seg in enumerate(rows):
            if previous.shape[1]:
                step[row] = previous[row, -1]
            if not has_image[row]:
                continue
            own = seg["cross_attention_mask"][0, :, 0]  # [n, tiles]; non-zero from the image token on
            seen = own.any(dim=-1).nonzero()
            if len(seen):
                start = length - own.shape[0] + int(seen[0])
                step[row, start:] = 0
                step[row, start:, -1, : own.shape[-1]] = own[int(seen[0]) :]
        state.extra["cross_attention_mask"] = torch.cat([previous, step], dim=1)
        return {"cross_attention_mask": state.extra["cross_attention_mask"]}

    def context_inputs(self, input_ids: torch.Tensor, segments: Sequence[Inputs]) -> dict[str, Any]:
        """The processor's mask for the whole context: each image is seen from its token to the next image's."""
        from transformers.models.mllama.processing_mllama import (
            convert_sparse_cross_attention_mask_to_dense,
            get_cross_attention_token_mask,
        )

        ranges = get_cross_attention_token_mask(input_ids[0].tolist(), self.image_token_id)
        tiles = [
            int(mask.sum())
            for seg in segments
            if "aspect_ratio_mask" in seg
            for mask in seg["aspect_ratio_mask"][0]
        ]
        dense = convert_sparse_cross_attention_mask_to_dense(
            [ranges],
            [tiles],
            max_num_tiles=int(self.config.vision_config.max_num_tiles),
            length=input_ids.shape[1],
        )
        return {"cross_attention_mask": torch.from_numpy(dense).long()}

    def visual_layout(self, processor: Any, image_size: tuple[int, int]) -> VisualLayout:
        """The image's single `<|image|>` placeholder (see the module doc; `tile_arrangement` for the tiles)."""
        count = self.count_visual_tokens(processor, image_size)
        if count != 1:
            raise BackboneNotSupportedError(
                f"{self.family!r}: the processor put {count} <|image|> tokens for one image, expected 1"
            )
        return VisualLayout(1, (1, 1))

    def tile_arrangement(self, processor: Any, image_size: tuple[int, int]) -> tuple[int, int]:
        """(rows, cols) of the tiles `processor` cuts an image of `image_size` (height, width) into."""
        height, width = image_size
        if height < 1 or width < 1:
            raise ValueError(f"image_size: expected positive (height, width), got {image_size!r}")
        from transformers.models.mllama.image_processing_mllama import get_all_supported_aspect_ratios

        image_processor = processor.image_processor
        image = Image.new("RGB", (width, height), (127, 127, 127))
        ratio_id = int(image_processor(images=[[image]], return_tensors="pt")["aspect_ratio_ids"][0, 0])
        rows, cols = get_all_supported_aspect_ratios(image_processor.max_image_tiles)[ratio_id - 1]
        return rows, cols

    def resize_embeddings(self, num_tokens: int) -> None:
        """Give lm_head `num_tokens` rows and the input embedding `num_tokens` plus its extra rows.

        Keeps the embedding's rows beyond the vocabulary (8 in released models, where the model
        is built with ``text vocab_size + 8`` embedding rows) and sets ``text_config.vocab_size``
        to `num_tokens`, so the resized model still saves and reloads with `from_pretrained`.
        Added rows get transformers' default init; the caller sets the rows of the tokens it added.

        Raises:
            ValueError: if `num_tokens` is fewer than lm_head's rows (this only grows).
        """
        head_rows = self.output_embeddings().out_features
        if num_tokens < head_rows:
            raise ValueError(f"num_tokens: expected at least lm_head's {head_rows} rows, got {num_tokens}")
        extra = self.input_embeddings().num_embeddings - head_rows
        self.model.resize_token_embeddings(num_tokens + extra, mean_resizing=False)
        head = self.output_embeddings()
        trimmed = nn.Linear(
            head.in_features, num_tokens, bias=False, device=head.weight.device, dtype=head.weight.dtype
        )
        with torch.no_grad():
            trimmed.weight.copy_(head.weight[:num_tokens])
        trimmed.weight.requires_grad_(head.weight.requires_grad)
        self.model.set_output_embeddings(trimmed)
        self.text_config.vocab_size = num_tokens
        self.model.vocab_size = num_tokens

    def check_processor(self, processor: Any) -> None:
        """The generic checks, plus the image processor's tiling against the vision tower's."""
        super().check_processor(processor)
        vision = self.config.vision_config
        self._check_processor_value(processor, "image_processor.size.height", vision.image_size)
        max_tiles = getattr(processor.image_processor, "max_image_tiles", None)
        if not isinstance(max_tiles, int) or max_tiles > vision.max_num_tiles:
            raise ValueError(
                f"processor: its image processor cuts images into up to {max_tiles} tiles, but this "
                f"{self.model_type!r} model takes at most {vision.max_num_tiles}; expected the processor "
                f"that belongs to this model"
            )
