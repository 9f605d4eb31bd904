"""Shared tiny-builder pieces and the overrides the benchmarks pass to `build_tiny_backbone`."""

import pytest
import torch
from PIL import Image
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3VLTextConfig

from cooper_lib.backbones import adapter_for
from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.backbones.tiny.common import TINY_TEXT, instantiate, padded_vocab, text_fields
from cooper_lib.backbones.tiny.tokenizer import train_tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return train_tiny_tokenizer(["<image>"], bos_token="<s>")


def test_vocab_is_padded_to_a_multiple_of_64(tokenizer):
    tokenizer.add_tokens(["<one_more>"])
    assert padded_vocab(tokenizer) == 576 and len(tokenizer) == 513


def test_text_fields_defaults_and_overrides(tokenizer):
    fields = text_fields(tokenizer, LlamaConfig, {"hidden_size": 256})
    assert fields["hidden_size"] == 256 and fields["intermediate_size"] == 512
    assert fields["num_hidden_layers"] == TINY_TEXT["num_hidden_layers"]
    assert fields["bos_token_id"] == tokenizer.convert_tokens_to_ids("<s>")
    assert "bos_token_id" not in text_fields(tokenizer, Qwen3VLTextConfig, {})  # not a field there


def test_text_fields_reject_bad_overrides(tokenizer):
    with pytest.raises(ValueError, match=r"overrides: \['hiden_size'\] are not fields of LlamaConfig"):
        text_fields(tokenizer, LlamaConfig, {"hiden_size": 128})
    with pytest.raises(ValueError, match="hidden_size=66 must be divisible by num_attention_heads=4"):
        text_fields(tokenizer, LlamaConfig, {"hidden_size": 66})


def test_instantiate_is_seeded_and_leaves_the_global_rng_alone(tokenizer):
    config = LlamaConfig(**text_fields(tokenizer, LlamaConfig, {}))
    state = torch.random.get_rng_state()
    first, again, other = (instantiate(LlamaForCausalLM, config, seed) for seed in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not first.training and first.dtype == torch.float32
    torch.testing.assert_close(first.state_dict(), again.state_dict(), rtol=0, atol=0)
    assert not torch.equal(first.lm_head.weight, other.lm_head.weight)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl", "llava_onevision", "internvl"])
def test_builders_apply_text_overrides(family):
    model, processor = build_tiny_backbone(
        family, hidden_size=96, num_attention_heads=2, tie_word_embeddings=False
    )
    adapter = adapter_for(model)
    assert adapter.hidden_size == 96 and adapter.text_config.num_attention_heads == 2
    assert not adapter.tied_embeddings
    adapter.check_processor(processor)
    message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}
    inputs = adapter.build_inputs(
        processor, [adapter.render_chat(processor, [message])], [[Image.new("RGB", (60, 40))]]
    )
    with torch.no_grad():
        assert adapter.hidden_states(**inputs).shape[-1] == 96


def test_qwen_rotary_sections_fill_half_a_head():
    for family, expected in [("qwen2_vl", [8, 12, 12]), ("qwen3_vl", [12, 10, 10])]:
        model, _ = build_tiny_backbone(family, hidden_size=128, num_attention_heads=2)  # head_dim 64
        assert model.config.text_config.rope_parameters["mrope_section"] == expected
