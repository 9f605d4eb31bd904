import pytest
import torch

from cooper_lib.models.cooper import Autoencoder, AutoencoderConfig, autoencoder_config_from_shapes, preset


def test_flux_size_and_widths_read_off_the_shapes():
    with torch.device("meta"):
        ae = Autoencoder(AutoencoderConfig())
    state = ae.state_dict()
    assert len(state) == 244 and sum(t.numel() for t in state.values()) == 83_819_683
    cfg = autoencoder_config_from_shapes({k: tuple(v.shape) for k, v in state.items()})
    assert cfg == AutoencoderConfig()
    with pytest.raises(ValueError, match="missing key 'decoder.conv_in.weight'"):
        autoencoder_config_from_shapes(
            {k: tuple(v.shape) for k, v in state.items() if not k.startswith("decoder.conv_in")}
        )


def test_encode_decode_shapes_and_latent_affine_map():
    torch.manual_seed(0)
    ae = Autoencoder(preset("tiny").vae).eval()
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        latent = ae.encode(x)
        assert latent.shape == (2, 16, 4, 6)
        mean = ae.encoder(x).chunk(2, dim=1)[0]
        torch.testing.assert_close(latent, 0.3611 * (mean - 0.1159))
        sampled = ae.encode(x, sample=True, generator=torch.Generator().manual_seed(0))
        assert not torch.allclose(sampled, latent)
        assert ae.decode(latent).shape == (2, 3, 32, 48)
    with pytest.raises(ValueError, match="x: expected"):
        ae.encode(torch.zeros(1, 3, 30, 32))
