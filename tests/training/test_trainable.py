import pytest
import torch
from helpers import images
from training_setup import model_config

from cooper_lib.loading import merge_lora
from cooper_lib.training.config import ModelConfig
from cooper_lib.training.trainable import configure_trainable, parameter_groups
from cooper_lib.training.weights import build_model


def one_step(model):
    inputs = model.perception_inputs(images(2), "depth")
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.1), lr=1e-2)
    out = model(**inputs, labels=inputs["input_ids"], aux_targets={"depth": torch.rand(2, 16, 16) + 1})
    out.loss.backward()
    optimizer.step()


@pytest.mark.parametrize("mode", ["frozen", "lora", "full"])
def test_modes_train_what_they_say(mode):
    model = build_model(model_config())
    vision = {n: p.detach().clone() for n, p in model.adapter.vision_tower().named_parameters()}
    embed = model.adapter.input_embeddings().weight
    before = embed.detach().clone()
    layer_before = model.adapter.decoder_layers()[0].mlp.up_proj.weight.detach().clone()
    summary = configure_trainable(model, ModelConfig(llm=mode))
    layer = model.adapter.decoder_layers()[0].mlp.up_proj  # LoRA replaced the module
    one_step(model)
    changed_rows = set((embed.detach() != before).any(dim=1).nonzero().flatten().tolist())
    added = set(model.added_token_ids.tolist())
    if mode == "full":
        assert changed_rows - added and summary.row_masked == ()
    else:
        assert changed_rows and changed_rows <= added  # only the added tokens' rows moved
        assert len(summary.row_masked) == 2  # input embeddings and the untied lm_head
    base_weight = layer.base_layer.weight if mode == "lora" else layer.weight
    assert torch.equal(base_weight, layer_before) == (mode != "full")
    assert all(torch.equal(p, vision[n]) for n, p in model.adapter.vision_tower().named_parameters())
    assert all(p.requires_grad for p in model.heads.parameters()) and summary.trainable < summary.total


def test_unfrozen_vision_tower_trains_and_double_configuration_raises():
    model = build_model(model_config())
    configure_trainable(model, ModelConfig(llm="frozen", freeze_vision=False))
    assert all(p.requires_grad for p in model.adapter.vision_tower().parameters())
    with pytest.raises(ValueError, match="already applied"):
        configure_trainable(model, ModelConfig())


def test_lora_merge_keeps_the_function():
    model = build_model(model_config())
    configure_trainable(model, ModelConfig(llm="lora", lora_r=2, lora_targets=["q_proj", "v_proj"]))
    names = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    assert names and all(".q_proj." in n or ".v_proj." in n for n in names)
    one_step(model)  # LoRA B is zero at first: one step makes the adapters matter
    inputs = model.perception_inputs(images(1), "depth")
    model.eval()
    before = model(**inputs).query_states["depth"]
    merge_lora(model)
    assert not any("lora_" in n for n, _ in model.named_parameters())
    torch.testing.assert_close(model(**inputs).query_states["depth"], before, rtol=1e-4, atol=1e-5)


def test_row_masks_follow_a_model_moved_after_configuration():
    """The added rows' gradient mask is made where the model is when configured; a gradient from
    another device (CUDA after accelerate's prepare; "meta" here) is masked on its own device."""
    model = build_model(model_config())
    configure_trainable(model, ModelConfig(llm="frozen"))
    hooks = [handle.hooks_dict_ref()[handle.id] for handle in model._row_masks]
    assert len(hooks) == 2
    for hook, weight in zip(hooks, model.embedding_matrices(), strict=True):
        masked = hook(torch.ones(weight.shape, device="meta"))
        assert masked.device.type == "meta" and masked.shape == weight.shape
        rows = hook(torch.ones(weight.shape, dtype=torch.float64)).any(dim=1).nonzero().flatten()
        assert rows.tolist() == sorted(model.added_token_ids.tolist())
