import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cooper_lib.modalities import (
    DEPTH_PRESETS,
    DepthCodec,
    depth_from_png,
    depth_to_png,
    get_codec,
    get_modality,
)

F32 = torch.finfo(torch.float32).eps
PRESETS = sorted(DEPTH_PRESETS)


def _depths(codec: DepthCodec, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random depths inside the codec's range, uniform in t (so log codecs see every decade)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(shape, generator=g, dtype=torch.float64)
    return codec.from_unit(t).clamp(codec.min_depth, codec.max_depth).float()


def _uint8(img: torch.Tensor) -> torch.Tensor:
    return (img * 255).round().to(torch.uint8)


def test_presets_are_coopers():
    assert DEPTH_PRESETS["nyu"].min_depth == 1e-3 and DEPTH_PRESETS["nyu"].max_depth == 10
    assert DEPTH_PRESETS["hypersim"].min_depth == 1e-5 and DEPTH_PRESETS["hypersim"].max_depth == 65
    assert DEPTH_PRESETS["vkitti"].max_depth == DEPTH_PRESETS["kitti"].max_depth == 80
    scales = {name: preset.png_scale for name, preset in DEPTH_PRESETS.items()}
    assert scales == {"nyu": 1000, "hypersim": 1000, "vkitti": 100, "kitti": 256}


@settings(max_examples=25, deadline=None)
@given(
    preset=st.sampled_from(PRESETS), h=st.integers(1, 24), w=st.integers(1, 24), seed=st.integers(0, 2**31)
)
def test_gray_float_round_trip_is_exact_to_float_precision(preset, h, w, seed):
    codec = DepthCodec("gray", preset=preset)
    depth = _depths(codec, (2, h, w), seed)
    out = codec.decode(codec.encode(depth))
    assert out.valid.all()
    assert (out.value - depth).abs().max() <= 4 * F32 * codec.max_depth
    assert out.distance.max() <= 1e-6


@settings(max_examples=25, deadline=None)
@given(
    preset=st.sampled_from(PRESETS), h=st.integers(1, 24), w=st.integers(1, 24), seed=st.integers(0, 2**31)
)
def test_gray_uint8_round_trip_within_half_an_8bit_step(preset, h, w, seed):
    codec = DepthCodec("gray", preset=preset)
    depth = _depths(codec, (h, w), seed)
    out = codec.decode(_uint8(codec.encode(depth)))
    step = (codec.max_depth - codec.min_depth) / 255
    assert out.valid.all()
    assert (out.value - depth).abs().max() <= 0.5 * step + 4 * F32 * codec.max_depth


@settings(max_examples=20, deadline=None)
@given(preset=st.sampled_from(PRESETS), seed=st.integers(0, 2**31))
def test_log_uint8_round_trip_within_half_a_relative_step(preset, seed):
    codec = DepthCodec("log", preset=preset)
    depth = _depths(codec, (17, 19), seed)
    out = codec.decode(_uint8(codec.encode(depth)))
    half_step = math.log(codec.max_depth / codec.min_depth) / 255 / 2
    assert out.valid.all()
    assert (out.value / depth).log().abs().max() <= half_step + 1e-5


@settings(max_examples=20, deadline=None)
@given(preset=st.sampled_from(PRESETS), seed=st.integers(0, 2**31))
def test_log_float_round_trip_is_exact_to_float_precision(preset, seed):
    codec = DepthCodec("log", preset=preset)
    depth = _depths(codec, (2, 17, 19), seed)
    out = codec.decode(codec.encode(depth))
    # float32 carries the unit value to ~eps; the inverse log map multiplies that by log(max/min)
    tolerance = 8 * F32 * math.log(codec.max_depth / codec.min_depth)
    assert out.valid.all()
    assert (out.value / depth).log().abs().max() <= tolerance


@settings(max_examples=20, deadline=None)
@given(preset=st.sampled_from(PRESETS), quantise=st.booleans(), seed=st.integers(0, 2**31))
def test_spectral_round_trip_within_one_percent_of_the_range(preset, quantise, seed):
    codec = DepthCodec("spectral", preset=preset)
    depth = _depths(codec, (2, 23, 29), seed)
    img = codec.encode(depth)
    out = codec.decode(_uint8(img) if quantise else img)
    span = codec.max_depth - codec.min_depth
    error = ((out.value - depth).abs() / span).max()
    assert out.valid.all()
    assert error <= 0.5 / 256 + 1e-6  # half a bin: 8-bit rounding never moves a table colour
    assert error < 0.01


def test_gray_is_coopers_encoding():
    codec = DepthCodec("gray", preset="nyu")
    depth = torch.tensor([[0.001, 5.0005, 10.0]])
    img = codec.encode(depth)
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])  # three equal channels
    assert torch.allclose(img[0], torch.tensor([[0.0, 0.5, 1.0]]), atol=1e-6)  # near is dark


