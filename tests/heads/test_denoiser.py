import pytest
import torch

from cooper_lib.heads import FlowDenoiser
from cooper_lib.heads.denoiser import timestep_features


def _denoiser(**kwargs):
    return FlowDenoiser(12, (2, 3), 16, 4, width=32, blocks=2, num_heads=2, **kwargs)


def _inputs(n=3):
    return torch.randn(n, 6, 12), torch.rand(n), torch.randn(n, 4, 16), torch.ones(n, dtype=torch.bool)


def test_untrained_denoiser_predicts_zero_velocity():
    velocity = _denoiser()(*_inputs())
    assert velocity.shape == (3, 6, 12)
    assert torch.equal(velocity, torch.zeros_like(velocity))


def _perturbed():
    denoiser = _denoiser()
    with torch.no_grad():
        for param in denoiser.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    return denoiser


def test_velocity_depends_on_tokens_time_and_condition():
    denoiser = _perturbed()
    x, t, cond, keep = _inputs()
    base = denoiser(x, t, cond, keep)
    assert not torch.allclose(base, denoiser(x + 1, t, cond, keep))
    assert not torch.allclose(base, denoiser(x, t * 0.5, cond, keep))
    assert not torch.allclose(base, denoiser(x, t, cond + 1, keep))


def test_unconditional_rows_ignore_the_condition_and_rows_are_independent():
    denoiser = _perturbed()
    x, t, cond, keep = _inputs()
    drop = torch.tensor([True, False, True])
    out = denoiser(x, t, cond, drop)
    other = denoiser(x, t, torch.randn_like(cond), drop)
    torch.testing.assert_close(out[1], other[1])
    assert not torch.allclose(out[0], other[0])
    torch.testing.assert_close(denoiser(x[:1], t[:1], cond[:1], drop[:1]), out[:1], atol=1e-6, rtol=1e-5)


def test_gradients_reach_every_parameter():
    denoiser = _perturbed()
    x, t, cond, keep = _inputs()
    keep[0] = False
    denoiser(x, t, cond, keep).square().sum().backward()
    missing = [
        name for name, p in denoiser.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing


def test_timestep_features_separate_nearby_times():
    features = timestep_features(torch.tensor([0.0, 0.01, 1.0]))
    assert features.shape == (3, 256)
    assert (features[0] - features[1]).norm() > 0.1


@pytest.mark.parametrize(("kwargs", "message"), [({"width": 30}, "width"), ({"blocks": 0}, "blocks")])
def test_bad_size_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FlowDenoiser(12, (2, 3), 16, 4, **{"width": 32, "num_heads": 2, **kwargs})
