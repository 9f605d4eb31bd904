import json

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cooper_lib.tokenizers import PatchTokenizer


class _LatentDist:
    def __init__(self, mean: torch.Tensor) -> None:
        self.mean = mean

    def mode(self) -> torch.Tensor:
        return self.mean


class _Decoded:
    def __init__(self, sample: torch.Tensor) -> None:
        self.sample = sample


class _EncodedKL:
    def __init__(self, mean: torch.Tensor) -> None:
        self.latent_dist = _LatentDist(mean)


class FakeAutoencoder(nn.Module):
    """Shaped like diffusers' AutoencoderKL: space-to-depth by 2 as an exactly invertible 'latent'.

    Records its inputs so tests can check the [-1, 1] convention and the dtype handed to it.
    """

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1, dtype=dtype))
        self.seen: list[torch.Tensor] = []

    def encode(self, x: torch.Tensor) -> _EncodedKL:
        self.seen.append(x)
        return _EncodedKL(F.pixel_unshuffle(x, 2))

    def decode(self, z: torch.Tensor) -> _Decoded:
        return _Decoded(F.pixel_shuffle(z, 2))


@settings(max_examples=30, deadline=None)
@given(
    patch=st.sampled_from([1, 2, 4, 8]),
    rows=st.integers(1, 6),
    cols=st.integers(1, 6),
    channels=st.integers(1, 4),
)
def test_pixel_path_is_an_exact_inverse(patch, rows, cols, channels):
    tokenizer = PatchTokenizer(image_size=(rows * patch, cols * patch), patch_size=patch, channels=channels)
    img = torch.rand(2, channels, rows * patch, cols * patch)
    tokens = tokenizer.encode(img)
    assert tokens.shape == (2, rows * cols, channels * patch * patch)
    assert torch.allclose(tokenizer.decode(tokens), img, rtol=0, atol=1e-7)
    tokenizer.token_mean.zero_()
    tokenizer.token_std.fill_(1.0)
    assert torch.equal(tokenizer.decode(tokenizer.encode(img)), img)  # pure patching: bit exact


def test_defaults_and_token_layout():
    tokenizer = PatchTokenizer()
    assert (tokenizer.num_tokens, tokenizer.token_dim, tokenizer.grid) == (256, 48, (16, 16))
    img = torch.rand(1, 3, 64, 64)
    tokens = tokenizer.encode(img)
    first = img[0, :, :4, :4].permute(1, 2, 0).reshape(-1)  # (row, col, channel) order
    assert torch.allclose(tokens[0, 0], first * 2 - 1)
    second_row = img[0, :, 4:8, :4].permute(1, 2, 0).reshape(-1)
    assert torch.allclose(tokens[0, 16], second_row * 2 - 1)
    assert tokenizer.encode(torch.zeros(1, 3, 64, 64)).eq(-1).all()
    assert tokenizer.encode(torch.ones(1, 3, 64, 64)).eq(1).all()


def test_fitted_normalisation_gives_unit_scale_tokens_and_stays_invertible():
    tokenizer = PatchTokenizer(image_size=16, patch_size=4)
    images = torch.rand(64, 3, 16, 16) * 0.3 + 0.2
    tokenizer.fit_normalization([images[:32], images[32:]])
    tokens = tokenizer.encode(images).flatten(0, 1)
    assert torch.allclose(tokens.mean(0), torch.zeros(48), atol=1e-4)
    assert torch.allclose(tokens.std(0, unbiased=False), torch.ones(48), atol=1e-3)
    assert torch.allclose(tokenizer.decode(tokenizer.encode(images)), images, atol=1e-6)
    with pytest.raises(ValueError, match="images: no batches"):
        tokenizer.fit_normalization([])


def test_autoencoder_path_uses_coopers_latent_normalisation_and_2x2_patches():
    ae = FakeAutoencoder()
    tokenizer = PatchTokenizer(image_size=16, autoencoder=ae)
    assert tokenizer.grid == (4, 4) and tokenizer.token_dim == 12 * 4
    img = torch.rand(2, 3, 16, 16)
    tokens = tokenizer.encode(img)
    assert ae.seen[-1].min() < -0.9 and ae.seen[-1].max() > 0.9  # the autoencoder sees [-1, 1]
    latent = F.pixel_unshuffle(img * 2 - 1, 2)
    expected = 0.3611 * (latent[:, :, :2, :2] - 0.1159)
    assert torch.allclose(tokens[:, 0], expected.permute(0, 2, 3, 1).reshape(2, -1), atol=1e-6)
    assert torch.allclose(tokenizer.decode(tokens), img, atol=1e-6)