def test_spectral_draws_matplotlib_table_entries():
    codec = DepthCodec("spectral", min_depth=1.0, max_depth=257.0)
    depth = torch.tensor([[1.0, 1.0 + 128.5, 257.0]])  # t = 0, just above 0.5, 1
    img = codec.encode(depth).movedim(0, -1)[0]
    lut = codec._lut
    assert torch.equal(img, torch.stack([lut[0], lut[128], lut[255]]))


@pytest.mark.parametrize("encoding", ["gray", "log", "spectral"])
@pytest.mark.parametrize("quantise", [False, True])
def test_invalid_pixels_are_carried_never_turned_into_depth(encoding, quantise):
    codec = DepthCodec(encoding, preset="nyu")
    depth = torch.tensor([[0.0, math.nan, math.inf, 10.5, 0.0005, 2.0]])
    img = codec.encode(depth)
    magenta = torch.tensor([1.0, 0.0, 1.0])
    assert torch.equal(img[:, 0, :5].T, magenta.expand(5, 3))
    out = codec.decode(_uint8(img) if quantise else img)
    assert out.valid.tolist() == [[False] * 5 + [True]]
    assert out.value[0, :5].isnan().all()
    assert abs(float(out.value[0, 5]) - 2.0) < 0.1


def test_mask_marks_extra_invalid_pixels():
    codec = DepthCodec(preset="nyu")
    depth = torch.full((2, 4, 4), 3.0)
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    mask[1, 2, 3] = False
    out = codec.decode(codec.encode(depth, mask=mask))
    assert torch.equal(out.valid, mask)


def test_clamp_reproduces_coopers_range_handling():
    codec = DepthCodec(preset="nyu", out_of_range="clamp")
    out = codec.decode(codec.encode(torch.tensor([[12.0, 0.0001, 0.0]])))
    assert out.valid.tolist() == [[True, True, False]]
    assert torch.allclose(out.value[0, :2], torch.tensor([10.0, 0.001]), atol=1e-5)


@pytest.mark.parametrize("encoding", ["gray", "log"])
def test_relative_depth_is_normalised_per_map(encoding):
    codec = DepthCodec(encoding, relative=True)
    depth = torch.stack([torch.linspace(1, 3, 16).reshape(4, 4), torch.linspace(20, 80, 16).reshape(4, 4)])
    depth[1, 0, 0] = 0.0  # invalid pixels do not take part in the normalisation
    out = codec.decode(codec.encode(depth))
    forward = depth.log() if encoding == "log" else depth
    for i in range(2):
        valid = out.valid[i]
        lo, hi = forward[i][valid].min(), forward[i][valid].max()
        assert torch.allclose(out.value[i][valid], (forward[i][valid] - lo) / (hi - lo), atol=1e-6)
    assert codec.units == "relative" and codec.value_range == (0.0, 1.0)


def test_shapes_and_dtypes():
    codec = DepthCodec(preset="hypersim")
    assert codec.encode(torch.ones(5, 7)).shape == (3, 5, 7)
    assert codec.encode(torch.ones(2, 5, 7, dtype=torch.float64)).dtype == torch.float32
    assert codec.encode(torch.ones(2, 4, 5, 7)).shape == (2, 4, 3, 5, 7)
    out = codec.decode(torch.rand(2, 3, 5, 7))
    assert out.value.shape == out.valid.shape == out.distance.shape == (2, 5, 7)


def test_numpy_and_pil_at_the_edges():
    codec = DepthCodec(preset="nyu")
    depth = np.full((6, 8), 4.0, dtype=np.float32)
    img = codec.encode(depth)
    channel_last = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    for picture in (channel_last, Image.fromarray(channel_last)):
        out = codec.decode(picture)
        assert out.value.shape == (6, 8)
        assert torch.allclose(out.value, torch.full((6, 8), 4.0), atol=0.5 * 10 / 255)


def test_decoding_random_colours_never_crashes():
    codec = DepthCodec("spectral", preset="kitti")
    out = codec.decode(torch.rand(2, 3, 16, 16))
    assert out.value[out.valid].isfinite().all()
    assert out.value[~out.valid].isnan().all()
    assert (out.distance >= 0).all()


