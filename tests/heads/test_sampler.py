import math

import pytest
import torch

from cooper_lib.heads.sampler import (
    FULL,
    NO_IMAGE,
    NO_TEXT,
    SAMPLING_PRESETS,
    Guidance,
    euler_timesteps,
    guide,
    sample_euler,
    shift_timesteps,
)


def _constant(v):
    def velocity(x, t, sample, branch):
        return v[sample].expand_as(x)

    return velocity


def test_timesteps_are_bagels_grid():
    # linspace(1, 0, 5) = 1, .75, .5, .25, 0; shifted by 3 t / (1 + 2 t) by hand.
    torch.testing.assert_close(
        euler_timesteps(5, shift=3.0), torch.tensor([1.0, 0.9, 0.75, 0.5, 0.0], dtype=torch.float64)
    )
    plain = euler_timesteps(10)
    assert plain.shape == (10,) and plain[0] == 1.0 and plain[-1] == 0.0
    assert bool((euler_timesteps(10, 3.0)[1:-1] > plain[1:-1]).all())  # more steps near the noise
    torch.testing.assert_close(shift_timesteps(torch.tensor([0.5]), 3.0), torch.tensor([0.75]))


def test_fifty_steps_are_forty_nine_updates():
    calls = []

    def velocity(x, t, sample, branch):
        calls.append(float(t[0]))
        return torch.zeros_like(x)

    sample_euler(velocity, torch.zeros(1, 1, 1), steps=50, shift=3.0)
    assert len(calls) == 49 and calls[0] == 1.0 and min(calls) > 0.0


@pytest.mark.parametrize(("steps", "shift"), [(2, 1.0), (7, 3.0)])
def test_straight_path_is_exact_for_any_schedule(steps, shift):
    clean, noise = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    out = sample_euler(_constant(noise - clean), noise, steps=steps, shift=shift)
    torch.testing.assert_close(out, clean, atol=1e-5, rtol=0)


def test_linear_field_reaches_the_analytic_endpoint():
    # dx/dt = a x from t = 1 back to t = 0 gives x(0) = x(1) exp(-a).
    a = 0.8
    start = torch.randn(2, 6, 3, dtype=torch.float64)
    exact = start * math.exp(-a)

    def velocity(x, t, sample, branch):
        return a * x

    errors = [
        (sample_euler(velocity, start, steps=s, shift=3.0) - exact).abs().max().item() for s in (11, 51, 201)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[1] / errors[2] > 3.5  # first order: 4x the steps, about 4x less error
    assert errors[2] < 5e-3 * exact.abs().max().item()


# Branch velocities of two tokens with two channels, and BAGEL's rule worked by hand with text
# scale 4 and image scale 2: u = v_t + 4 (v - v_t), w = v_i + 2 (u - v_i).
# Token 1: v = (3, 4), v_t = (1, 0), v_i = (0, 1) -> u = (9, 16), w = (18, 31).
# Token 2: v = (0, 1), v_t = v_i = (0, 0)        -> u = (0, 4),  w = (0, 8).
FULL_V = torch.tensor([[[3.0, 4.0], [0.0, 1.0]]], dtype=torch.float64)
NO_TEXT_V = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
NO_IMAGE_V = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]], dtype=torch.float64)
W = torch.tensor([[[18.0, 31.0], [0.0, 8.0]]], dtype=torch.float64)


def _bagel(renorm, renorm_min=0.0):
    return Guidance(4.0, 2.0, renorm=renorm, renorm_min=renorm_min)


def test_two_condition_guidance_without_renorm():
    torch.testing.assert_close(guide(FULL_V, NO_TEXT_V, NO_IMAGE_V, _bagel("none")), W)
    # no image branch: w = u
    u = torch.tensor([[[9.0, 16.0], [0.0, 4.0]]], dtype=torch.float64)
    torch.testing.assert_close(guide(FULL_V, NO_TEXT_V, None, Guidance(4.0, renorm="none")), u)


def test_global_renorm_uses_the_norm_over_all_dimensions():
    # |v| = sqrt(9 + 16 + 1) = sqrt(26); |w| = sqrt(18^2 + 31^2 + 8^2) = sqrt(1349).
    expected = W * math.sqrt(26 / 1349)
    torch.testing.assert_close(guide(FULL_V, NO_TEXT_V, NO_IMAGE_V, _bagel("global")), expected)
    # the factor is floored at renorm_min: 0.5 > sqrt(26 / 1349) = 0.139
    torch.testing.assert_close(guide(FULL_V, NO_TEXT_V, NO_IMAGE_V, _bagel("global", 0.5)), W * 0.5)


def test_channel_renorm_is_per_token():
    # token 1: 5 / sqrt(18^2 + 31^2) = 5 / sqrt(1285); token 2: 1 / 8.
    factor = torch.tensor([5 / math.sqrt(1285), 1 / 8], dtype=torch.float64)
    torch.testing.assert_close(
        guide(FULL_V, NO_TEXT_V, NO_IMAGE_V, _bagel("channel")), W * factor[None, :, None]
    )


def test_text_channel_renorm_scales_the_text_guided_velocity_then_applies_image_guidance():
    # token 1: u = (9, 16) scaled by 5 / sqrt(337), then w = (0, 1) + 2 (u' - (0, 1)) = 2 u' - (0, 1).
    # token 2: u = (0, 4) scaled by 1 / 4 -> (0, 1), then w = 2 (0, 1) = (0, 2).
    r = 5 / math.sqrt(337)
    expected = torch.tensor([[[18 * r, 32 * r - 1], [0.0, 2.0]]], dtype=torch.float64)
    torch.testing.assert_close(guide(FULL_V, NO_TEXT_V, NO_IMAGE_V, _bagel("text_channel")), expected)


