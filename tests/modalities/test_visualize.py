import numpy as np
import pytest
import torch
from PIL import Image

from cooper_lib.modalities import DepthCodec, SegmentationCodec, make_grid, to_pil


def test_to_pil_of_an_image_and_of_a_map():
    img = to_pil(torch.zeros(1, 3, 5, 7))
    assert img.size == (7, 5) and img.mode == "RGB"
    depth = to_pil(torch.full((5, 7), 10.0), "depth", preset="nyu")
    assert np.asarray(depth)[0, 0].tolist() == [255, 255, 255]  # far end of the range is white
    ids = torch.tensor([[0, 1]])
    assert np.asarray(to_pil(ids, SegmentationCodec()))[0].tolist() == [[120, 120, 120], [180, 120, 120]]


def test_to_pil_rejects_batches_and_stray_arguments():
    with pytest.raises(ValueError, match="x: expected one image"):
        to_pil(torch.zeros(2, 3, 4, 4))
    with pytest.raises(TypeError, match="need a modality"):
        to_pil(torch.zeros(3, 4, 4), preset="nyu")
    with pytest.raises(TypeError, match="need modality given by name"):
        to_pil(torch.ones(4, 4), DepthCodec(), preset="nyu")


def test_depth_grid_has_a_colour_bar_and_exact_cells():
    codec = DepthCodec("spectral", preset="nyu")
    rgb = torch.rand(3, 32, 48)
    target = torch.full((32, 48), 2.0)
    rows = [(rgb, target, target * 1.5), (rgb, target, None)]
    with_bar = make_grid(rows, codec, cell_height=64)
    without_bar = make_grid(rows, codec, cell_height=64, colorbar=False)
    assert isinstance(with_bar, Image.Image)
    assert with_bar.width > without_bar.width and with_bar.height == without_bar.height
    colour = (codec.encode(target)[:, 0, 0] * 255).round().int().tolist()
    x0 = 6 + 96 + 6  # second column: gap + first cell width + gap
    assert list(np.asarray(without_bar)[22 + 10, x0 + 10]) == colour


def test_segmentation_grid_has_no_colour_bar():
    ids = torch.randint(0, 150, (16, 16))
    grid = make_grid([(torch.rand(3, 16, 16), ids, ids)], "segmentation", cell_height=32)
    assert grid.width == 6 * 4 + 3 * 32


def test_grid_errors_name_the_argument():
    with pytest.raises(ValueError, match="rows: expected at least one"):
        make_grid([], "depth")
    with pytest.raises(ValueError, match=r"rows\[0\]: expected 3 entries"):
        make_grid([(torch.rand(3, 4, 4), torch.ones(4, 4))], "depth")
