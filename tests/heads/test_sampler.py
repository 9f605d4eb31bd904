import math

import pytest
import torch

from cooper_lib.heads.sampler import Guidance, euler_timesteps, guide, sample_euler, shift_timesteps


def _constant(v):
    def velocity(x, t, sample, conditional):
        return v[sample].expand_as(x)

    return velocity


def test_timesteps_run_from_noise_to_data_and_shift_keeps_the_ends():
    times = euler_timesteps(10, shift=3.0)
    assert times.shape == (11,)
    assert times[0] == 1.0 and times[-1] == 0.0
    assert bool((times[1:] < times[:-1]).all())
    plain = euler_timesteps(10)
    assert bool((times[1:-1] > plain[1:-1]).all())  # shift > 1 spends more steps near the noise
    torch.testing.assert_close(shift_timesteps(torch.tensor([0.5]), 3.0), torch.tensor([0.75]))


@pytest.mark.parametrize(("steps", "shift"), [(1, 1.0), (7, 3.0)])
def test_straight_path_is_exact_for_any_schedule(steps, shift):
    clean, noise = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    out = sample_euler(_constant(noise - clean), noise, steps=steps, shift=shift)
    torch.testing.assert_close(out, clean, atol=1e-5, rtol=0)


def test_linear_field_reaches_the_analytic_endpoint():
    # dx/dt = a x from t = 1 back to t = 0 gives x(0) = x(1) exp(-a).
    a = 0.8
    start = torch.randn(2, 6, 3, dtype=torch.float64)
    exact = start * math.exp(-a)

    def velocity(x, t, sample, conditional):
        return a * x

    errors = [
        (sample_euler(velocity, start, steps=s, shift=3.0) - exact).abs().max().item() for s in (10, 50, 200)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[1] / errors[2] > 3.5  # first order: 4x the steps, about 4x less error
    assert errors[2] < 5e-3 * exact.abs().max().item()


def test_guidance_scale_one_is_the_conditional_branch():
    cond, uncond = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    torch.testing.assert_close(guide(cond, uncond, Guidance(scale=1.0, renorm="none")), cond)
    torch.testing.assert_close(guide(cond, uncond, Guidance(scale=1.0)), cond)

    calls = []

    def velocity(x, t, sample, conditional):
        calls.append(conditional.clone())
        return torch.where(conditional[:, None, None], x + 1.0, x - 1.0)

    noise = torch.randn(2, 5, 3)
    guided = sample_euler(velocity, noise, steps=4, guidance=Guidance(scale=1.0))
    assert all(bool(c.all()) for c in calls)  # no unconditional evaluation at all
    calls.clear()
    plain = sample_euler(velocity, noise, steps=4, guidance=None)
    torch.testing.assert_close(guided, plain)


def test_guided_velocity_formula_and_renorm():
    cond, uncond = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    raw = guide(cond, uncond, Guidance(scale=4.0, renorm="none"))
    torch.testing.assert_close(raw, uncond + 4.0 * (cond - uncond))
    for mode, dims in (("global", (1, 2)), ("channel", (2,))):
        out = guide(cond, uncond, Guidance(scale=4.0, renorm=mode))
        assert bool((out.norm(dim=dims) <= cond.norm(dim=dims) + 1e-5).all())
        ratio = out / raw  # a positive factor per sample (global) or per token (channel)
        assert bool((ratio > 0).all()) and bool((ratio <= 1 + 1e-6).all())
    floor = guide(cond, uncond, Guidance(scale=4.0, renorm="global", renorm_min=1.0))
    torch.testing.assert_close(floor, raw)


def _two_branch_field():
    weight = torch.randn(3, 3)

    def velocity(x, t, sample, conditional):
        shift = torch.where(conditional, 1.0, -0.5)[:, None, None] * (sample.float() + 1)[:, None, None]
        return torch.tanh(x @ weight) * t[:, None, None] + shift

    return velocity


def test_batched_guidance_equals_two_separate_passes():
    velocity = _two_branch_field()
    noise = torch.randn(4, 6, 3)
    guidance = Guidance(scale=3.0, interval=(0.2, 1.0))
    batched = sample_euler(velocity, noise, steps=12, guidance=guidance, batch_cfg=True)
    separate = sample_euler(velocity, noise, steps=12, guidance=guidance, batch_cfg=False)
    torch.testing.assert_close(batched, separate, atol=1e-6, rtol=0)
    unguided = sample_euler(velocity, noise, steps=12)
    assert not torch.allclose(batched, unguided)


def test_guidance_interval_limits_the_guided_steps():
    seen = []

    def velocity(x, t, sample, conditional):
        seen.append((float(t[0]), bool((~conditional).any())))
        return torch.zeros_like(x)

    sample_euler(
        velocity,
        torch.zeros(1, 2, 2),
        steps=10,
        shift=1.0,
        guidance=Guidance(scale=2.0, interval=(0.45, 1.0)),
    )
    assert seen and all(guided == (t > 0.45) for t, guided in seen)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": (0.5, 0.2)}, "interval"),
        ({"renorm": "local"}, "renorm"),
        ({"renorm_min": 2.0}, "renorm_min"),
    ],
)
def test_bad_guidance_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Guidance(**kwargs)


def test_bad_schedule_is_named():
    with pytest.raises(ValueError, match="steps"):
        euler_timesteps(0)
    with pytest.raises(ValueError, match="shift"):
        shift_timesteps(torch.tensor([0.5]), 0.0)
