import pytest
import torch

from cooper_lib.data.synthetic import SceneConfig, render_scenes
from cooper_lib.modalities.depth import DepthCodec
from cooper_lib.models.cooper import (
    NO_DROPOUT,
    CooperModel,
    SequenceBuilder,
    Stage1Sample,
    preset,
    stage1_sequence,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = CooperModel(preset("tiny")).eval()
    torch.nn.init.normal_(m.llm2vae.weight, std=0.05)  # BAGEL zero-initialises it; make outputs differ
    return m


def _sequence(cfg):
    b = SequenceBuilder(cfg)
    b.text([1, 5, 6]).image(torch.rand(3, 16, 16) * 2 - 1).text([7]).latent(grid=(2, 2), noised=True).text(
        [8, 2]
    )
    b.new_sample().latent(torch.randn(16, 4, 4)).text([9]).latent(grid=(1, 2), noised=True)
    return b.build()


def test_forward_shapes_and_cached_velocity(model):
    seq = _sequence(model.config)
    x_t, t = torch.randn(6, 64), torch.rand(6)
    hidden = model(seq, x_t, t)
    assert hidden.shape == (seq.length, 64) and torch.isfinite(hidden).all()
    assert model.text_logits(hidden).shape == (seq.length, 128)
    cache = model.prefill(seq)
    v = model.velocity(seq, cache, x_t, t)
    torch.testing.assert_close(
        v, model.llm2vae(hidden[seq.latent_index[seq.latent_noised]]), rtol=1e-5, atol=1e-5
    )


def test_noised_latents_are_read_by_nobody_else(model):
    seq = _sequence(model.config)
    x_t, t = torch.randn(6, 64), torch.rand(6)
    a = model(seq, x_t, t)
    b = model(seq, x_t + 1.0, t)
    outside = seq.noise_split < 0
    torch.testing.assert_close(a[outside], b[outside])
    assert not torch.allclose(a[~outside], b[~outside])


def _depth_batch(model, n=4, size=32):
    """COOPER's stage-1 rows (image as latent and ViT tokens, instruction, noised depth latent)."""
    scenes = render_scenes(n, seed=0, config=SceneConfig(width=size, height=size))
    codec = DepthCodec(min_depth=0.1, max_depth=12.0, out_of_range="clamp")
    samples = []
    for scene in scenes:
        rgb = scene.rgb * 2 - 1
        depth = codec.encode(scene.depth) * 2 - 1  # gray pseudo-image in [-1, 1]
        samples.append(
            Stage1Sample(vit_pixels=rgb, vae_pixels=rgb, target_pixels=depth, instruction_ids=(20, 21))
        )
    return stage1_sequence(model, samples, dropout=NO_DROPOUT, sample_latents=False)


def test_stage1_loss_falls_on_synthetic_depth():
    torch.manual_seed(0)
    model = CooperModel(preset("tiny"))
    model.vae.requires_grad_(False)
    model.vit_model.requires_grad_(False)  # COOPER's stage 1: encoders frozen, the LLM trained
    seq = _depth_batch(model)

    def held_out() -> float:
        with torch.no_grad():
            return float(model.stage1_loss(seq, generator=torch.Generator().manual_seed(123)))

    start = held_out()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(50):
        loss = model.stage1_loss(seq, generator=g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    assert held_out() < 0.7 * start
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10])


def test_stage1_needs_a_noised_split(model):
    seq = SequenceBuilder(model.config).text([1, 2]).latent(torch.randn(16, 2, 2)).build()
    with pytest.raises(ValueError, match="seq: expected at least one noised latent split"):
        model.stage1_loss(seq)
    with pytest.raises(ValueError, match="x_t, t: expected \\[0, 64\\] and \\[0\\]"):
        model(seq, torch.zeros(1, 64), torch.zeros(1))
    with pytest.raises(ValueError, match="part: expected"):
        model.num_parameters("lm")


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = CooperModel(preset("tiny")).train()
    torch.nn.init.normal_(model.llm2vae.weight, std=0.05)
    seq = SequenceBuilder(model.config).text([1, 5]).latent(torch.randn(16, 4, 4), noised=True).build()
    grads = []
    for flag in (False, True):
        model.language_model.model.gradient_checkpointing = flag
        model.zero_grad()
        model.stage1_loss(seq, generator=torch.Generator().manual_seed(0)).backward()
        grads.append(model.language_model.model.layers[0].mlp_moe_gen.up_proj.weight.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1])


def test_bf16_model_runs():
    bf16 = CooperModel(preset("tiny")).to(torch.bfloat16).eval()
    seq = _sequence(bf16.config)
    hidden = bf16(seq, torch.randn(6, 64), torch.rand(6))
    assert hidden.dtype == torch.bfloat16 and torch.isfinite(hidden).all()