def test_bad_input_names_the_argument():
    codec = DepthCodec(preset="nyu")
    with pytest.raises(ValueError, match="x: depth must be non-negative"):
        codec.encode(torch.tensor([[1.0, -0.5]]))
    with pytest.raises(TypeError, match="x: expected float depth"):
        codec.encode(torch.ones(3, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="x: expected a map"):
        codec.encode(torch.ones(3))
    with pytest.raises(ValueError, match=r"mask: expected shape \(2, 3, 3\)"):
        codec.encode(torch.ones(2, 3, 3), mask=torch.ones(3, 3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask: expected a bool"):
        codec.encode(torch.ones(3, 3), mask=torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"img: expected a tensor of shape \(\.\.\., 3, H, W\)"):
        codec.decode(torch.rand(2, 4, 5, 5))
    with pytest.raises(TypeError, match="img: expected uint8 or floating"):
        codec.decode(torch.zeros(3, 5, 5, dtype=torch.int64))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        codec.encode([[1.0]])


def test_bad_construction_names_the_argument():
    with pytest.raises(ValueError, match="encoding"):
        DepthCodec("jet")
    with pytest.raises(ValueError, match="preset"):
        DepthCodec(preset="scannet")
    with pytest.raises(ValueError, match="min_depth/max_depth"):
        DepthCodec(min_depth=5.0, max_depth=1.0)
    with pytest.raises(ValueError, match="min_depth/max_depth"):
        DepthCodec(relative=True, max_depth=3.0)
    with pytest.raises(ValueError, match="invalid_color"):
        DepthCodec("gray", invalid_color=(0, 0, 0))  # on the gray axis: indistinguishable
    with pytest.raises(ValueError, match="out_of_range"):
        DepthCodec(out_of_range="wrap")


def test_config_round_trips_through_json_and_the_registry():
    codec = DepthCodec("log", preset="vkitti", invalid_color=(0, 255, 0))
    rebuilt = get_codec("depth", **json.loads(json.dumps(codec.config)))
    depth = _depths(codec, (9, 9), seed=3)
    depth[0, 0] = 0.0
    assert torch.equal(rebuilt.encode(depth), codec.encode(depth))


def test_png_helpers(tmp_path):
    raw = np.array([[0, 256, 2560], [65535, 1, 512]], dtype=np.uint16)
    metres = depth_from_png(raw, preset="kitti")
    assert metres.dtype == torch.float32
    assert torch.equal(metres, torch.tensor(raw.astype(np.float32) / 256))
    assert np.array_equal(depth_to_png(metres, preset="kitti"), raw)
    path = tmp_path / "depth.png"
    Image.fromarray(raw).save(path)
    assert torch.equal(depth_from_png(path, scale=256.0), metres)
    assert torch.equal(DepthCodec(preset="kitti").from_png(path), metres)
    out = DepthCodec(preset="kitti").decode(DepthCodec(preset="kitti").encode(metres))
    assert not out.valid[0, 0]  # PNG 0 means no depth


def test_png_helpers_reject_bad_input():
    with pytest.raises(ValueError, match="exactly one of preset= or scale="):
        depth_from_png(np.zeros((2, 2), np.uint16), preset="nyu", scale=1000.0)
    with pytest.raises(TypeError, match="png: expected integer"):
        depth_from_png(np.zeros((2, 2), np.float32), preset="nyu")
    with pytest.raises(ValueError, match="png_scale"):
        DepthCodec().from_png(np.zeros((2, 2), np.uint16))
    with pytest.raises(ValueError, match="exceeds 16 bits"):
        depth_to_png(torch.tensor([[70.0]]), preset="nyu")
    with pytest.raises(ValueError, match="non-negative"):
        depth_to_png(torch.tensor([[-1.0]]), preset="nyu")


def test_display_codec_spreads_a_given_range_and_refuses_one_for_relative_depth():
    modality = get_modality("depth")
    codec = modality.display_codec(num_classes=1, depth_mode="metric", value_range=(0.5, 6.0))
    assert (codec.min_depth, codec.max_depth, codec.encoding) == (0.5, 6.0, "spectral")
    with pytest.raises(ValueError, match=r"value_range: expected \(near, far\)"):
        modality.display_codec(num_classes=1, depth_mode="metric", value_range=(6.0, 0.5))
    with pytest.raises(ValueError, match="value_range: relative depth"):
        modality.display_codec(num_classes=1, depth_mode="relative", value_range=(0.5, 6.0))
