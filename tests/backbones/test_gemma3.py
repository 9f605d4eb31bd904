"""Gemma3 adapter on its tiny backbone."""

import pytest
import torch
from adapter_contract import AdapterContract, image_of, prompt

from cooper_lib.backbones import adapter_for
from cooper_lib.backbones.gemma3 import Gemma3Adapter
from cooper_lib.backbones.tiny import build_tiny_backbone


class TestGemma3(AdapterContract):
    family = "gemma3"
    adapter_cls = Gemma3Adapter
    tied = True
    image_sizes = ((48, 64), (64, 64))  # every image becomes the same 2x2 soft-token grid

    def test_image_token_id_is_the_tokenizers(self, backbone):
        """The model's image token is the soft token; the processor's `image_token` is <start_of_image>."""
        _, processor, adapter = backbone
        tokenizer = adapter.tokenizer(processor)
        assert (
            adapter.image_token_id
            == tokenizer.image_token_id
            == tokenizer.convert_tokens_to_ids("<image_soft_token>")
        )
        assert adapter.image_placeholder(processor) == tokenizer.boi_token != tokenizer.image_token


@pytest.fixture(scope="module")
def tiny():
    model, processor = build_tiny_backbone("gemma3")
    return model, processor, adapter_for(model)


def test_input_embeddings_output_is_what_the_decoder_uses(tiny):
    """The scaled embedding's output (weight * sqrt(hidden)) is the decoder's input, with nothing added after."""
    _, processor, adapter = tiny
    ids = adapter.tokenizer(processor)(["Which object is closer?"], return_tensors="pt")["input_ids"]
    embedding = adapter.input_embeddings()
    with torch.no_grad():
        embedded = embedding(ids)
        torch.testing.assert_close(embedded, embedding.weight[ids] * adapter.hidden_size**0.5)
        torch.testing.assert_close(
            adapter.hidden_states(inputs_embeds=embedded), adapter.hidden_states(input_ids=ids)
        )


def test_token_type_ids_mark_the_soft_tokens(tiny):
    _, processor, adapter = tiny
    inputs = adapter.build_inputs(processor, [prompt(adapter, processor, "Depth?")], [[image_of((48, 64))]])
    assert torch.equal(inputs["token_type_ids"].bool(), inputs["input_ids"] == adapter.image_token_id)


def test_layout_is_the_pooled_square(tiny):
    _, processor, adapter = tiny
    for size in [(20, 20), (48, 64), (300, 40)]:
        layout = adapter.visual_layout(processor, size)
        assert (layout.num_tokens, layout.grid, layout.grid_offset) == (4, (2, 2), 0)


def test_builder_projector_lets_gradients_reach_the_vision_tower(tiny):
    model, processor, adapter = tiny
    inputs = adapter.build_inputs(processor, [prompt(adapter, processor, "Depth?")], [[image_of((48, 64))]])
    model.zero_grad()
    model(**inputs).logits.sum().backward()
    grads = [p.grad for p in adapter.vision_tower().parameters()]
    model.zero_grad()
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_logit_softcap_is_none_even_when_the_text_config_sets_one():
    """Gemma3ForConditionalGeneration returns lm_head(hidden) uncapped whatever the text config says."""
    model, processor = build_tiny_backbone("gemma3", final_logit_softcapping=30.0)
    adapter = adapter_for(model)
    assert model.config.text_config.final_logit_softcapping == 30.0
    assert adapter.logit_softcap is None
    inputs = adapter.build_inputs(processor, [prompt(adapter, processor, "Depth?")], [[image_of((48, 64))]])
    with torch.no_grad():
        logits = adapter.output_embeddings()(adapter.hidden_states(**inputs))
        torch.testing.assert_close(logits, model(**inputs).logits)


def test_rejects_a_processor_with_other_image_tokens(tiny):
    _, processor, adapter = tiny
    processor.image_seq_length = 16
    try:
        with pytest.raises(ValueError, match="image_seq_length is 16"):
            adapter.check_processor(processor)
    finally:
        processor.image_seq_length = 4
    other_model, _ = build_tiny_backbone("gemma3")
    other_model.config.image_token_id = adapter.tokenizer(processor).boi_token_id
    with pytest.raises(ValueError, match="tokenizer.image_token_id"):
        adapter_for(other_model).check_processor(processor)


def test_resize_keeps_the_scaled_tied_embedding():
    model, _ = build_tiny_backbone("gemma3")
    adapter = adapter_for(model)
    embedding_type = type(adapter.input_embeddings())
    rows = adapter.input_embeddings().num_embeddings
    adapter.resize_embeddings(rows + 2)
    embedding = adapter.input_embeddings()
    assert type(embedding) is embedding_type and embedding.num_embeddings == rows + 2
    assert adapter.tied_embeddings
    with torch.no_grad():
        ids = torch.tensor([[rows + 1]])
        torch.testing.assert_close(embedding(ids), embedding.weight[ids] * adapter.hidden_size**0.5)
