import pytest
import torch

from cooper_lib.models.cooper import (
    EVAL_SAMPLING,
    ROLLOUT_SAMPLING,
    CooperModel,
    CooperSampling,
    Image,
    Latent,
    Text,
    combine_guidance,
    generate_image,
    generate_latent,
    guidance_contexts,
    preset,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = CooperModel(preset("tiny")).eval()
    torch.nn.init.normal_(m.llm2vae.weight, std=0.3)
    return m


def _context():
    g = torch.Generator().manual_seed(1)
    return [Text((1, 5, 6, 2)), Image(torch.rand(3, 16, 16, generator=g) * 2 - 1), Text((1, 7, 8, 2))]


def test_time_grid_is_bagels():
    t = EVAL_SAMPLING.timesteps()
    assert len(t) == 50  # num_timesteps=50: linspace(1, 0, 50), so 49 Euler updates
    assert t[0] == 1 and t[-1] == 0
    u = 48 / 49
    assert t[1].item() == pytest.approx(3 * u / (1 + 2 * u))
    assert ROLLOUT_SAMPLING.num_timesteps == 30 and ROLLOUT_SAMPLING.cfg_interval == (0.4, 1.0)
    assert (EVAL_SAMPLING.cfg_text_scale, EVAL_SAMPLING.cfg_img_scale) == (4.0, 2.0)
    assert EVAL_SAMPLING.cfg_renorm_type == "text_channel" and ROLLOUT_SAMPLING.cfg_renorm_type == "global"


def test_guidance_contexts_follow_bagels_snapshots():
    a, b, c, d, e = (
        Text((1,)),
        Image(torch.zeros(3, 4, 4)),
        Text((2,)),
        Latent(torch.zeros(16, 2, 2)),
        Text((3,)),
    )
    full, no_text, no_image = guidance_contexts([a, b, c, d, e])
    assert full == [a, b, c, d, e]
    assert no_text == [a, b, c, d]  # snapshot before the last text
    assert no_image == [a, c, e]
    assert guidance_contexts([a, b])[1] == [a, b]  # an image after the last text: the snapshot includes it
    with pytest.raises(TypeError, match="context: expected Text, Image or Latent"):
        guidance_contexts(["hello"])


def test_combine_guidance_modes():
    g = torch.Generator().manual_seed(0)
    v, vt, vi = (torch.randn(5, 8, generator=g) for _ in range(3))
    s = CooperSampling(cfg_renorm_type="global", cfg_renorm_min=0.0)
    raw = vi + 2.0 * (vt + 4.0 * (v - vt) - vi)
    torch.testing.assert_close(combine_guidance(v, vt, vi, s), raw * min(1.0, float(v.norm() / raw.norm())))
    s = CooperSampling(cfg_renorm_type="channel")
    per_token = (v.norm(dim=-1, keepdim=True) / raw.norm(dim=-1, keepdim=True)).clamp(max=1.0)
    torch.testing.assert_close(combine_guidance(v, vt, vi, s), raw * per_token)
    s = CooperSampling(cfg_renorm_type="text_channel")
    text = vt + 4.0 * (v - vt)
    text = text * (v.norm(dim=-1, keepdim=True) / text.norm(dim=-1, keepdim=True)).clamp(max=1.0)
    torch.testing.assert_close(combine_guidance(v, vt, vi, s), vi + 2.0 * (text - vi))
    assert combine_guidance(v, None, None, s) is v


def test_sampling_settings_are_checked():
    with pytest.raises(ValueError, match="num_timesteps"):
        CooperSampling(num_timesteps=1)
    with pytest.raises(ValueError, match="cfg_renorm_type"):
        CooperSampling(cfg_renorm_type="none")
    with pytest.raises(ValueError, match="cfg_interval"):
        CooperSampling(cfg_interval=(0.5, 0.4))


def test_batched_branches_match_one_by_one(model):
    s = CooperSampling(num_timesteps=6)
    a = generate_latent(model, _context(), (2, 3), s, generator=torch.Generator().manual_seed(0))
    b = generate_latent(
        model, _context(), (2, 3), s, generator=torch.Generator().manual_seed(0), batch_branches=False
    )
    assert a.shape == (16, 4, 6)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    unguided = generate_latent(
        model,
        _context(),
        (2, 3),
        CooperSampling(num_timesteps=6, cfg_text_scale=1.0),
        generator=torch.Generator().manual_seed(0),
    )
    assert not torch.allclose(a, unguided, atol=1e-3)


def test_guidance_runs_inside_its_interval_only(model, monkeypatch):
    calls = []
    original = CooperModel.velocity

    def spy(self, seq, cache, x_t, t, rows=None):
        out = original(self, seq, cache, x_t, t, rows)
        calls.append(len(out) // 4)  # branches in this call (2 x 2 latent tokens each)
        return out

    monkeypatch.setattr(CooperModel, "velocity", spy)
    s = CooperSampling(num_timesteps=10, cfg_interval=(0.4, 1.0))
    generate_latent(model, _context(), (2, 2), s, generator=torch.Generator().manual_seed(0))
    times = s.timesteps()[:-1]
    assert calls == [3 if 0.4 < float(t) <= 1.0 else 1 for t in times]
    assert 1 in calls and 3 in calls
    calls.clear()
    generate_latent(model, _context(), (2, 2), CooperSampling(num_timesteps=4, cfg_img_scale=1.0))
    assert calls == [2, 2, 2]  # no image branch when its scale is 1


def test_generate_image_decodes_a_depth_pseudo_image(model):
    img = generate_image(
        model,
        _context(),
        (32, 48),
        CooperSampling(num_timesteps=4),
        generator=torch.Generator().manual_seed(0),
    )
    assert img.shape == (3, 32, 48) and torch.isfinite(img).all()
    with pytest.raises(ValueError, match="size: expected"):
        generate_image(model, _context(), (30, 32))
