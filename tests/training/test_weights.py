import pytest
import torch
from training_setup import model_config

from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.training.config import ModelConfig
from cooper_lib.training.trainable import configure_trainable
from cooper_lib.training.weights import (
    STAGE_SETTINGS,
    additions_from_state,
    build_model,
    gather_trainable_state,
    load_state_into,
    load_trained_model,
    save_model,
    state_from_folder,
)


def _nudge_trainable(model):
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.01)


def test_model_folder_round_trip_with_lora_and_row_masks(tmp_path):
    torch.manual_seed(0)
    config = model_config(llm="lora", lora_r=2)
    model = build_model(config)
    summary = configure_trainable(model, config)
    assert summary.lora["target_modules"] and not any(
        "lora" in t or "base_layer" in t for t in summary.lora["target_modules"]
    )
    _nudge_trainable(model)
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


@pytest.mark.parametrize("llm", ["frozen", "lora"])
def test_a_stage_that_freezes_what_the_stage_before_trained_still_saves_it(tmp_path, llm):
    """A full fine-tune, then a stage from its folder with the language model frozen or under LoRA:
    the second folder names the base model, which does not hold the first stage's weights, so it
    must carry them (it did not: the first stage's language model fell back to the base's), and
    resuming from it must accept them."""
    from cooper_lib.loading import load_trained_folder, merge_lora

    torch.manual_seed(0)
    first = model_config(llm="full", freeze_vision=False)
    model = build_model(first)
    configure_trainable(model, first)
    _nudge_trainable(model)
    save_model(tmp_path / "first", model, gather_trainable_state(model, model), first)

    second = model_config(llm=llm, lora_r=2, freeze_vision=True, init_from=str(tmp_path / "first"))
    model = build_model(second)
    summary = configure_trainable(model, second)
    _nudge_trainable(model)
    state = gather_trainable_state(model, model)
    save_model(tmp_path / "second", model, state, second, summary.lora)

    assert state_from_folder(tmp_path / "second", model, model).keys() == state.keys()
    load_state_into(model, model, state_from_folder(tmp_path / "second", model, model))
    model.save_pretrained(tmp_path / "pretrained")  # the live model's own save carries them too
    if llm == "lora":
        merge_lora(model)
    for saved in ("second", "pretrained"):
        loaded = dict(load_trained_folder(tmp_path / saved).named_parameters())
        for name, param in model.named_parameters():
            torch.testing.assert_close(loaded[name], param, msg=f"{saved}: {name}")


def test_seeded_backbone_writes_the_run_seed_into_a_tiny_spec(tmp_path):
    from cooper_lib.training.config import ModelConfig
    from cooper_lib.training.weights import TRAINABLE_NAME, seeded_backbone

    assert (
        seeded_backbone(ModelConfig(backbone="tiny:llava?hidden_size=96"), 7)
        == "tiny:llava?seed=7&hidden_size=96"
    )
    assert seeded_backbone(ModelConfig(backbone="tiny:llava?seed=2"), 7) == "tiny:llava?seed=2"
    assert seeded_backbone(ModelConfig(backbone="org/some-model"), 7) == "org/some-model"
    (tmp_path / TRAINABLE_NAME).write_text('{"backbone": "tiny:llava?seed=3"}')
    assert (
        seeded_backbone(ModelConfig(backbone="tiny:llava", init_from=str(tmp_path)), 7) == "tiny:llava?seed=3"
    )


def test_run_seed_changes_the_tiny_backbones_initial_weights():
    from cooper_lib.training.weights import seeded_backbone

    def weights(seed):
        config = model_config()
        config.backbone = seeded_backbone(config, seed)
        torch.manual_seed(0)
        return build_model(config).backbone.state_dict()

    first, again, other = weights(1), weights(1), weights(2)
    assert all(torch.equal(first[k], again[k]) for k in first)
    changed = [k for k in first if not torch.equal(first[k], other[k])]
    assert any("visual" in k for k in changed) and any("layers" in k for k in changed)


