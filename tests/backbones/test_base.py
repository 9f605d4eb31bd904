"""Generic `BackboneAdapter` behaviour: chat rendering, processor checks, PEFT, embeddings, layouts."""

import pytest
import torch
from adapter_contract import image_of

from cooper_lib.backbones import BackboneAdapter, VisualLayout, adapter_for, unwrap_model
from cooper_lib.backbones.base import FALLBACK_CHAT_TEMPLATE
from cooper_lib.backbones.llava import LlavaAdapter
from cooper_lib.backbones.qwen_vl import Qwen2VLAdapter
from cooper_lib.backbones.tiny import build_tiny_backbone

USER = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How far is the box?"}]}


@pytest.fixture(scope="module")
def llava():
    model, processor = build_tiny_backbone("llava")
    return model, processor, adapter_for(model)


def test_fallback_template_is_used_when_the_processor_has_none(llava):
    _, processor, adapter = llava
    assert processor.chat_template is None
    assert adapter.chat_template(processor) == FALLBACK_CHAT_TEMPLATE.replace("{IMAGE}", "<image>")
    text = adapter.render_chat(processor, [USER], add_generation_prompt=True)
    assert text == "user: <image>How far is the box?\nassistant: "


def test_fallback_template_continues_the_final_message(llava):
    _, processor, adapter = llava
    messages = [USER, {"role": "assistant", "content": [{"type": "text", "text": "Let me look <depth"}]}]
    text = adapter.render_chat(processor, messages, continue_final_message=True)
    assert text == "user: <image>How far is the box?\nassistant: Let me look <depth"
    closed = adapter.render_chat(processor, messages)
    assert closed == "user: <image>How far is the box?\nassistant: Let me look <depth\n"


def test_processor_chat_template_wins_over_the_fallback():
    model, processor = build_tiny_backbone("llava")
    processor.chat_template = "{% for m in messages %}<{{ m['role'] }}>{% endfor %}"
    assert adapter_for(model).render_chat(processor, [USER]) == "<user>"


def test_check_processor_rejects_another_models_image_token(llava):
    model, _ = build_tiny_backbone("internvl")
    _, llava_processor, _ = llava
    internvl = adapter_for(model)
    assert llava_processor.tokenizer.convert_tokens_to_ids("<image>") != internvl.image_token_id
    with pytest.raises(
        ValueError, match=r"processor: its image token '<image>' has id \d+, but the model expects"
    ):
        internvl.check_processor(llava_processor)


def test_check_processor_rejects_a_tokenizer_larger_than_the_embeddings():
    model, processor = build_tiny_backbone("llava")
    adapter = adapter_for(model)
    rows = adapter.input_embeddings().num_embeddings
    processor.tokenizer.add_tokens([f"<extra_{i}>" for i in range(rows - len(processor.tokenizer) + 1)])
    with pytest.raises(
        ValueError, match=rf"has {rows + 1} tokens but the model's input embeddings have {rows} rows"
    ):
        adapter.check_processor(processor)


def test_build_inputs_names_the_family_inputs_a_foreign_processor_did_not_produce(llava):
    qwen, _ = build_tiny_backbone("qwen2_vl")
    _, llava_processor, _ = llava
    with pytest.raises(ValueError, match=r"did not produce \['image_grid_thw', 'mm_token_type_ids'\]"):
        Qwen2VLAdapter(qwen).build_inputs(llava_processor, ["<image> x"], [[image_of((32, 32))]])


def test_peft_wrapped_model_is_unwrapped():
    from peft import LoraConfig, get_peft_model

    model, processor = build_tiny_backbone("llava")
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    base = wrapped.get_base_model()
    assert unwrap_model(wrapped) is base and unwrap_model(base) is base
    adapter = adapter_for(wrapped)
    assert type(adapter) is LlavaAdapter and adapter.model is base
    assert any("lora_A" in name for name, _ in adapter.decoder_layers().named_parameters())
    inputs = adapter.build_inputs(processor, ["<image> x"], [[image_of((40, 40))]])
    with torch.no_grad():
        torch.testing.assert_close(adapter.hidden_states(**inputs), base.model(**inputs).last_hidden_state)


def test_hidden_states_ignore_labels_and_cache_flags(llava):
    _, processor, adapter = llava
    inputs = adapter.build_inputs(processor, ["<image> x"], [[image_of((40, 40))]])
    with torch.no_grad():
        plain = adapter.hidden_states(**inputs)
        extra = adapter.hidden_states(**inputs, labels=inputs["input_ids"], use_cache=True, return_dict=False)
    torch.testing.assert_close(plain, extra)


@pytest.mark.parametrize("family", ["llava", "internvl"])  # untied and tied lm_head
def test_resize_embeddings_keeps_the_tie(family):
    model, _ = build_tiny_backbone(family)
    adapter = adapter_for(model)
    tied, rows = adapter.tied_embeddings, adapter.input_embeddings().num_embeddings
    adapter.resize_embeddings(rows + 8)
    assert adapter.input_embeddings().num_embeddings == rows + 8
    assert adapter.output_embeddings().weight.shape[0] == rows + 8
    assert adapter.tied_embeddings is tied


def test_generic_layout_is_square_when_the_count_is(llava):
    model, processor, _ = llava
    generic = BackboneAdapter(model)
    assert generic.visual_layout(processor, (40, 40)) == VisualLayout(16, (4, 4))


@pytest.mark.parametrize("size", [(0, 32), (32, -1)])
def test_image_size_must_be_positive(llava, size):
    _, processor, adapter = llava
    with pytest.raises(ValueError, match="image_size: expected positive"):
        adapter.count_visual_tokens(processor, size)
