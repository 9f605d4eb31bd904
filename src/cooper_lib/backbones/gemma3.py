"""Adapter for Gemma3 (the image-text models: SigLIP, average-pooled to `mm_tokens_per_image` tokens).

Gemma3 quirks the adapter absorbs:

- the placeholder in text is `<start_of_image>` (the processor's `image_token`, also what its
  `image_token_id` names), which the processor expands to
  ``"\\n\\n<start_of_image>" + "<image_soft_token>" * mm_tokens_per_image + "<end_of_image>\\n\\n"``;
  the model's `image_token_id` is the soft token's. `check_processor` compares the right ones;
- the processor's `token_type_ids` (1 on soft tokens) let an image's tokens attend to each
  other bidirectionally, so they are a required input;
- the input embedding is `Gemma3TextScaledWordEmbedding`, whose *output* is scaled by
  ``sqrt(hidden_size)``; `input_embeddings()` returns that module, and its output is exactly what
  the decoder adds image features to. Read embedding scale from its output, not its weight;
- in a continued context, a segment holding an image passes the *whole* context's
  `token_type_ids`: the model builds the bidirectional image blocks from them indexed by absolute
  position, so a segment's own ids would put its image block at the wrong place;
- `Gemma3ForConditionalGeneration` applies no final logit soft-capping (unlike Gemma2 and
  Gemma3's text-only model), whatever the text config says: `logit_softcap` is None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from cooper_lib.backbones.base import BackboneAdapter, BackboneNotSupportedError, VisualLayout
from cooper_lib.backbones.continuation import ContinuationState, Inputs, left_pad_key
from cooper_lib.backbones.registry import register_adapter


@register_adapter
class Gemma3Adapter(BackboneAdapter):
    """Gemma3: `mm_tokens_per_image` soft tokens per image on a square grid."""

    family = "gemma3"
    model_types = ("gemma3",)
    square_image_block = True
    required_inputs = ("input_ids", "attention_mask", "pixel_values", "token_type_ids")
    layout_notes = (
        "(rows, cols) = sqrt(mm_tokens_per_image) pooled soft tokens a side, the same for every image; "
        "pan-and-scan crops add more such views after the whole image's"
    )

    @property
    def logit_softcap(self) -> float | None:
        """None: the image-text model's forward returns ``lm_head(hidden)`` uncapped."""
        return None

    @property
    def grid_side(self) -> int:
        """Side of the square grid of pooled soft tokens one image (or pan-and-scan crop) becomes."""
        tokens = int(self.config.mm_tokens_per_image)
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise BackboneNotSupportedError(f"config.mm_tokens_per_image={tokens} is not a square number")
        return side

    def visual_layout(self, processor: Any, image_size: tuple[int, int]) -> VisualLayout:
        """`num_tokens` counts every soft token the image gets; `grid` is one view's ``(side, side)``.

        With pan-and-scan on, each crop is one more ``side x side`` view after the whole image, so
        `num_tokens` is a multiple of ``side**2`` while `grid` stays one view's.
        """
        count = self.count_visual_tokens(processor, image_size)
        side = self.grid_side
        if count == 0 or count % (side * side):
            raise BackboneNotSupportedError(
                f"{self.family!r}: the processor gave {count} image tokens, not a positive multiple of "
                f"mm_tokens_per_image={side * side}"
            )
        return VisualLayout(count, (side, side))

    def continuation_inputs(
        self, state: ContinuationState, rows: Sequence[Inputs | None], length: int
    ) -> dict[str, Any]:
        """The whole context's `token_type_ids` when the step holds an image (see the module doc)."""
        step = left_pad_key(rows, "token_type_ids", length)
        previous = state.extra.get("token_type_ids")
        state.extra["token_type_ids"] = step if previous is None else torch.cat([previous, step], dim=1)
        return {"token_type_ids": state.extra["token_type_ids"]} if bool(step.any()) else {}

    def context_inputs(self, input_ids: torch.Tensor, segments: Sequence[Inputs]) -> dict[str, Any]:
        """The whole context's `token_type_ids` (1 on image soft tokens)."""
        types = [seg.get("token_type_ids", torch.zeros_like(seg["input_ids"])) for seg in segments]
        return {"token_type_ids": torch.cat(types, dim=1)}

    def check_processor(self, processor: Any) -> None:
        """Vocabulary size, the soft and begin-of-image token ids, and tokens per image against the model."""
        tokenizer = self.tokenizer(processor)
        rows = self.input_embeddings().num_embeddings
        if len(tokenizer) > rows:
            raise ValueError(
                f"processor: its tokenizer has {len(tokenizer)} tokens but the model's input embeddings "
                f"have {rows} rows; expected the processor that belongs to this {self.model_type!r} model"
            )
        # The processor's own `image_token` / `image_token_id` name <start_of_image>: ask its tokenizer.
        self._check_processor_value(processor, "tokenizer.image_token_id", self.image_token_id)
        self._check_processor_value(processor, "tokenizer.boi_token_id", self.config.boi_token_id)
        self._check_processor_value(processor, "image_seq_length", self.config.mm_tokens_per_image)
