"""LLaVA and LLaVA-OneVision adapters on their tiny backbones."""

import pytest
import torch
from adapter_contract import AdapterContract, image_of, prompt

from cooper_lib.backbones.llava import LlavaAdapter, LlavaOnevisionAdapter
from cooper_lib.backbones.tiny import build_tiny_backbone


class TestLlava(AdapterContract):
    family = "llava"
    adapter_cls = LlavaAdapter
    tied = False
    image_sizes = ((30, 60), (64, 64))  # both cropped to the tower's 32x32 input


class TestLlavaOnevision(AdapterContract):
    family = "llava_onevision"
    adapter_cls = LlavaOnevisionAdapter
    tied = True
    image_sizes = ((30, 60), (64, 64))  # 1x2 and 2x2 anyres tiles after the base view


def test_llava_grid_is_the_towers_patch_grid():
    model, processor = build_tiny_backbone("llava")
    vision = model.config.vision_config
    side = vision.image_size // vision.patch_size
    layout = LlavaAdapter(model).visual_layout(processor, (100, 30))
    assert (layout.grid, layout.grid_offset, layout.num_tokens) == ((side, side), 0, side * side)


def test_llava_full_strategy_keeps_cls_in_front():
    model, processor = build_tiny_backbone("llava")
    model.config.vision_feature_select_strategy = processor.vision_feature_select_strategy = "full"
    adapter = LlavaAdapter(model)
    layout = adapter.visual_layout(processor, (40, 40))
    assert layout.grid_offset == 1 and layout.num_tokens == 1 + layout.grid[0] * layout.grid[1]
    assert layout.num_tokens == adapter.count_visual_tokens(processor, (40, 40))


def test_llava_rejects_a_processor_with_another_patch_size():
    model, processor = build_tiny_backbone("llava")
    processor.patch_size = 16
    with pytest.raises(ValueError, match="patch_size is 16"):
        LlavaAdapter(model).check_processor(processor)


def test_onevision_pooled_anyres_layout_matches_the_processor():
    """With anyres_max_1, a 2x2-tile image is pooled down; the layout must follow the model's pooling."""
    model, processor = build_tiny_backbone("llava_onevision")
    adapter = LlavaOnevisionAdapter(model)
    unpooled = adapter.visual_layout(processor, (64, 64)).num_tokens
    model.config.vision_aspect_ratio = processor.vision_aspect_ratio = "anyres_max_1"
    layout = adapter.visual_layout(processor, (64, 64))
    inputs = adapter.build_inputs(processor, [prompt(adapter, processor, "x")], [[image_of((64, 64))]])
    assert layout.num_tokens == int((inputs["input_ids"] == adapter.image_token_id).sum())
    assert layout.num_tokens < unpooled
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_onevision_multi_image_sample_uses_base_view_only():
    model, processor = build_tiny_backbone("llava_onevision")
    adapter = LlavaOnevisionAdapter(model)
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    placeholder = adapter.image_placeholder(processor)
    inputs = adapter.build_inputs(
        processor, [f"{placeholder}{placeholder} x"], [[image_of((64, 64)), image_of((30, 60))]]
    )
    assert int((inputs["input_ids"] == adapter.image_token_id).sum()) == 2 * (side * side + 1)
    assert adapter.visual_layout(processor, (64, 64)).num_tokens > side * side + 1


def test_onevision_rejects_a_processor_with_other_pinpoints():
    model, processor = build_tiny_backbone("llava_onevision")
    processor.image_processor.image_grid_pinpoints = [[32, 32]]
    with pytest.raises(ValueError, match="image_grid_pinpoints"):
        LlavaOnevisionAdapter(model).check_processor(processor)
