"""Sizing tiny backbones (text and vision options) and the ``tiny:`` spec strings configs use."""

import pytest
import torch
from PIL import Image

from cooper_lib.backbones import adapter_for
from cooper_lib.backbones.tiny import build_from_spec, build_tiny_backbone, parse_tiny_spec, tiny_spec


def _inputs(model, processor, side: int) -> dict:
    adapter = adapter_for(model)
    message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}
    text = adapter.render_chat(processor, [message])
    return adapter.build_inputs(processor, [text], [[Image.new("RGB", (side, side))]])


def _visual_tokens(model, processor, side: int) -> int:
    inputs = _inputs(model, processor, side)
    with torch.no_grad():
        assert adapter_for(model).hidden_states(**inputs).shape[1] == inputs["input_ids"].shape[1]
    return int((inputs["input_ids"] == adapter_for(model).image_token_id).sum())


def test_spec_round_trip_reads_types():
    spec = tiny_spec("qwen2_vl", seed=3, hidden_size=256, rms_norm_eps=1e-5, tie_word_embeddings=True)
    family, seed, overrides = parse_tiny_spec(spec)
    assert (family, seed) == ("qwen2_vl", 3)
    assert overrides == {"hidden_size": 256, "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
    assert parse_tiny_spec("tiny:llava") == ("llava", None, {})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("qwen2_vl", "tiny:<family>"),
        ("tiny:nope", "family expected one of"),
        ("tiny:llava?hidden_size", "key=value"),
        ("tiny:llava?seed=1&seed=2", "twice"),
        ("tiny:llava?seed=-1", "seed expected"),
    ],
)
def test_bad_specs_are_rejected_with_the_reason(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_tiny_spec(spec)


def test_unknown_option_names_the_accepted_fields():
    with pytest.raises(
        ValueError, match=r"\['hiden_size'\] are not fields of .*expected some of .*hidden_size"
    ):
        build_from_spec("tiny:qwen2_vl?hiden_size=128")


def test_vision_options_on_a_family_that_does_not_take_them():
    with pytest.raises(ValueError, match="vision options are taken by"):
        build_tiny_backbone("paligemma", image_size=64)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_size": 100}, "multiple of 2 \\* patch_size = 28"),
        ({"vision_hidden_size": 30, "vision_heads": 4}, "divisible"),
    ],
)
def test_bad_vision_sizes_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        build_tiny_backbone("qwen2_vl", **options)


def test_qwen2_vl_sized_from_a_spec():
    model, processor = build_from_spec(
        "tiny:qwen2_vl?hidden_size=128&num_hidden_layers=3&vision_hidden_size=48&vision_layers=3"
        "&vision_heads=4&image_size=112&patch_size=7"
    )
    text, vision = model.config.text_config, model.config.vision_config
    assert (text.hidden_size, text.num_hidden_layers) == (128, 3)
    assert (vision.embed_dim, vision.depth, vision.num_heads, vision.patch_size) == (48, 3, 4, 7)
    assert _visual_tokens(model, processor, 64) == (112 // 14) ** 2  # a 64 px image, upscaled to 112 px
    assert _visual_tokens(*build_tiny_backbone("qwen2_vl"), 64) == 4  # the default: 56 px, 2 x 2 tokens


@pytest.mark.parametrize("family", ["llava", "llava_onevision"])
def test_llava_sized_by_vision_options(family):
    model, processor = build_tiny_backbone(
        family, hidden_size=96, image_size=64, patch_size=8, vision_layers=3
    )
    vision = model.config.vision_config
    assert (vision.image_size, vision.num_hidden_layers, model.config.text_config.hidden_size) == (64, 3, 96)
    if family == "llava":
        assert _visual_tokens(model, processor, 64) == 64
    inputs = _inputs(model, processor, 64)
    with torch.no_grad():
        assert adapter_for(model).hidden_states(**inputs).shape[-1] == 96


def test_spec_seed_sets_the_weights():
    first = build_from_spec("tiny:qwen2_vl?seed=1")[0].state_dict()
    again = build_from_spec("tiny:qwen2_vl", seed=1)[0].state_dict()
    other = build_from_spec("tiny:qwen2_vl?seed=2")[0].state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["lm_head.weight"], other["lm_head.weight"])
    assert not torch.equal(
        first["model.visual.blocks.0.mlp.fc1.weight"], other["model.visual.blocks.0.mlp.fc1.weight"]
    )
