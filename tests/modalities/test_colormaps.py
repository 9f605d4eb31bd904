import torch

from cooper_lib.modalities._nearest import nearest_colour
from cooper_lib.modalities.colormaps import SPECTRAL_ANCHORS, colormap_index, spectral_lut

# Entries of matplotlib's colormaps["Spectral"] table (N=256), read from matplotlib 3.x.
MATPLOTLIB_SPECTRAL = {
    1: (0.6280661284, 0.0133025759, 0.2608227605),
    26: (0.8376778162, 0.2467512495, 0.3088811995),
    77: (0.9922337562, 0.6861976163, 0.3836216840),
    128: (0.9980776624, 0.9992310650, 0.7460207612),
    200: (0.4424452134, 0.7773933103, 0.6464436755),
    254: (0.3618608228, 0.3185697809, 0.6394463668),
}


def test_table_matches_matplotlib_entries():
    lut = spectral_lut(256)
    assert lut.shape == (256, 3) and lut.dtype == torch.float32
    for index, colour in MATPLOTLIB_SPECTRAL.items():
        assert torch.allclose(lut[index], torch.tensor(colour), atol=1e-6), index


def test_table_ends_on_the_colorbrewer_anchors():
    lut = spectral_lut(11)
    anchors = torch.tensor([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in SPECTRAL_ANCHORS]) / 255
    assert torch.allclose(lut, anchors, atol=1e-7)


def test_index_follows_matplotlib_binning():
    t = torch.tensor([0.0, 1 / 256 - 1e-6, 1 / 256, 0.5, 0.999, 1.0])
    assert colormap_index(t, 256).tolist() == [0, 0, 1, 128, 255, 255]


def test_every_entry_survives_8bit_rounding():
    # Near the pale apex (entries ~120-135) the curve folds back, so entries a few bins apart are
    # only ~2/255 apart; rounding to 8 bits still leaves each entry nearest to itself.
    lut = spectral_lut(256)
    rounded = (lut * 255).round() / 255
    index, _ = nearest_colour(rounded.T[:, :, None], lut)
    assert torch.equal(index.flatten(), torch.arange(256))
