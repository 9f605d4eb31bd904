"""Adapters for Qwen2-VL, Qwen2.5-VL and Qwen3-VL.

The three share the visual layout: the processor resizes an image to multiples of
``patch_size * merge_size``, reports its patch grid as ``image_grid_thw`` and fills one
``<|image_pad|>`` per merged ``merge_size x merge_size`` patch block, row-major. The model needs
``image_grid_thw`` and ``mm_token_type_ids`` to build its 3-D rotary positions (M-RoPE).

M-RoPE in a continued context: an image's tokens get (t, h, w) positions from the image's start,
and the text after it resumes at the image's largest position + 1, so positions are not the token
count. A segment appended to a KV-cached context gets its positions from the model's own
`get_rope_index`, offset by the row's running position, rather than from the model's stored
``rope_deltas`` (which only describe the prompt's images).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cooper_lib.backbones.base import BackboneAdapter, BackboneNotSupportedError, VisualLayout
from cooper_lib.backbones.continuation import ContinuationState, Inputs, left_pad_key
from cooper_lib.backbones.registry import register_adapter


class _QwenVLAdapter(BackboneAdapter):
    """What the Qwen-VL generations share; each subclass only names its family."""

    required_inputs = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")
    square_image_block = True  # for square images; a wide or tall one is refused when it is seen
    layout_notes = (
        "(rows, cols) = image_grid_thw[1:] // spatial_merge_size: the merged patch grid, row-major; "
        "the image's size sets it"
    )

    def image_placeholder(self, processor: Any) -> str:
        """``<|vision_start|><|image_pad|><|vision_end|>``: the image token between the vision markers."""
        tokenizer = self.tokenizer(processor)
        marker_ids = (self.config.vision_start_token_id, self.config.vision_end_token_id)
        start, end = tokenizer.convert_ids_to_tokens(list(marker_ids))
        if start is None or end is None:
            raise BackboneNotSupportedError(
                f"processor: its tokenizer has no tokens for the vision markers {marker_ids} of this "
                f"{self.model_type!r} model"
            )
        return f"{start}{super().image_placeholder(processor)}{end}"

    image_input_axes = {"pixel_values": 0, "image_grid_thw": 0}

    def continuation_positions(
        self, state: ContinuationState, rows: Sequence[Inputs | None], length: int
    ) -> torch.Tensor:
        """3-D positions [3, B, L]: `get_rope_index` of each row's segment plus its running position."""
        out = torch.zeros(3, len(rows), length, dtype=torch.long)
        for row, seg in enumerate(rows):
            if seg is None:
                continue
            n = seg["input_ids"].shape[1]
            start = state.next_position[row]
            if "image_grid_thw" in seg:
                positions, _ = self.decoder().get_rope_index(
                    input_ids=seg["input_ids"],
                    mm_token_type_ids=seg["mm_token_type_ids"],
                    image_grid_thw=seg["image_grid_thw"],
                )
                positions = positions[:, 0].cpu() + start
            else:
                positions = torch.arange(start, start + n).expand(3, n)
            out[:, row, length - n :] = positions
            state.next_position[row] = int(positions.max()) + 1
        return out

    def continuation_inputs(
        self, state: ContinuationState, rows: Sequence[Inputs | None], length: int
    ) -> dict[str, Any]:
        """`mm_token_type_ids` of a step that holds images (the model locates image tokens with it)."""
        if not any(seg is not None and "image_grid_thw" in seg for seg in rows):
            return {}
        return {"mm_token_type_ids": left_pad_key(rows, "mm_token_type_ids", length)}

    def context_inputs(self, input_ids: torch.Tensor, segments: Sequence[Inputs]) -> dict[str, Any]:
        """The whole context's `mm_token_type_ids`; the model then computes M-RoPE positions itself."""
        types = [seg.get("mm_token_type_ids", torch.zeros_like(seg["input_ids"])) for seg in segments]
        return {"mm_token_type_ids": torch.cat(types, dim=1)}

    def visual_layout(self, processor: Any, image_size: tuple[int, int]) -> VisualLayout:
        """The merged patch grid the processor gives an image of `image_size` (height, width)."""
        batch = self._single_image_inputs(processor, image_size)
        frames, rows, cols = (int(v) for v in batch["image_grid_thw"][0])
        merge = int(self.config.vision_config.spatial_merge_size)
        grid = (rows // merge, cols // merge)
        return VisualLayout(frames * grid[0] * grid[1], grid)

    def check_processor(self, processor: Any) -> None:
        """Also reject an image processor whose patch or merge size differs from the vision tower's."""
        super().check_processor(processor)
        vision = self.config.vision_config
        self._check_processor_value(processor, "image_processor.patch_size", vision.patch_size)
        self._check_processor_value(processor, "image_processor.merge_size", vision.spatial_merge_size)


@register_adapter
class Qwen2VLAdapter(_QwenVLAdapter):
    """Qwen2-VL."""

    family = "qwen2_vl"
    model_types = ("qwen2_vl",)


@register_adapter
class Qwen25VLAdapter(_QwenVLAdapter):
    """Qwen2.5-VL."""

    family = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)


@register_adapter
class Qwen3VLAdapter(_QwenVLAdapter):
    """Qwen3-VL."""

    family = "qwen3_vl"
    model_types = ("qwen3_vl",)
