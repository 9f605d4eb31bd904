"""What every family adapter must do on its tiny backbone; family test files subclass `AdapterContract`.

A subclass named ``Test...`` sets `family`, `adapter_cls`, `tied` and two `image_sizes` that give
different layouts where the family's layout depends on the image; pytest then collects every test
below for that family.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from PIL import Image

from cooper_lib.backbones import BackboneAdapter, adapter_for
from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.backbones.tiny.common import TINY_TEXT


def image_of(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A random RGB image of `size` (height, width)."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (*size, 3), dtype=torch.uint8, generator=generator)
    return Image.fromarray(pixels.numpy())


def prompt(adapter: BackboneAdapter, processor: Any, text: str) -> str:
    """A user turn with one image and `text`, ready for the assistant's answer."""
    message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}
    return adapter.render_chat(processor, [message], add_generation_prompt=True)


#: Questions of different lengths, so a batch of both needs padding.
QUESTIONS = ("How far is the red sphere from the camera?", "Depth?")


class AdapterContract:
    family: ClassVar[str]
    adapter_cls: ClassVar[type[BackboneAdapter]]
    tied: ClassVar[bool]
    image_sizes: ClassVar[tuple[tuple[int, int], tuple[int, int]]]

    @pytest.fixture(scope="class")
    @classmethod
    def backbone(cls) -> tuple[torch.nn.Module, Any, BackboneAdapter]:
        model, processor = build_tiny_backbone(cls.family)
        return model, processor, adapter_for(model)

    @pytest.fixture(scope="class")
    @classmethod
    def batch(cls, backbone) -> dict[str, torch.Tensor]:
        """Two samples: prompts of different lengths, images of the two sizes."""
        _, processor, adapter = backbone
        texts = [prompt(adapter, processor, q) for q in QUESTIONS]
        images = [[image_of(size, seed=i)] for i, size in enumerate(cls.image_sizes)]
        return adapter.build_inputs(processor, texts, images)

    def test_adapter_for_gives_the_family_adapter(self, backbone):
        model, _, adapter = backbone
        assert type(adapter) is self.adapter_cls
        assert adapter.family == self.family
        assert adapter.model is model
        assert adapter.model_type in self.adapter_cls.model_types

    def test_parts(self, backbone):
        model, processor, adapter = backbone
        hidden = TINY_TEXT["hidden_size"]
        assert adapter.hidden_size == hidden
        rows = adapter.input_embeddings().num_embeddings
        assert rows >= len(adapter.tokenizer(processor))
        assert adapter.input_embeddings().weight.shape == (rows, hidden)
        assert adapter.output_embeddings().weight.shape == (rows, hidden)
        assert adapter.output_embeddings() is model.lm_head
        assert len(adapter.decoder_layers()) == TINY_TEXT["num_hidden_layers"]
        assert adapter.vision_tower() is not None
        assert adapter.missing_parts() == []

    def test_tied_flag(self, backbone):
        model, _, adapter = backbone
        assert adapter.tied_embeddings is self.tied
        assert model.config.tie_word_embeddings is self.tied
        shared = adapter.output_embeddings().weight.data_ptr() == adapter.input_embeddings().weight.data_ptr()
        assert shared is self.tied

    def test_image_token_id_is_the_tokenizers(self, backbone):
        _, processor, adapter = backbone
        assert adapter.image_token_id == adapter.tokenizer(processor).convert_tokens_to_ids(
            processor.image_token
        )

    def test_processor_accepted(self, backbone):
        _, processor, adapter = backbone
        adapter.check_processor(processor)

    @pytest.mark.parametrize("which", [0, 1])
    def test_visual_layout_matches_built_inputs(self, backbone, which):
        _, processor, adapter = backbone
        size = self.image_sizes[which]
        layout = adapter.visual_layout(processor, size)
        text = prompt(adapter, processor, "Estimate the depth of the image.")
        inputs = adapter.build_inputs(processor, [text], [[image_of(size)]])
        assert layout.num_tokens == int((inputs["input_ids"] == adapter.image_token_id).sum())
        rows, cols = layout.grid
        assert rows >= 1 and cols >= 1
        assert 0 <= layout.grid_offset and layout.grid_offset + rows * cols <= layout.num_tokens

    def test_required_inputs_present(self, backbone, batch):
        _, _, adapter = backbone
        assert set(adapter.required_inputs) <= set(batch)

    def test_hidden_states_give_the_models_logits(self, backbone, batch):
        model, _, adapter = backbone
        with torch.no_grad():
            hidden = adapter.hidden_states(**batch)
            logits = model(**batch).logits
            assert hidden.shape == (*batch["input_ids"].shape, adapter.hidden_size)
            torch.testing.assert_close(adapter.output_embeddings()(hidden), logits, rtol=1e-4, atol=1e-5)

    def test_backward_reaches_the_last_decoder_layer(self, backbone, batch):
        model, _, adapter = backbone
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model.zero_grad()
        loss = model(**batch, labels=labels).loss
        loss.backward()
        grads = [p.grad for p in adapter.decoder_layers()[-1].parameters()]
        model.zero_grad()
        assert torch.isfinite(loss)
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)

    def test_generate(self, backbone, batch):
        model, _, _ = backbone
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False)
        assert out.shape == (2, batch["input_ids"].shape[1] + 3)

    def test_padded_batch_matches_each_sample_alone(self, backbone, batch):
        _, processor, adapter = backbone
        assert not batch["attention_mask"].bool().all(), "the two samples should need padding"
        with torch.no_grad():
            together = adapter.hidden_states(**batch)
            for i, (question, size) in enumerate(zip(QUESTIONS, self.image_sizes, strict=True)):
                alone = adapter.build_inputs(
                    processor, [prompt(adapter, processor, question)], [[image_of(size, seed=i)]]
                )
                expected = adapter.hidden_states(**alone)[0]
                real = batch["attention_mask"][i].bool()
                torch.testing.assert_close(together[i][real], expected, rtol=1e-4, atol=1e-4)
