"""Idefics3 and SmolVLM adapters on their tiny backbones."""

import pytest
from adapter_contract import AdapterContract, image_of, prompt

from cooper_lib.backbones import adapter_for
from cooper_lib.backbones.idefics3 import Idefics3Adapter, SmolVLMAdapter
from cooper_lib.backbones.tiny import build_tiny_backbone


class TestIdefics3(AdapterContract):
    family = "idefics3"
    adapter_cls = Idefics3Adapter
    tied = False
    image_sizes = ((48, 64), (32, 64))  # 2x2 and 1x2 tiles, each plus the global view


class TestSmolVLM(AdapterContract):
    family = "smolvlm"
    adapter_cls = SmolVLMAdapter
    tied = False
    image_sizes = ((48, 64), (64, 32))  # 2x2 and 2x1 tiles, each plus the global view


@pytest.fixture(scope="module", params=["idefics3", "smolvlm"])
def tiny(request):
    model, processor = build_tiny_backbone(request.param)
    return model, processor, adapter_for(model)


def test_language_model_is_the_text_model(tiny):
    model, _, adapter = tiny
    assert adapter.language_model() is model.model.text_model
    assert adapter.decoder_layers() is model.model.text_model.layers
    assert adapter.vision_tower() is model.model.vision_model


@pytest.mark.parametrize(("size", "views"), [((48, 64), 5), ((32, 64), 3), ((100, 30), 3)])
def test_layout_is_the_global_view_after_the_tiles(tiny, size, views):
    _, processor, adapter = tiny
    side = 2  # 32 px views of 8 px patches, pixel-shuffled by 2
    layout = adapter.visual_layout(processor, size)
    assert layout.num_tokens == views * side * side
    assert layout.grid == (side, side)
    assert layout.grid_offset == layout.num_tokens - side * side


def test_global_view_tokens_are_the_last_image_tokens(tiny):
    """The layout's block must be the run right after <global-img>, where the processor puts the whole image."""
    _, processor, adapter = tiny
    tokenizer = adapter.tokenizer(processor)
    inputs = adapter.build_inputs(processor, [prompt(adapter, processor, "x")], [[image_of((48, 64))]])
    ids = inputs["input_ids"][0].tolist()
    image_positions = [i for i, t in enumerate(ids) if t == adapter.image_token_id]
    layout = adapter.visual_layout(processor, (48, 64))
    block = image_positions[layout.grid_offset : layout.grid_offset + layout.grid[0] * layout.grid[1]]
    assert ids[block[0] - 1] == tokenizer.convert_tokens_to_ids("<global-img>")
    assert block == list(range(block[0], block[0] + len(block)))


def test_unsplit_image_is_one_view(tiny):
    _, processor, adapter = tiny
    processor.image_processor.do_image_splitting = False
    try:
        layout = adapter.visual_layout(processor, (48, 64))
    finally:
        processor.image_processor.do_image_splitting = True
    assert (layout.num_tokens, layout.grid, layout.grid_offset) == (4, (2, 2), 0)


def test_rejects_a_processor_with_another_image_seq_len(tiny):
    _, processor, adapter = tiny
    processor.image_seq_len = 9
    try:
        with pytest.raises(ValueError, match="image_seq_len is 9"):
            adapter.check_processor(processor)
    finally:
        processor.image_seq_len = 4


def test_smolvlm_adapter_is_registered_for_its_own_model_type():
    model, _ = build_tiny_backbone("smolvlm")
    assert model.config.model_type == "smolvlm"
    assert type(adapter_for(model)) is SmolVLMAdapter
