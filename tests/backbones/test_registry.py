"""`adapter_for`: family adapters by model_type, the generic fallback, and the unsupported-model error."""

import types

import pytest
import torch
from adapter_contract import image_of
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from cooper_lib.backbones import BackboneAdapter, BackboneNotSupportedError, adapter_for, register_adapter
from cooper_lib.backbones.llava import LlavaAdapter
from cooper_lib.backbones.registry import supported_families
from cooper_lib.backbones.tiny import build_tiny_backbone, tiny_families

FAMILIES = [
    "qwen2_vl",
    "qwen2_5_vl",
    "qwen3_vl",
    "llava",
    "llava_onevision",
    "idefics3",
    "smolvlm",
    "paligemma",
    "gemma3",
    "internvl",
    "mllama",
]


def test_every_family_is_registered_and_has_a_tiny_backbone():
    assert sorted(f for f, _ in supported_families()) == sorted(FAMILIES)
    assert sorted(tiny_families()) == sorted(FAMILIES)


def test_unknown_model_type_with_generic_parts_gets_the_generic_adapter():
    model, processor = build_tiny_backbone("llava")
    model.config.model_type = "my_mllm"
    adapter = adapter_for(model)
    assert type(adapter) is BackboneAdapter
    assert adapter.model_type == "my_mllm"
    assert adapter.hidden_size == model.config.text_config.hidden_size
    assert adapter.image_token_id == model.config.image_token_index
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    assert adapter.visual_layout(processor, (40, 40)).grid == (side, side)
    inputs = adapter.build_inputs(processor, ["<image> x"], [[image_of((40, 40))]])
    with torch.no_grad():
        assert adapter.hidden_states(**inputs).shape == (*inputs["input_ids"].shape, adapter.hidden_size)


def _assert_names_supported_families(message: str) -> None:
    for family in FAMILIES:
        assert family in message


def test_object_without_any_part_is_rejected_with_everything_named():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = types.SimpleNamespace(model_type="toy_vlm")
            self.proj = nn.Linear(2, 2)

    with pytest.raises(BackboneNotSupportedError) as info:
        adapter_for(Toy())
    message = str(info.value)
    assert "model_type='toy_vlm'" in message
    for part in (
        "hidden_size",
        "get_input_embeddings()",
        "get_output_embeddings()",
        "model.model",
        "image_token_id",
    ):
        assert part in message
    _assert_names_supported_families(message)


def test_a_module_that_is_no_transformers_model_is_not_supported():
    from cooper_lib import add_spatial_heads

    with pytest.raises(
        BackboneNotSupportedError, match="model: expected a transformers MLLM .*got Linear"
    ) as info:
        add_spatial_heads(nn.Linear(2, 2), None)
    _assert_names_supported_families(str(info.value))
    with pytest.raises(TypeError, match="model: expected a transformers MLLM .*got str"):
        adapter_for("Qwen/Qwen2-VL-2B-Instruct")


def test_text_only_model_is_rejected_for_its_missing_image_token():
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    with pytest.raises(BackboneNotSupportedError) as info:
        adapter_for(LlamaForCausalLM(config))
    message = str(info.value)
    assert "model_type='llama'" in message
    assert "could not find image_token_id / image_token_index in config." in message
    assert "get_input_embeddings()" not in message
    _assert_names_supported_families(message)


def test_register_adapter_refuses_a_taken_model_type_and_an_empty_one():
    class Other(BackboneAdapter):
        family = "other"
        model_types = ("llava",)

    with pytest.raises(ValueError, match="'llava' is already served by LlavaAdapter"):
        register_adapter(Other)
    model, _ = build_tiny_backbone("llava")
    assert type(adapter_for(model)) is LlavaAdapter

    class Empty(BackboneAdapter):
        family = "empty"

    with pytest.raises(ValueError, match="model_types is empty"):
        register_adapter(Empty)


@pytest.mark.parametrize(("family", "needed"), [("paligemma", "5.23"), ("mllama", "5.24")])
def test_families_that_need_a_newer_transformers_say_so(family, needed, monkeypatch):
    import cooper_lib.backbones.base as base

    model, _ = build_tiny_backbone(family)
    monkeypatch.setattr(base, "transformers_version", lambda: "5.17.0")
    with pytest.raises(
        BackboneNotSupportedError, match=rf"{family}: needs transformers>={needed}, found 5.17.0"
    ):
        adapter_for(model)
    adapter_for(build_tiny_backbone("qwen2_vl")[0])  # families without a floor of their own attach
    monkeypatch.setattr(base, "transformers_version", lambda: needed)
    assert adapter_for(model).family == family


def test_the_transformers_version_is_the_imported_packages(monkeypatch):
    # a copy on PYTHONPATH, or a vendored one without installed metadata: what runs is what counts
    import transformers

    import cooper_lib.backbones.base as base

    monkeypatch.setattr(transformers, "__version__", "5.23.0.dev0")
    assert base.transformers_version() == "5.23.0.dev0"
