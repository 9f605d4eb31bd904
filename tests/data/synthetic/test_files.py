import numpy as np
import pytest
import torch
from PIL import Image

from cooper_lib.data.synthetic.files import (
    load_depth,
    load_ids,
    load_normals,
    load_rgb,
    save_depth,
    save_ids,
    save_normals,
    save_rgb,
)


def test_depth_is_16_bit_millimetres(tmp_path):
    depth = torch.tensor([[0.0, 1.2344], [12.0006, 65.535]])
    save_depth(tmp_path / "d.png", depth)
    with Image.open(tmp_path / "d.png") as image:
        assert image.mode.startswith("I;16")
        assert np.array(image).tolist() == [[0, 1234], [12001, 65535]]
    back = load_depth(tmp_path / "d.png")
    assert (back - depth).abs().max() <= 0.0005 + 1e-6


def test_rgb_ids_and_normals_round_trip(tmp_path):
    rgb = torch.rand(3, 5, 7)
    save_rgb(tmp_path / "rgb.png", rgb)
    assert (load_rgb(tmp_path / "rgb.png") - rgb).abs().max() <= 0.5 / 255 + 1e-6
    ids = torch.randint(0, 256, (5, 7))
    save_ids(tmp_path / "ids.png", ids)
    assert torch.equal(load_ids(tmp_path / "ids.png"), ids)
    normals = torch.nn.functional.normalize(torch.randn(3, 5, 7), dim=0)
    normals[:, 0, 0] = 0.0
    save_normals(tmp_path / "n.png", normals)
    back = load_normals(tmp_path / "n.png")
    assert back[:, 0, 0].abs().max() == 0
    assert (back[:, 1:] - normals[:, 1:]).abs().max() < 0.02


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="ids"):
        save_ids(tmp_path / "x.png", torch.tensor([[300]]))
    with pytest.raises(ValueError, match="image"):
        save_rgb(tmp_path / "x.png", torch.rand(4, 2, 2))
