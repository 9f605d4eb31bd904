"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL adapters on their tiny backbones."""

import pytest
from adapter_contract import AdapterContract, image_of, prompt

from cooper_lib.backbones.qwen_vl import Qwen2VLAdapter, Qwen3VLAdapter, Qwen25VLAdapter
from cooper_lib.backbones.tiny import build_tiny_backbone


class TestQwen2VL(AdapterContract):
    family = "qwen2_vl"
    adapter_cls = Qwen2VLAdapter
    tied = False
    image_sizes = ((30, 60), (64, 64))  # resized to 28x56 and 56x56: 1x2 and 2x2 merged patches


class TestQwen25VL(AdapterContract):
    family = "qwen2_5_vl"
    adapter_cls = Qwen25VLAdapter
    tied = True
    image_sizes = ((84, 84), (30, 60))  # 3x3 merged patches span two attention windows


class TestQwen3VL(AdapterContract):
    family = "qwen3_vl"
    adapter_cls = Qwen3VLAdapter
    tied = True
    image_sizes = ((64, 32), (64, 64))  # patch 16: 2x1 and 2x2 merged patches


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl"])
def test_grid_is_the_merged_patch_grid(family):
    model, processor = build_tiny_backbone(family)
    adapter = Qwen2VLAdapter(model) if family == "qwen2_vl" else Qwen3VLAdapter(model)
    merge = model.config.vision_config.spatial_merge_size
    for size in [(30, 60), (100, 30)]:
        inputs = adapter.build_inputs(processor, [prompt(adapter, processor, "x")], [[image_of(size)]])
        _, rows, cols = inputs["image_grid_thw"][0].tolist()
        assert adapter.visual_layout(processor, size).grid == (rows // merge, cols // merge)


def test_placeholder_wraps_the_image_token_in_vision_markers():
    model, processor = build_tiny_backbone("qwen2_5_vl")
    adapter = Qwen25VLAdapter(model)
    assert adapter.image_placeholder(processor) == "<|vision_start|><|image_pad|><|vision_end|>"
    assert "<|vision_start|><|image_pad|><|vision_end|>" in prompt(adapter, processor, "x")


def test_processor_of_another_generation_is_rejected():
    model, _ = build_tiny_backbone("qwen2_vl")
    _, qwen3_processor = build_tiny_backbone("qwen3_vl")  # same tokens, patch 16 instead of 14
    with pytest.raises(ValueError, match=r"image_processor.patch_size is 16 .* expects 14"):
        Qwen2VLAdapter(model).check_processor(qwen3_processor)
