"""PaliGemma adapter on its tiny PaliGemma 2 backbone."""

import pytest
import torch
from adapter_contract import AdapterContract, image_of, prompt

from cooper_lib.backbones import adapter_for
from cooper_lib.backbones.paligemma import PaliGemmaAdapter
from cooper_lib.backbones.tiny import build_tiny_backbone


class TestPaliGemma(AdapterContract):
    family = "paligemma"
    adapter_cls = PaliGemmaAdapter
    tied = True
    image_sizes = ((48, 64), (64, 64))  # every image becomes the same 4x4 patch grid

    def test_hidden_states_give_the_models_logits(self, backbone, batch):
        """PaliGemma 2 soft-caps its logits: lm_head(hidden) capped by `logit_softcap` is the model's."""
        model, _, adapter = backbone
        cap = adapter.logit_softcap
        assert cap == model.config.text_config.final_logit_softcapping == 30.0
        with torch.no_grad():
            logits = adapter.output_embeddings()(adapter.hidden_states(**batch))
            torch.testing.assert_close(
                cap * torch.tanh(logits / cap), model(**batch).logits, rtol=1e-4, atol=1e-5
            )


@pytest.fixture(scope="module")
def tiny():
    model, processor = build_tiny_backbone("paligemma")
    return model, processor, adapter_for(model)


def _text_token(tokenizer, text):
    (token,) = tokenizer.encode(text, add_special_tokens=False)
    return token


def test_template_puts_images_first_and_joins_turns_with_newlines(tiny):
    _, processor, adapter = tiny
    placeholder = adapter.image_placeholder(processor)
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Which is closer?"}, {"type": "image"}]},
        {"role": "assistant", "content": "The red sphere."},
    ]
    assert adapter.render_chat(processor, messages) == f"{placeholder}Which is closer?\nThe red sphere."
    assert (
        adapter.render_chat(processor, messages[:1], add_generation_prompt=True)
        == f"{placeholder}Which is closer?"
    )


def test_processor_adds_bos_after_the_images_and_the_separator(tiny):
    _, processor, adapter = tiny
    tokenizer = adapter.tokenizer(processor)
    inputs = adapter.build_inputs(processor, [prompt(adapter, processor, "Depth?")], [[image_of((48, 64))]])
    ids = inputs["input_ids"][0].tolist()
    side = adapter.grid_side
    assert ids[: side * side] == [adapter.image_token_id] * (side * side)
    assert ids[side * side] == tokenizer.bos_token_id
    assert ids[-1] == _text_token(tokenizer, "\n")


def test_without_suffix_attention_is_causal(tiny):
    """No token_type_ids: changing the last token must leave every earlier hidden state as it was."""
    _, processor, adapter = tiny
    image = [[image_of((48, 64))]]
    first = adapter.build_inputs(processor, ["<image>The answer is A"], image)
    second = adapter.build_inputs(processor, ["<image>The answer is B"], image)
    assert "token_type_ids" not in first and "labels" not in first
    changed = (first["input_ids"] != second["input_ids"])[0].nonzero().flatten().tolist()
    with torch.no_grad():
        a, b = adapter.hidden_states(**first), adapter.hidden_states(**second)
    before = changed[0]
    torch.testing.assert_close(a[:, :before], b[:, :before])
    assert not torch.allclose(a[:, before], b[:, before])


def test_suffix_keeps_the_prefix_lm_layout(tiny):
    """With suffix=, the prefix is bidirectional: a later prefix token changes the first position."""
    _, processor, adapter = tiny
    image = [[image_of((48, 64))]]
    first = adapter.build_inputs(processor, ["<image>Is it A"], image, suffix=["yes"])
    second = adapter.build_inputs(processor, ["<image>Is it B"], image, suffix=["yes"])
    types, labels = first["token_type_ids"][0], first["labels"][0]
    assert types.sum() > 0 and bool((labels[types == 0] == -100).all())
    assert bool((labels[types == 1] == first["input_ids"][0][types == 1]).all())
    with torch.no_grad():
        a, b = adapter.hidden_states(**first), adapter.hidden_states(**second)
    assert not torch.allclose(a[:, 0], b[:, 0])


def test_text_without_images_goes_to_the_tokenizer(tiny):
    _, processor, adapter = tiny
    inputs = adapter.build_inputs(processor, ["Then the blue box.", "Yes."])
    assert set(inputs) == {"input_ids", "attention_mask"}
    with torch.no_grad():
        hidden = adapter.hidden_states(**inputs)
    assert hidden.shape == (2, inputs["input_ids"].shape[1], adapter.hidden_size)


def test_layout_ignores_the_image_size(tiny):
    _, processor, adapter = tiny
    layouts = {adapter.visual_layout(processor, size) for size in [(20, 20), (48, 64), (300, 40)]}
    assert {(layout.num_tokens, layout.grid, layout.grid_offset) for layout in layouts} == {(16, (4, 4), 0)}


def test_rejects_a_processor_with_another_image_seq_length(tiny):
    _, processor, adapter = tiny
    processor.image_seq_length = 64
    try:
        with pytest.raises(ValueError, match="image_seq_length is 64"):
            adapter.check_processor(processor)
    finally:
        processor.image_seq_length = 16


def test_resize_keeps_lm_head_tied():
    model, processor = build_tiny_backbone("paligemma")
    adapter = adapter_for(model)
    rows = adapter.input_embeddings().num_embeddings
    adapter.resize_embeddings(rows + 3)
    assert adapter.input_embeddings().num_embeddings == rows + 3
    assert adapter.tied_embeddings and adapter.output_embeddings().weight.shape[0] == rows + 3
    inputs = adapter.build_inputs(processor, ["<image>x"], [[image_of((32, 32))]])
    inputs["input_ids"][0, -1] = rows + 2
    with torch.no_grad():
        assert model(**inputs).logits.shape[-1] == rows + 3
