"""Adapter for InternVL (the transformers-native ``InternVLForConditionalGeneration``).

The processor splits an image into square tiles on an aspect-ratio grid and, when there is more
than one tile, appends a whole-image thumbnail; each tile is pixel-shuffled by
``downsample_ratio`` into a small square token grid between ``<img>`` and ``</img>``.
"""

from __future__ import annotations

from typing import Any

from cooper_lib.backbones.base import BackboneAdapter, VisualLayout
from cooper_lib.backbones.registry import register_adapter


@register_adapter
class InternVLAdapter(BackboneAdapter):
    """InternVL (the transformers port): pixel-shuffled InternViT tiles behind a projector."""

    family = "internvl"
    model_types = ("internvl",)
    layout_notes = (
        "(rows, cols) = one tile's token grid (tile patches x downsample_ratio); an image is one or "
        "more tiles, and with several the whole-image thumbnail comes last (grid_offset)"
    )

    def tile_grid(self) -> tuple[int, int]:
        """(rows, cols) of the tokens one tile gives after the pixel shuffle."""
        vision = self.config.vision_config
        ratio = self.config.downsample_ratio
        sizes, patches = (
            v if isinstance(v, (list, tuple)) else (v, v) for v in (vision.image_size, vision.patch_size)
        )
        rows, cols = (int(size // patch * ratio) for size, patch in zip(sizes, patches, strict=True))
        return rows, cols

    def visual_layout(self, processor: Any, image_size: tuple[int, int]) -> VisualLayout:
        """Tiles times the tile grid; the grid is the thumbnail, last, when the image is tiled."""
        batch = self._single_image_inputs(processor, image_size)
        tiles = int(batch["pixel_values"].shape[0])
        grid = self.tile_grid()
        per_tile = grid[0] * grid[1]
        return VisualLayout(tiles * per_tile, grid, grid_offset=(tiles - 1) * per_tile)

    def check_processor(self, processor: Any) -> None:
        """Also reject a processor whose tokens per tile differ from the model's."""
        super().check_processor(processor)
        rows, cols = self.tile_grid()
        self._check_processor_value(processor, "image_seq_length", rows * cols)
