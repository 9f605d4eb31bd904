import pytest
import torch
from helpers import images, tiny_spatial

from cooper_lib import SpatialModel
from cooper_lib.backbones.tiny import build_tiny_backbone, tiny_families

FAMILIES = tiny_families()


def _grad_norm(params) -> float:
    return sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_backward_reaches_queries_heads_and_backbone(family):
    spatial = tiny_spatial(family, train_backbone=True)
    spatial.train()
    depth_inputs = spatial.perception_inputs(images(2), "depth")
    seg_inputs = spatial.perception_inputs(images(2), "segmentation")
    depth = torch.rand(2, 16, 16) * 4 + 0.5
    classes = torch.randint(0, 6, (2, 16, 16))
    out_depth = spatial(**depth_inputs, labels=depth_inputs["input_ids"], aux_targets={"depth": depth})
    out_seg = spatial(**seg_inputs, aux_targets={"segmentation": classes})
    for value in (out_depth.lm_loss, out_depth.aux_losses["depth"], out_seg.aux_losses["segmentation"]):
        assert torch.isfinite(value)
    assert out_depth.query_states["depth"].shape[:2] == (2, 4)
    (out_depth.loss + out_seg.loss).backward()
    assert _grad_norm([spatial.queries["depth"]]) > 0
    assert _grad_norm([spatial.queries["segmentation"]]) > 0
    assert _grad_norm(spatial.heads["depth"].parameters()) > 0
    assert _grad_norm(spatial.heads["segmentation"].parameters()) > 0
    assert _grad_norm(spatial.adapter.decoder_layers()[-1].parameters()) > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip_is_exact(family, tmp_path):
    spatial = tiny_spatial(family)
    with torch.no_grad():
        for param in spatial.heads.parameters():
            param.add_(torch.randn_like(param) * 0.1)
        ids = spatial.added_token_ids
        embed = spatial.adapter.input_embeddings().weight
        embed[ids] = torch.randn(len(ids), embed.shape[1])
    inputs = spatial.perception_inputs(images(2), "depth")
    expected = spatial(**inputs, return_maps=True).maps["depth"]
    spatial.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "base_model.json", "cooper_config.json", "spatial_heads.safetensors",
    ]  # fmt: skip

    backbone, processor = build_tiny_backbone(family)
    loaded = SpatialModel.from_pretrained(backbone, tmp_path, processor)
    assert loaded.config == spatial.config
    state, loaded_state = spatial.addition_state_dict(), loaded.addition_state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[k], loaded_state[k]) for k in state)
    assert torch.equal(
        loaded(**loaded.perception_inputs(images(2), "depth"), return_maps=True).maps["depth"], expected
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_still_works(family):
    spatial = tiny_spatial(family)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which is closer?"}]}
    ]
    text = spatial.adapter.render_chat(spatial.processor, messages, add_generation_prompt=True)
    inputs = spatial.adapter.build_inputs(spatial.processor, [text], [images(1)])
    out = spatial.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3
