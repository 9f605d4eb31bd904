"""Mllama adapter on its tiny backbone."""

import pytest
import torch
from adapter_contract import AdapterContract, image_of, prompt
from transformers import MllamaForConditionalGeneration

from cooper_lib.backbones import adapter_for
from cooper_lib.backbones.mllama import MllamaAdapter
from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.backbones.tiny.common import TINY_TEXT


def _labels(batch, adapter):
    """Input ids as labels, without padding and `<|image|>` (it has no lm_head row)."""
    ignored = (batch["attention_mask"] == 0) | (batch["input_ids"] == adapter.image_token_id)
    return batch["input_ids"].masked_fill(ignored, -100)


class TestMllama(AdapterContract):
    family = "mllama"
    adapter_cls = MllamaAdapter
    tied = False
    image_sizes = ((48, 64), (32, 64))  # 2x2 and 1x2 tiles

    def test_parts(self, backbone):
        """The embedding has 8 rows more than lm_head, and `<|image|>` is the first of them."""
        model, processor, adapter = backbone
        hidden = TINY_TEXT["hidden_size"]
        vocab = model.config.text_config.vocab_size
        assert adapter.hidden_size == hidden
        assert adapter.input_embeddings().weight.shape == (vocab + 8, hidden)
        assert adapter.output_embeddings() is model.lm_head
        assert adapter.output_embeddings().weight.shape == (vocab, hidden)
        assert adapter.image_token_id == vocab == len(adapter.tokenizer(processor)) - 1
        assert len(adapter.decoder_layers()) == TINY_TEXT["num_hidden_layers"]
        assert adapter.vision_tower() is model.model.vision_model
        assert adapter.missing_parts() == []

    def test_tied_flag(self, backbone):
        """MllamaConfig keeps the flag in its text config only; lm_head never shares the embedding."""
        model, _, adapter = backbone
        assert adapter.tied_embeddings is False
        assert model.config.text_config.tie_word_embeddings is False
        assert adapter.output_embeddings().weight.data_ptr() != adapter.input_embeddings().weight.data_ptr()

    def test_backward_reaches_the_last_decoder_layer(self, backbone, batch):
        """The last layer is the cross-attention one; its gates were re-initialised, so the vision tower learns too."""
        model, _, adapter = backbone
        model.zero_grad()
        loss = model(**batch, labels=_labels(batch, adapter)).loss
        loss.backward()
        last = [p.grad for p in adapter.decoder_layers()[-1].parameters()]
        vision = [p.grad for p in adapter.vision_tower().parameters()]
        model.zero_grad()
        assert type(adapter.decoder_layers()[-1]).__name__ == "MllamaCrossAttentionDecoderLayer"
        assert torch.isfinite(loss)
        assert all(g is not None and torch.isfinite(g).all() for g in last)
        assert any(g.abs().sum() > 0 for g in last)
        assert any(g is not None and g.abs().sum() > 0 for g in vision)


@pytest.fixture(scope="module")
def tiny():
    model, processor = build_tiny_backbone("mllama")
    return model, processor, adapter_for(model)


@pytest.mark.parametrize(
    ("size", "tiles"), [((48, 64), (2, 2)), ((32, 64), (1, 2)), ((64, 32), (2, 1)), ((20, 20), (1, 1))]
)
def test_one_placeholder_per_image_and_its_tiles(tiny, size, tiles):
    _, processor, adapter = tiny
    layout = adapter.visual_layout(processor, size)
    assert (layout.num_tokens, layout.grid, layout.grid_offset) == (1, (1, 1), 0)
    assert adapter.tile_arrangement(processor, size) == tiles
    inputs = adapter.build_inputs(processor, [prompt(adapter, processor, "x")], [[image_of(size)]])
    assert int(inputs["aspect_ratio_mask"].sum()) == tiles[0] * tiles[1]


def test_tile_arrangement_rejects_an_empty_image(tiny):
    _, processor, adapter = tiny
    with pytest.raises(ValueError, match="image_size"):
        adapter.tile_arrangement(processor, (0, 10))


def test_resize_grows_lm_head_and_keeps_the_extra_embedding_rows():
    model, processor = build_tiny_backbone("mllama")
    adapter = adapter_for(model)
    new_rows = len(adapter.tokenizer(processor)) + 3
    adapter.resize_embeddings(new_rows)
    assert adapter.output_embeddings().weight.shape[0] == new_rows
    assert adapter.input_embeddings().num_embeddings == new_rows + 8
    assert model.config.text_config.vocab_size == new_rows
    inputs = adapter.build_inputs(processor, [prompt(adapter, processor, "x")], [[image_of((32, 32))]])
    inputs["input_ids"][0, -1] = new_rows - 1
    labels = _labels(inputs, adapter)
    assert torch.isfinite(model(**inputs, labels=labels).loss)
    rebuilt = MllamaForConditionalGeneration(
        model.config
    )  # what from_pretrained builds from the saved config
    rebuilt.load_state_dict(model.state_dict())
    with pytest.raises(ValueError, match="num_tokens"):
        adapter.resize_embeddings(new_rows - 1)


def test_rejects_a_processor_with_other_tiles(tiny):
    _, processor, adapter = tiny
    processor.image_processor.max_image_tiles = 8
    try:
        with pytest.raises(ValueError, match="up to 8 tiles"):
            adapter.check_processor(processor)
    finally:
        processor.image_processor.max_image_tiles = 4
