import pytest
import torch

from cooper_lib.models.cooper import SequenceBuilder, preset
from cooper_lib.models.cooper.packing import unpatchify
from cooper_lib.models.cooper.vision import patchify


def _reference_mask(splits):
    """BAGEL's per-sample rule, split by split: causal text, full images, noise nobody else reads."""
    total = sum(n for n, _ in splits)
    allowed = torch.zeros(total, total, dtype=torch.bool)
    start = 0
    for n, mode in splits:
        allowed[start : start + n, :start] = True
        block = torch.ones(n, n, dtype=torch.bool)
        allowed[start : start + n, start : start + n] = block.tril() if mode == "causal" else block
        start += n
    start = 0
    for n, mode in splits:
        if mode == "noise":
            allowed[:, start : start + n] = False
            allowed[start : start + n, start : start + n] = True
        start += n
    return allowed


def _two_samples():
    cfg = preset("tiny")
    b = SequenceBuilder(cfg)
    b.text([1, 5, 6]).image(torch.zeros(3, 8, 12)).text([7]).latent(grid=(2, 2), noised=True).text([8, 2])
    b.new_sample().latent(torch.zeros(16, 2, 4)).text([9, 10]).latent(torch.zeros(16, 4, 2), noised=True)
    return cfg, b.build()


def test_attention_mask_follows_bagels_rule_per_sample():
    _, seq = _two_samples()
    # sample 0: text 3, image 1+6+1, text 1, noise 1+4+1, text 2; sample 1: latent 1+2+1, text 2, noise 1+2+1
    s0 = [(3, "causal"), (8, "full"), (1, "causal"), (6, "noise"), (2, "causal")]
    s1 = [(4, "full"), (2, "causal"), (4, "noise")]
    n0 = sum(n for n, _ in s0)
    want = torch.zeros(seq.length, seq.length, dtype=torch.bool)
    want[:n0, :n0] = _reference_mask(s0)
    want[n0:, n0:] = _reference_mask(s1)
    assert torch.equal(seq.attention_mask(), want)
    rows, cols = seq.noised_index, seq.context_index
    assert torch.equal(seq.attention_mask(rows, cols), want[rows][:, cols])
    assert not seq.attention_mask(cols, rows).any()  # no context token reads a noise split


def test_positions_experts_and_indexes():
    cfg, seq = _two_samples()
    assert seq.positions[:20].tolist() == [0, 1, 2] + [3] * 8 + [4] + [5] * 6 + [6, 7]
    assert seq.positions[20:].tolist() == [0] * 4 + [1, 2] + [3] * 4
    assert seq.gen.sum() == 4 + 2 + 2 and torch.equal(
        seq.gen[seq.latent_index], torch.ones(8, dtype=torch.bool)
    )
    frames = seq.text_ids == cfg.vision_start_id
    assert frames.sum() == 4 and seq.vit_lengths == [6]
    assert seq.vit_pos.tolist() == [0, 1, 2, 16, 17, 18]  # row * 16 + col on the 16 x 16 table
    assert seq.latent_noised.tolist() == [True] * 4 + [False] * 2 + [True] * 2
    assert seq.latent_pos[:4].tolist() == [0, 1, 8, 9]


def test_patchify_round_trip_and_order():
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 4, 6)
    tokens = patchify(x, 2)  # [(2)(3), 2*2*2]: rows of patches, each (row, col, channel)
    assert tokens.shape == (6, 8)
    assert tokens[1].tolist() == [
        x[0, 0, 2],
        x[1, 0, 2],
        x[0, 0, 3],
        x[1, 0, 3],
        x[0, 1, 2],
        x[1, 1, 2],
        x[0, 1, 3],
        x[1, 1, 3],
    ]
    assert torch.equal(unpatchify(tokens, 2, 3, 2), x)


def test_builder_errors():
    cfg = preset("tiny")
    with pytest.raises(ValueError, match="ids: expected token ids"):
        SequenceBuilder(cfg).text([1, 999])
    with pytest.raises(ValueError, match="pixels: expected"):
        SequenceBuilder(cfg).image(torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="latent: expected"):
        SequenceBuilder(cfg).latent(torch.zeros(16, 3, 4))
    with pytest.raises(ValueError, match="grid: expected at most 8 x 8"):
        SequenceBuilder(cfg).latent(grid=(9, 1), noised=True)
    with pytest.raises(ValueError, match="nothing was added"):
        SequenceBuilder(cfg).build()
