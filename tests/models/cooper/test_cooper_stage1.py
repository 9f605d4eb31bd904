import pytest
import torch

from cooper_lib.models.cooper import (
    NO_DROPOUT,
    ConditionDropout,
    CooperModel,
    Stage1Sample,
    preset,
    stage1_sequence,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CooperModel(preset("tiny")).eval()


def _sample(g):
    return Stage1Sample(
        vit_pixels=torch.rand(3, 8, 12, generator=g) * 2 - 1,
        vae_pixels=torch.rand(3, 32, 32, generator=g) * 2 - 1,
        target_pixels=torch.rand(3, 32, 32, generator=g) * 2 - 1,
        instruction_ids=(20, 21, 22),
    )


def test_layout_without_dropout(model):
    g = torch.Generator().manual_seed(0)
    seq = stage1_sequence(model, [_sample(g), _sample(g)], dropout=NO_DROPOUT, sample_latents=False)
    # per sample: clean latent 1+4+1, ViT 1+6+1, text 1+3+1, noised latent 1+4+1
    per_sample = 6 + 8 + 5 + 6
    assert seq.length == 2 * per_sample
    positions = [0] * 6 + [1] * 8 + [2, 3, 4, 5, 6] + [7] * 6
    assert seq.positions.tolist() == positions * 2
    assert seq.latent_noised.tolist() == ([False] * 4 + [True] * 4) * 2
    target = model.vae.encode(_sample(torch.Generator().manual_seed(0)).target_pixels[None])[0]
    torch.testing.assert_close(
        seq.latents[4:8], target.reshape(16, 2, 2, 2, 2).permute(1, 3, 2, 4, 0).reshape(4, 64)
    )
    assert seq.text_ids[seq.noise_split[seq.text_index] < 0].tolist()[:7] == [3, 4, 3, 4, 1, 20, 21]


def test_dropped_conditions_keep_the_image_positions(model):
    g = torch.Generator().manual_seed(0)
    seq = stage1_sequence(model, [_sample(g)], dropout=ConditionDropout(1.0, 1.0, 1.0))
    assert seq.length == 6 and seq.positions.tolist() == [2] * 6  # two images skipped, text not counted
    counts = {"vae": 0, "vit": 0, "text": 0}
    gen = torch.Generator().manual_seed(1)
    for _ in range(200):
        s = stage1_sequence(model, [_sample(g)], dropout=ConditionDropout(), generator=gen)
        counts["vae"] += int(not (~s.latent_noised).any())
        counts["vit"] += int(not s.vit_lengths)
        counts["text"] += int(20 not in s.text_ids.tolist())
    assert 5 <= counts["text"] <= 40 and 50 <= counts["vit"] <= 110 and 5 <= counts["vae"] <= 40
    with pytest.raises(ValueError, match="vit: expected a probability"):
        ConditionDropout(vit=1.5)
    with pytest.raises(ValueError, match="samples: expected at least one"):
        stage1_sequence(model, [])
