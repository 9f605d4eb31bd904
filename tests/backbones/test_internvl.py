"""InternVL adapter on its tiny backbone."""

import pytest
from adapter_contract import AdapterContract

from cooper_lib.backbones.internvl import InternVLAdapter
from cooper_lib.backbones.tiny import build_tiny_backbone


class TestInternVL(AdapterContract):
    family = "internvl"
    adapter_cls = InternVLAdapter
    tied = True
    image_sizes = ((40, 50), (30, 60))  # one tile; two tiles plus the thumbnail


@pytest.mark.parametrize(("size", "tiles"), [((40, 50), 1), ((30, 60), 3), ((64, 64), 5)])
def test_tiles_and_thumbnail_offset(size, tiles):
    model, processor = build_tiny_backbone("internvl")
    adapter = InternVLAdapter(model)
    layout = adapter.visual_layout(processor, size)
    per_tile = layout.grid[0] * layout.grid[1]
    assert layout.grid == (2, 2)  # 32 px tile / 8 px patch * 0.5
    assert layout.num_tokens == tiles * per_tile
    assert layout.grid_offset == (tiles - 1) * per_tile  # the thumbnail is the last tile


def test_rejects_a_processor_with_other_tokens_per_tile():
    model, processor = build_tiny_backbone("internvl")
    processor.image_seq_length = 16
    with pytest.raises(ValueError, match="image_seq_length is 16 .* expects 4"):
        InternVLAdapter(model).check_processor(processor)
