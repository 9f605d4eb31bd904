import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cooper_lib.images import image_from_base64, image_from_bytes, open_image, rgb_pixels, to_pil


@pytest.fixture
def png(tmp_path):
    Image.new("RGB", (8, 6), (100, 100, 100)).save(tmp_path / "rgb.png")
    return tmp_path


def test_paths_base64_bytes_arrays_and_tensors_give_the_same_image(png):
    raw = (png / "rgb.png").read_bytes()
    text = base64.b64encode(raw).decode()
    for value in (
        "rgb.png",
        png / "rgb.png",
        text,
        "data:image/png;base64," + text,
        raw,
        np.full((6, 8, 3), 100, np.uint8),
        np.full((3, 6, 8), 100, np.uint8),  # channel-first array: the only layout that fits
        torch.full((3, 6, 8), 100 / 255),
        torch.full((1, 3, 6, 8), 100 / 255, dtype=torch.bfloat16).float(),  # a batch of one
        torch.full((6, 8, 3), 100, dtype=torch.uint8),  # channel-last tensor: the only layout that fits
        Image.new("L", (8, 6), 100),
    ):
        image = to_pil(value, base_dir=png)
        assert image.mode == "RGB" and image.size == (8, 6), type(value)
        assert image.getpixel((0, 0)) == (100, 100, 100), type(value)


def test_pixel_rules():
    floats = np.array([[[-0.0005, 0.5, 1.0005]]], dtype=np.float32)  # rounding slack clipped, rounded
    assert rgb_pixels(floats).tolist() == [[[0, 128, 255]]]
    grey = torch.tensor([[[0.0, 1.0]]])  # [1, 1, 2]: one grey channel, channel-first
    assert np.asarray(to_pil(grey)).tolist() == [[[0, 0, 0], [255, 255, 255]]]
    ambiguous = np.zeros((3, 5, 3), np.uint8)
    ambiguous[0] = 255  # numpy reads channel-last, so row 0 is white ...
    assert np.asarray(to_pil(ambiguous))[0].tolist() == [[255] * 3] * 5
    # ... and a tensor with the same values reads channel-first: channel 0 (red) is 255
    assert np.asarray(to_pil(torch.from_numpy(ambiguous)))[0, 0].tolist() == [255, 0, 0]


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="images\\[1\\]: expected an image, got None"):
        to_pil(None, "images[1]")
    with pytest.raises(ValueError, match="x: expected one image, an RGB array"):
        to_pil(torch.zeros(2, 3, 4, 4), "x")
    with pytest.raises(ValueError, match="RGB array"):
        to_pil(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="neither an existing file nor a base64"):
        to_pil("not an image")
    with pytest.raises(FileNotFoundError, match="no image file at missing.png"):
        to_pil("missing.png")
    with pytest.raises(FileNotFoundError, match="img: no image file"):
        to_pil(Path("/nonexistent/dir/x.png"), "img")
    with pytest.raises(TypeError, match="got list"):
        to_pil([1, 2, 3])
    with pytest.raises(ValueError, match="base64"):
        image_from_base64("not base64 !!")
    with pytest.raises(ValueError, match="not an encoded image"):
        image_from_bytes(b"plain text")
    with pytest.raises(FileNotFoundError):
        open_image("/nonexistent/x.png")


def test_encoded_images_decode_to_rgb():
    buffer = io.BytesIO()
    Image.new("RGBA", (2, 2), (1, 2, 3, 4)).save(buffer, format="PNG")
    assert image_from_bytes(buffer.getvalue()).getpixel((0, 0)) == (1, 2, 3)


def test_out_of_range_dtypes_and_non_finite_pixels_are_errors(tmp_path):
    pixels = np.full((4, 4, 3), 200.0, np.float32)  # a float image on the 0..255 scale
    with pytest.raises(
        ValueError,
        match=r"photo: expected floating-point pixels in \[0, 1\], got values in \[200, 200\].*255",
    ):
        to_pil(pixels, "photo")
    with pytest.raises(
        ValueError, match=r"x: expected floating-point pixels in \[0, 1\], got values in \[-0.5"
    ):
        to_pil(torch.full((3, 2, 2), -0.5), "x")
    with pytest.raises(
        ValueError, match="img: expected uint8 pixels .* got dtype uint16 with values in \\[0, 4000\\]"
    ):
        to_pil(np.array([[[0, 4000, 9]]], np.uint16), "img")
    with pytest.raises(ValueError, match="got dtype int64"):
        to_pil(torch.zeros(3, 2, 2, dtype=torch.int64))
    for bad in (float("nan"), float("inf")):
        array = np.zeros((2, 2, 3), np.float32)
        array[0, 0, 0] = bad
        with pytest.raises(ValueError, match="image: expected finite pixels, got 1 NaN or infinite"):
            to_pil(array)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match="broken.png is not a readable image"):
        to_pil(tmp_path / "broken.png")
