import math

import torch

from cooper_lib.models.cooper.embeddings import TimestepEmbedder, grid_position_ids, sincos_2d


def test_sincos_table_is_dits_with_columns_first():
    dim, side = 16, 5
    table = sincos_2d(dim, side)
    assert table.shape == (25, 16)
    for row in range(side):
        for col in range(side):
            want = []
            for coord in (col, row):  # first half: column, second half: row
                angles = [coord / 10000 ** (k / (dim / 4)) for k in range(dim // 4)]
                want += [math.sin(a) for a in angles] + [math.cos(a) for a in angles]
            torch.testing.assert_close(table[row * side + col], torch.tensor(want))


def test_grid_ids_extrapolate_from_the_top_left_corner():
    assert grid_position_ids(2, 3, 70).tolist() == [0, 1, 2, 70, 71, 72]


def test_time_embedder_frequencies():
    emb = TimestepEmbedder(8)
    t = torch.tensor([0.0, 0.5])
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
    features = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], -1)
    torch.testing.assert_close(emb(t), emb.mlp(features))
