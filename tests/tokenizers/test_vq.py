import json

import pytest
import torch

from cooper_lib.tokenizers import PatchTokenizer, VQConfig, VQTokenizer


@pytest.fixture
def small():
    return VQTokenizer(VQConfig(image_size=16, downsample=4, base_channels=8, codebook_size=32, code_dim=8))


def test_shapes_and_properties(small):
    assert (small.codebook_size, small.grid, small.num_tokens) == (32, (4, 4), 16)
    img = torch.rand(3, 3, 16, 16)
    small.train()
    codes = small.encode(img)
    assert small.training  # encode() restores the mode it found
    assert codes.shape == (3, 4, 4) and codes.dtype == torch.long
    assert 0 <= codes.min() and codes.max() < 32
    out = small.decode(codes)
    assert out.shape == (3, 3, 16, 16) and 0 <= out.min() and out.max() <= 1
    default = VQTokenizer()
    assert default.grid == (16, 16) and default.codebook_size == 512
    assert VQTokenizer(VQConfig(downsample=8)).grid == (8, 8)


def test_forward_returns_what_training_needs(small):
    out = small(torch.rand(2, 3, 16, 16))
    assert out.reconstruction.shape == (2, 3, 16, 16)
    assert out.vq_loss.requires_grad and out.perplexity >= 1


def test_config_round_trips_through_json():
    config = VQConfig(image_size=32, downsample=8, quantizer="straight_through", codebook_size=64)
    assert VQConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert VQTokenizer.from_config(config.to_dict()).config == config
    with pytest.raises(
        ValueError, match=r"VQConfig: unknown fields \[.codebook.\]; expected a subset of \[.image_size."
    ):
        VQConfig.from_dict({"codebook": 3})
    with pytest.raises(ValueError, match="downsample: expected a power of two"):
        VQConfig(downsample=6)
    with pytest.raises(ValueError, match="image_size: 40 is not divisible"):
        VQConfig(image_size=40, downsample=16)
    with pytest.raises(ValueError, match="quantizer"):
        VQConfig(quantizer="fsq")
    with pytest.raises(TypeError, match="config: expected a VQConfig"):
        VQTokenizer({"image_size": 32})


def test_save_and_load_reproduce_the_codes(small, tmp_path):
    small(torch.rand(4, 3, 16, 16))  # a training pass initialises the codebook from data
    small.eval()
    small.save_pretrained(tmp_path)
    assert not any(p.suffix in {".bin", ".pt", ".pkl"} for p in tmp_path.iterdir())
    loaded = VQTokenizer.from_pretrained(tmp_path)
    img = torch.rand(2, 3, 16, 16)
    codes = small.encode(img)
    assert torch.equal(loaded.encode(img), codes)
    assert torch.equal(loaded.decode(codes), small.decode(codes))
    assert bool(loaded.quantizer.initialized)
    with pytest.raises(ValueError, match="holds a 'vq' tokenizer, expected 'patch'"):
        PatchTokenizer.from_pretrained(tmp_path)


def test_bad_input_names_the_argument(small):
    with pytest.raises(ValueError, match=r"img: expected shape \(B, 3, 16, 16\)"):
        small.encode(torch.rand(1, 3, 32, 32))
    with pytest.raises(TypeError, match="img: expected a float image"):
        small.encode(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"codes: values must be in \[0, 31\]"):
        small.decode(torch.full((1, 4, 4), 32))
    with pytest.raises(ValueError, match=r"codes: expected shape \(B, 4, 4\)"):
        small.decode(torch.zeros(1, 5, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="codes: expected an integer tensor"):
        small.decode(torch.zeros(1, 4, 4))
