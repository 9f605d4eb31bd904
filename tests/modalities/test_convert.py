import numpy as np
import pytest
import torch
from PIL import Image

from cooper_lib.modalities._convert import as_tensor, channels_first, image_tensor, parse_colour


def test_parse_colour_reads_ints_as_bytes_and_floats_as_fractions():
    assert parse_colour((255, 0, 51), "c").tolist() == pytest.approx([1.0, 0.0, 0.2])
    assert parse_colour((1.0, 0.5, 0.0), "c").tolist() == [1.0, 0.5, 0.0]
    with pytest.raises(ValueError, match="c: integer colours"):
        parse_colour((256, 0, 0), "c")
    with pytest.raises(ValueError, match="c: float colours"):
        parse_colour((1.5, 0.0, 0.0), "c")
    with pytest.raises(ValueError, match="c: expected an RGB triple"):
        parse_colour((1, 2), "c")


def test_numpy_and_pil_are_channel_last_and_uint16_widens():
    array = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert torch.equal(channels_first(array, "a"), torch.from_numpy(array).permute(2, 0, 1))
    assert channels_first(Image.fromarray(array).convert("L"), "a").shape == (3, 2, 3)
    assert as_tensor(np.array([65535], dtype=np.uint16), "a").tolist() == [65535]
    with pytest.raises(ValueError, match=r"a: numpy arrays and PIL images are read channel-last"):
        channels_first(np.zeros((3, 4, 5)), "a")


def test_image_tensor_scales_uint8_and_rejects_other_integers():
    assert image_tensor(torch.full((3, 1, 1), 255, dtype=torch.uint8)).tolist() == [[[1.0]], [[1.0]], [[1.0]]]
    with pytest.raises(TypeError, match="img: expected uint8 or floating point"):
        image_tensor(torch.zeros(3, 1, 1, dtype=torch.int16))