def test_autoencoder_inputs_follow_its_dtype_and_outputs_are_float32():
    ae = FakeAutoencoder(dtype=torch.float64)
    tokenizer = PatchTokenizer(image_size=8, autoencoder=ae)
    tokens = tokenizer.encode(torch.rand(1, 3, 8, 8))
    assert ae.seen[-1].dtype == torch.float64 and tokens.dtype == torch.float32
    assert tokenizer.decode(tokens).dtype == torch.float32
    assert "anchor" not in dict(tokenizer.named_parameters())  # not a submodule: never saved or trained


def test_autoencoder_errors():
    class NoDecode:
        def encode(self, x):
            return x

    class Flat:
        def encode(self, x):
            return x.flatten(1)

        def decode(self, z):
            return z

    with pytest.raises(TypeError, match="autoencoder: expected an object with encode"):
        PatchTokenizer(autoencoder=NoDecode())
    with pytest.raises(TypeError, match=r"autoencoder: encode\(\) must return"):
        PatchTokenizer(image_size=8, autoencoder=Flat())
    with pytest.raises(ValueError, match="latent grid"):
        PatchTokenizer(image_size=12, autoencoder=FakeAutoencoder(), latent_patch=4)


def test_bad_input_names_the_argument():
    tokenizer = PatchTokenizer()
    with pytest.raises(ValueError, match=r"img: expected shape \(B, 3, 64, 64\).*to_working_resolution"):
        tokenizer.encode(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="img: expected shape"):
        tokenizer.encode(torch.rand(1, 4, 64, 64))
    with pytest.raises(TypeError, match="img: expected a float image"):
        tokenizer.encode(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"tokens: expected shape \(B, 256, 48\)"):
        tokenizer.decode(torch.rand(1, 255, 48))
    with pytest.raises(ValueError, match="image_size"):
        PatchTokenizer(image_size=30, patch_size=4)
    with pytest.raises(ValueError, match="image_size: expected a positive int"):
        PatchTokenizer(image_size=(0, 4))


def test_resizing_is_a_separate_step():
    tokenizer = PatchTokenizer(image_size=16, patch_size=4)
    palette_img = torch.zeros(1, 3, 40, 24)
    palette_img[:, 0, :20] = 1.0
    small = tokenizer.to_working_resolution(palette_img, mode="nearest")
    assert small.shape == (1, 3, 16, 16) and set(small.unique().tolist()) == {0.0, 1.0}
    assert tokenizer.to_working_resolution(torch.rand(2, 3, 50, 70)).shape == (2, 3, 16, 16)
    assert tokenizer.from_working_resolution(small, (40, 24), mode="nearest").shape == (1, 3, 40, 24)
    with pytest.raises(ValueError, match="mode"):
        tokenizer.to_working_resolution(palette_img, mode="lanczos")


def test_save_and_load(tmp_path):
    tokenizer = PatchTokenizer(image_size=16, patch_size=2)
    tokenizer.fit_normalization(torch.rand(8, 3, 16, 16))
    tokenizer.save_pretrained(tmp_path / "pixels")
    config = json.loads((tmp_path / "pixels" / "tokenizer_config.json").read_text())
    assert config["tokenizer_type"] == "patch" and config["uses_autoencoder"] is False
    loaded = PatchTokenizer.from_pretrained(tmp_path / "pixels")
    img = torch.rand(2, 3, 16, 16)
    assert torch.equal(loaded.encode(img), tokenizer.encode(img))

    PatchTokenizer(image_size=16, autoencoder=FakeAutoencoder()).save_pretrained(tmp_path / "latents")
    with pytest.raises(ValueError, match="autoencoder: the saved tokenizer used an autoencoder"):
        PatchTokenizer.from_pretrained(tmp_path / "latents")
    assert PatchTokenizer.from_pretrained(tmp_path / "latents", autoencoder=FakeAutoencoder()).token_dim == 48