def test_a_full_trainer_folder_is_the_save_pretrained_folder(tmp_path):
    """One way to save: the trainer's folder (from a gathered state) and save_pretrained's (from the
    live model) hold the same files and tensors, and both reload in one call."""
    from safetensors.torch import load_file

    from cooper_lib import SpatialModel

    torch.manual_seed(0)
    config = model_config(llm="full", freeze_vision=True, backbone="tiny:qwen2_5_vl")
    model = build_model(config)
    configure_trainable(model, config)
    _nudge_trainable(model)
    save_model(tmp_path / "trainer", model, gather_trainable_state(model, model), config)
    model.save_pretrained(tmp_path / "model")
    names = {p.name for p in (tmp_path / "trainer").iterdir()}
    assert names - {p.name for p in (tmp_path / "model").iterdir()} == {"trainable.json"}
    ours = load_file(str(tmp_path / "trainer" / "backbone.safetensors"))
    full = load_file(str(tmp_path / "model" / "backbone.safetensors"))
    assert ours and all(
        torch.equal(ours[k], full[k]) for k in ours
    )  # the trainer leaves out the frozen vision
    for folder in ("trainer", "model"):
        loaded = SpatialModel.from_pretrained(tmp_path / folder)
        theirs = dict(loaded.named_parameters())
        assert all(torch.equal(p, theirs[n]) for n, p in model.named_parameters())


def test_a_stage_from_a_saved_model_changes_its_settings_and_refuses_new_head_shapes(tmp_path):
    config = model_config()
    model = build_model(config)
    save_model(tmp_path, model, gather_trainable_state(model, model), config)
    saved = dict(config.spatial)

    later = build_model(model_config(init_from=str(tmp_path)))  # the stage's config restates the heads
    assert later.config.depth_display_range is None and later.config.query_grid == model.config.query_grid
    shown = build_model(
        ModelConfig(
            init_from=str(tmp_path), spatial={**saved, "depth_display_range": [0.5, 6], "lm_loss_weight": 2}
        )
    )
    assert shown.config.depth_display_range == (0.5, 6.0) and shown.config.lm_loss_weight == 2.0
    save_model(tmp_path / "next", shown, gather_trainable_state(shown, shown), config)
    assert build_model(ModelConfig(init_from=str(tmp_path / "next"))).config.depth_display_range == (0.5, 6.0)
    assert "depth_display_range" in STAGE_SETTINGS and "query_grid" not in STAGE_SETTINGS
    with pytest.raises(
        ValueError, match=r"model.spatial.query_grid: the model of model.init_from=.* has \(2, 2\)"
    ):
        build_model(ModelConfig(init_from=str(tmp_path), spatial={"query_grid": [4, 4]}))
    with pytest.raises(
        ValueError, match=r"model.spatial: \['train_backbone'\] apply only when heads are attached"
    ):
        build_model(ModelConfig(init_from=str(tmp_path), spatial={"train_backbone": True}))
    with pytest.raises(ValueError, match=r"model.spatial: unknown fields \['query_gird'\]"):
        build_model(ModelConfig(init_from=str(tmp_path), spatial={"query_gird": [2, 2]}))


def test_a_stage_that_changes_a_loss_weight_changes_the_loss_its_heads_compute(tmp_path):
    config = model_config()
    model = build_model(config)
    save_model(tmp_path, model, gather_trainable_state(model, model), config)
    later = build_model(
        ModelConfig(init_from=str(tmp_path), spatial={"silog_lambda": 0.0, "dice_weight": 0.0})
    )
    torch.manual_seed(0)
    queries = torch.randn(3, 4, model.config.hidden_size)
    depth = torch.rand(3, 16, 16) * 4 + 1
    drawn = model.heads["depth"].generate(queries)
    assert torch.equal(later.heads["depth"].generate(queries), drawn)  # the same heads, loaded
    log_ratio = drawn.double().log() - depth.double().log()
    for head, lambd in ((model.heads["depth"], 0.85), (later.heads["depth"], 0.0)):
        expected = (log_ratio.square().mean((1, 2)) - lambd * log_ratio.mean((1, 2)).square()).sqrt().mean()
        assert head.loss(queries, depth).item() == pytest.approx(expected.item(), rel=1e-4)
    classes = torch.randint(0, 7, (3, 16, 16))
    logits = model.heads["segmentation"](queries)
    cross_entropy = torch.nn.functional.cross_entropy(logits.double(), classes)
    assert later.heads["segmentation"].loss(queries, classes).item() == pytest.approx(
        cross_entropy.item(), rel=1e-4
    )
    with_dice = model.heads["segmentation"].loss(queries, classes).item()
    assert with_dice > cross_entropy.item() + 0.1
