"""The generic pieces of continued (KV-cached) contexts; each family's rules are checked end to end
by tests/reasoning/test_context.py (logits after an insertion equal a re-prefill)."""

import pytest
import torch

from cooper_lib.backbones import BackboneAdapter, adapter_for
from cooper_lib.backbones.continuation import (
    ContinuationState,
    counted_positions,
    left_pad_key,
    stack_images,
    strip_leading_bos,
)
from cooper_lib.backbones.tiny import build_tiny_backbone


def test_stack_images_flat_keys_concatenate_and_pad_inner_dims():
    a, b = torch.ones(1, 2, 3), torch.full((2, 4, 3), 2.0)
    out = stack_images([(0, {"pixel_values": a}), (1, {"pixel_values": b})], {"pixel_values": 0}, 2)
    assert out["pixel_values"].shape == (3, 4, 3)
    assert out["pixel_values"][0, 2:].abs().sum() == 0 and out["pixel_values"][1:].eq(2).all()


def test_stack_images_per_row_keys_zero_fill_rows_without_images():
    one = torch.ones(1, 1, 2)
    out = stack_images([(1, {"pixel_values": one}), (1, {"pixel_values": one * 3})], {"pixel_values": 1}, 3)
    assert out["pixel_values"].shape == (3, 2, 2)
    assert out["pixel_values"][[0, 2]].abs().sum() == 0
    assert out["pixel_values"][1, :, 0].tolist() == [1.0, 3.0]


def test_counted_positions_skip_holes_and_advance():
    state = ContinuationState(2)
    rows = [{"input_ids": torch.ones(1, 3, dtype=torch.long)}, None]
    assert counted_positions(state, rows, 4).tolist() == [[0, 0, 1, 2], [0, 0, 0, 0]]
    rows = [
        {"input_ids": torch.ones(1, 1, dtype=torch.long)},
        {"input_ids": torch.ones(1, 2, dtype=torch.long)},
    ]
    assert counted_positions(state, rows, 2).tolist() == [[0, 3], [0, 1]]
    assert state.next_position == [4, 2]


def test_left_pad_key():
    rows = [{"t": torch.tensor([[1, 1]])}, None, {"x": torch.tensor([[5]])}]
    assert left_pad_key(rows, "t", 3).tolist() == [[0, 1, 1], [0, 0, 0], [0, 0, 0]]


def test_strip_leading_bos_only_when_the_text_had_none():
    model, processor = build_tiny_backbone("mllama")
    tokenizer = processor.tokenizer
    bos = tokenizer.bos_token_id
    batch = {
        "input_ids": torch.tensor([[bos, 7, 8]]),
        "attention_mask": torch.ones(1, 3),
        "pixel_values": torch.ones(1),
    }
    stripped = strip_leading_bos(batch, tokenizer, "\nuser: x")
    assert stripped["input_ids"].tolist() == [[7, 8]] and stripped["attention_mask"].shape == (1, 2)
    assert strip_leading_bos(batch, tokenizer, tokenizer.bos_token + "x") is batch


def test_continuation_text_is_the_template_between_two_assistant_turns():
    model, processor = build_tiny_backbone("qwen2_vl")
    adapter = adapter_for(model)
    content = [{"type": "image"}, {"type": "text", "text": "Look."}]
    assert adapter.continuation_text(processor, content) == (
        "\nuser: <|vision_start|><|image_pad|><|vision_end|>Look.\nassistant: "
    )


def test_continuation_text_refuses_a_template_that_moves_images():
    model, processor = build_tiny_backbone("paligemma")
    adapter = adapter_for(model)
    content = [{"type": "image"}, {"type": "text", "text": "Look."}]
    with pytest.raises(ValueError, match="put 0 of the message's 1 image"):
        BackboneAdapter.continuation_text(adapter, processor, content)
    assert adapter.continuation_text(processor, content) == "\n<image>Look.\n"


def test_paligemma_segment_expands_the_placeholder_in_place_without_bos():
    model, processor = build_tiny_backbone("paligemma")
    adapter = adapter_for(model)
    from PIL import Image

    segment = adapter.segment_inputs(processor, "\n<image>Look.\n", [Image.new("RGB", (30, 30))])
    ids = segment["input_ids"][0].tolist()
    image_id = adapter.image_token_id
    assert ids.count(image_id) == processor.image_seq_length and processor.tokenizer.bos_token_id not in ids
    assert ids[1 : 1 + processor.image_seq_length] == [image_id] * processor.image_seq_length
    assert segment["pixel_values"].shape[0] == 1
    with pytest.raises(ValueError, match="placeholder"):
        adapter.segment_inputs(processor, "no image", [Image.new("RGB", (30, 30))])
