import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cooper_lib.modalities import NormalsCodec, get_codec


def _unit_normals(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    v = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return v / v.norm(dim=-3, keepdim=True)


def _degrees(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.acos((a * b).sum(-3).clamp(-1, 1)))


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 24), w=st.integers(1, 24), seed=st.integers(0, 2**31))
def test_uint8_round_trip_within_0_4_degrees(h, w, seed):
    codec = NormalsCodec()
    normals = _unit_normals((2, 3, h, w), seed)
    out = codec.decode((codec.encode(normals) * 255).round().to(torch.uint8))
    assert out.valid.all()
    assert _degrees(out.value, normals).max() < 0.4  # bound: half a step per channel, asin(sqrt(3) / 255)


def test_float_round_trip_is_exact_to_float_precision():
    codec = NormalsCodec()
    normals = _unit_normals((3, 3, 16, 16), seed=0)
    out = codec.decode(codec.encode(normals))
    assert torch.allclose(out.value, normals, atol=1e-6)
    assert out.distance.max() < 1e-6


def test_invalid_normals_are_mid_grey_and_decode_invalid():
    codec = NormalsCodec()
    normals = _unit_normals((3, 2, 2), seed=1)
    normals[:, 0, 0] = 0.0
    normals[:, 0, 1] = math.nan
    mask = torch.tensor([[True, True], [True, False]])
    img = codec.encode(normals, mask=mask)
    assert torch.equal(img[:, 0, 0], torch.full((3,), 0.5)) and torch.equal(
        img[:, 1, 1], torch.full((3,), 0.5)
    )
    out = codec.decode((img * 255).round().to(torch.uint8))
    assert out.valid.tolist() == [[False, False], [True, False]]
    assert out.value[:, ~out.valid].isnan().all()


def test_numpy_normals_are_channel_last():
    codec = NormalsCodec()
    normals = np.zeros((4, 5, 3), dtype=np.float32)
    normals[..., 2] = 1.0
    img = codec.encode(normals)
    assert img.shape == (3, 4, 5)
    assert torch.equal(img[:, 0, 0], torch.tensor([0.5, 0.5, 1.0]))


def test_random_colours_decode_without_crashing():
    out = NormalsCodec().decode(torch.rand(2, 3, 9, 9))
    lengths = out.value.norm(dim=-3)
    assert torch.allclose(lengths[out.valid], torch.ones(1), atol=1e-5)
    assert lengths[~out.valid].isnan().all()


def test_bad_input_names_the_argument():
    codec = NormalsCodec()
    with pytest.raises(ValueError, match="x: normals must be unit length"):
        codec.encode(torch.full((3, 2, 2), 0.2))
    with pytest.raises(TypeError, match="x: expected float normals"):
        codec.encode(torch.ones(3, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"x: expected a tensor of shape \(\.\.\., 3, H, W\)"):
        codec.encode(torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="unit_tolerance"):
        NormalsCodec(unit_tolerance=0.0)


def test_config_round_trips():
    codec = NormalsCodec(unit_tolerance=0.05)
    assert get_codec("normals", **json.loads(json.dumps(codec.config))).unit_tolerance == 0.05