def test_renorm_never_enlarges():
    small = FULL_V * 0.0 - 0.1  # the guided velocity is shorter than the full one: left as is
    guided = guide(FULL_V, FULL_V - small, FULL_V, Guidance(1.1, renorm="global"))
    torch.testing.assert_close(guided, FULL_V + 0.1 * small)


def test_a_guided_trajectory_by_hand():
    # One sample, one scalar. v = x + 1, v_t = x, v_i = 2 x; scales 4 and 2, no renorm:
    # u = x + 4, w = 2 x + 2 (x + 4 - 2 x) = 8. Steps 3 without shift: times 1, 0.5, 0.
    # t = 1 is inside (0.6, 1]: x = 1 - 0.5 * 8 = -3; t = 0.5 is not: x = -3 - 0.5 * (-3 + 1) = -2.
    def velocity(x, t, sample, branch):
        full, no_text, no_image = x + 1, x, 2 * x
        b = branch[:, None, None]
        return torch.where(b == FULL, full, torch.where(b == NO_TEXT, no_text, no_image))

    guidance = Guidance(4.0, 2.0, interval=(0.6, 1.0), renorm="none")
    for batch_cfg in (True, False):
        out = sample_euler(
            velocity, torch.ones(1, 1, 1), steps=3, shift=1.0, guidance=guidance, batch_cfg=batch_cfg
        )
        assert out.item() == pytest.approx(-2.0)


def _three_branch_field():
    weight = torch.randn(3, 3)

    def velocity(x, t, sample, branch):
        offset = torch.tensor([1.0, -0.5, 0.25])[branch][:, None, None] * (sample.float() + 1)[:, None, None]
        return torch.tanh(x @ weight) * t[:, None, None] + offset

    return velocity


@pytest.mark.parametrize("renorm", ["global", "channel", "text_channel", "none"])
def test_batched_guidance_is_one_call_and_equals_separate_calls(renorm):
    velocity = _three_branch_field()
    calls = []

    def counted(x, t, sample, branch):
        calls.append(sorted(set(branch.tolist())))
        return velocity(x, t, sample, branch)

    noise = torch.randn(4, 6, 3)
    guidance = Guidance(3.0, 1.5, interval=(0.2, 1.0), renorm=renorm)
    batched = sample_euler(counted, noise, steps=12, shift=1.0, guidance=guidance, batch_cfg=True)
    assert len(calls) == 11 and calls[0] == [FULL, NO_TEXT, NO_IMAGE] and calls[-1] == [FULL]
    separate = sample_euler(velocity, noise, steps=12, shift=1.0, guidance=guidance, batch_cfg=False)
    torch.testing.assert_close(batched, separate, atol=1e-6, rtol=0)
    assert not torch.allclose(batched, sample_euler(velocity, noise, steps=12, shift=1.0))


def test_text_scale_one_runs_the_full_branch_only():
    seen = []

    def velocity(x, t, sample, branch):
        seen.append(branch.clone())
        return x + 1.0

    sample_euler(velocity, torch.randn(2, 5, 3), steps=4, guidance=Guidance(1.0, renorm="none"))
    assert len(seen) == 3 and all(bool((b == FULL).all()) for b in seen)


def test_guidance_interval_limits_the_guided_steps():
    seen = []

    def velocity(x, t, sample, branch):
        seen.append((float(t[0]), bool((branch != FULL).any())))
        return torch.zeros_like(x)

    sample_euler(
        velocity,
        torch.zeros(1, 2, 2),
        steps=11,
        shift=1.0,
        guidance=Guidance(2.0, interval=(0.45, 1.0)),
    )
    assert len(seen) == 10 and all(guided == (t > 0.45) for t, guided in seen)
    assert seen[0] == (1.0, True)  # t = 1 is inside (low, 1]


def test_cooper_presets_are_its_settings():
    # VLMEvalKit/vlmeval/vlm/bagel/bagel_inference.py:125-131 and inferencer.py:640-651 in COOPER.
    assert SAMPLING_PRESETS["cooper-eval"] == {
        "steps": 50,
        "shift": 3.0,
        "cfg_text_scale": 4.0,
        "cfg_img_scale": 2.0,
        "cfg_interval": (0.0, 1.0),
        "cfg_renorm": "text_channel",
        "cfg_renorm_min": 0.0,
    }
    assert SAMPLING_PRESETS["cooper-rollout"] == {
        "steps": 30,
        "shift": 3.0,
        "cfg_text_scale": 4.0,
        "cfg_img_scale": 2.0,
        "cfg_interval": (0.4, 1.0),
        "cfg_renorm": "global",
        "cfg_renorm_min": 0.0,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": (0.5, 0.2)}, "interval"),
        ({"renorm": "local"}, "renorm"),
        ({"renorm_min": 2.0}, "renorm_min"),
        ({"text_scale": 0.5}, "text_scale"),
        ({"image_scale": 2.0}, "image_scale.*text_scale > 1"),
    ],
)
def test_bad_guidance_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Guidance(**kwargs)


def test_bad_schedule_is_named():
    with pytest.raises(ValueError, match="steps"):
        euler_timesteps(1)
    with pytest.raises(ValueError, match="shift"):
        shift_timesteps(torch.tensor([0.5]), 0.0)
    with pytest.raises(ValueError, match="no_image"):
        guide(FULL_V, NO_TEXT_V, None, _bagel("global"))
