import torch
from training_setup import model_config

from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.training.trainable import configure_trainable
from cooper_lib.training.weights import (
    additions_from_state,
    build_model,
    gather_trainable_state,
    load_trained_model,
    save_model,
    state_from_folder,
)


def test_model_folder_round_trip_with_lora_and_row_masks(tmp_path):
    torch.manual_seed(0)
    config = model_config(llm="lora", lora_r=2)
    model = build_model(config)
    summary = configure_trainable(model, config)
    assert summary.lora["target_modules"] and not any(
        "lora" in t or "base_layer" in t for t in summary.lora["target_modules"]
    )
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.01)
    state = gather_trainable_state(model, model)
    additions = additions_from_state(model, state)
    expected = model.addition_state_dict()
    assert additions.keys() == expected.keys() and all(
        torch.equal(additions[k], expected[k]) for k in expected
    )
    save_model(tmp_path, model, state, config, summary.lora)

    assert state_from_folder(tmp_path, model, model).keys() == state.keys()
    backbone, processor = build_tiny_backbone("qwen2_vl")
    loaded = load_trained_model(tmp_path, backbone, processor)
    assert any("lora_" in n for n, _ in loaded.named_parameters())
    theirs = dict(loaded.named_parameters())
    ids = model.added_token_ids
    for name, param in model.named_parameters():
        if name in summary.row_masked:  # only the added tokens' rows are trained, and saved
            assert torch.equal(theirs[name][ids], param[ids])
        else:
            assert torch.equal(theirs[name], param), name
    backbone, processor = build_tiny_backbone("qwen2_vl")
    merged = load_trained_model(tmp_path, backbone, processor, merge=True)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
