"""Both generative heads on every tiny backbone family: they only see query states, so any
family the adapter layer supports must train and perceive with them."""

import pytest
import torch
from helpers import SMALL_HEADS, images

from cooper_lib import add_spatial_heads
from cooper_lib.backbones.tiny import build_tiny_backbone, tiny_families
from cooper_lib.tokenizers import VQConfig, VQTokenizer


@pytest.fixture(scope="module")
def vq_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vq")
    VQTokenizer(
        VQConfig(image_size=16, downsample=4, base_channels=8, codebook_size=16, code_dim=8)
    ).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("family", tiny_families())
def test_flow_and_discrete_heads_train_and_perceive(family, vq_folder):
    model, processor = build_tiny_backbone(family)
    spatial = add_spatial_heads(
        model,
        processor,
        head={"depth": "flow", "segmentation": "discrete"},
        aux_tokenizer={"segmentation": vq_folder},
        head_options={
            "depth": {"width": 32, "blocks": 1, "steps": 2},
            "segmentation": {"width": 32, "blocks": 1},
        },
        **SMALL_HEADS,
    )
    spatial.train()
    depth_inputs = spatial.perception_inputs(images(2), "depth")
    seg_inputs = spatial.perception_inputs(images(2), "segmentation")
    depth = spatial(**depth_inputs, aux_targets={"depth": torch.rand(2, 16, 16) * 4 + 0.5}).loss
    seg = spatial(**seg_inputs, aux_targets={"segmentation": torch.randint(0, 6, (2, 16, 16))}).loss
    (depth + seg).backward()
    # adaLN-Zero: an untrained denoiser's output layer is zero, so the first gradients stop there.
    assert spatial.heads["depth"].denoiser.token_out.weight.grad.abs().sum() > 0
    assert spatial.queries["segmentation"].grad.abs().sum() > 0
    spatial.eval()
    assert spatial.perceive(images(1), "depth").shape == (1, 16, 16)
    assert spatial.perceive(images(1), "segmentation").dtype == torch.long
