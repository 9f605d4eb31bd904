import numpy as np
import pytest
import torch
from PIL import Image

from cooper_lib.modalities import DepthCodec, SegmentationCodec, get_codec, make_grid, to_pil


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


def test_segmentation_grid_has_a_legend_of_the_classes_shown():
    ids = torch.tensor([[0, 3], [3, 7]]).repeat_interleave(8, 0).repeat_interleave(8, 1)
    names = [f"class{i}" for i in range(150)]
    grid = make_grid([(torch.rand(3, 16, 16), ids, ids)], "segmentation", cell_height=64, class_names=names)
    bare = make_grid([(torch.rand(3, 16, 16), ids, ids)], "segmentation", cell_height=64, legend=False)
    assert bare.width == 6 * 4 + 3 * 64 and grid.width > bare.width + 40
    legend = np.asarray(grid)[:, bare.width :]  # pasted after the last column
    codec = get_codec("segmentation")
    for k, class_id in enumerate([0, 3, 7]):  # one swatch per class shown, in id order
        colour = (codec.encode(torch.tensor([[class_id]]))[:, 0, 0] * 255).round().int().tolist()
        assert list(legend[22 + k * 18 + 6, 6]) == colour


def test_depth_grid_by_name_is_drawn_over_its_own_range():
    target = torch.linspace(2.0, 9.0, 32).expand(24, 32)
    grid = np.asarray(make_grid([(None, target, None)], "depth", cell_height=24, colorbar=False)).astype(
        float
    )
    default = np.asarray(
        make_grid([(None, target, None)], "depth", cell_height=24, colorbar=False, max_depth=80)
    )
    cells = (
        grid[22:46, 36:68],
        default[22:46, 36:68].astype(float),
    )
    spread = [c.mean(axis=(0, 2)).max() - c.mean(axis=(0, 2)).min() for c in cells]
    assert spread[0] > 3 * spread[1]  # 0-9 m uses the grey scale; 0-80 m leaves 2-9 m nearly black


def test_grid_errors_name_the_argument():
    with pytest.raises(ValueError, match="rows: expected at least one"):
        make_grid([], "depth")
    with pytest.raises(ValueError, match=r"rows\[0\]: expected 3 entries"):
        make_grid([(torch.rand(3, 4, 4), torch.ones(4, 4))], "depth")
