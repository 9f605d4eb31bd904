import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cooper_lib.modalities import SegmentationCodec, ade20k_palette, get_codec, make_palette


def _uint8(img: torch.Tensor) -> torch.Tensor:
    return (img * 255).round().to(torch.uint8)


def _min_pairwise(palette: torch.Tensor) -> float:
    dist = torch.cdist(palette.float(), palette.float())
    return float(dist[~torch.eye(len(palette), dtype=torch.bool)].min())


@settings(max_examples=30, deadline=None)
@given(
    num_classes=st.integers(1, 300), h=st.integers(1, 20), w=st.integers(1, 20), seed=st.integers(0, 2**31)
)
def test_generated_palette_round_trip_is_the_identity(num_classes, h, w, seed):
    codec = SegmentationCodec(num_classes=num_classes, palette="auto", ignore_index=-1)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, num_classes, (2, h, w), generator=g)
    ids[torch.rand(ids.shape, generator=g) < 0.1] = -1
    for img in (codec.encode(ids), _uint8(codec.encode(ids))):
        out = codec.decode(img)
        assert torch.equal(out.value, ids)
        assert torch.equal(out.valid, ids != -1)
        assert out.distance.max() <= 1e-6


def test_ade20k_round_trip_is_the_identity_except_the_known_duplicate():
    codec = SegmentationCodec()
    assert codec.num_classes == 150 and codec.aliases == {48: 6}
    ids = torch.arange(150).reshape(10, 15)
    out = codec.decode(_uint8(codec.encode(ids)))
    expected = torch.where(ids == 48, 6, ids)
    assert torch.equal(out.value, expected)


def test_ade20k_palette_data():
    palette = ade20k_palette()
    assert palette.shape == (150, 3) and palette.dtype == torch.uint8
    assert palette[0].tolist() == [120, 120, 120] and palette[149].tolist() == [92, 0, 255]
    assert palette[6].tolist() == palette[48].tolist() == [140, 140, 140]
    assert len({tuple(c) for c in palette.tolist()}) == 149


def test_nearest_colour_absorbs_small_noise():
    codec = SegmentationCodec()
    ids = torch.randint(0, 150, (2, 32, 32))
    ids[ids == 48] = 6
    noisy = codec.encode(ids) + (torch.rand(2, 3, 32, 32) * 2 - 1) / 255  # under half the closest gap
    out = codec.decode(noisy)
    assert torch.equal(out.value, ids)
    assert (out.distance > 0).all()


def test_random_colours_decode_to_a_map_with_distances():
    codec = SegmentationCodec(num_classes=5, palette="auto")
    out = codec.decode(torch.rand(3, 3, 40, 40))
    assert out.value.dtype == torch.long
    assert set(out.value.unique().tolist()) <= {0, 1, 2, 3, 4, 255}
    assert torch.equal(out.valid, out.value != 255)
    assert (out.distance >= 0).all() and out.distance.max() <= 3**0.5

    strict = SegmentationCodec(num_classes=5, palette="auto", max_distance=0.05)
    out_strict = strict.decode(torch.rand(3, 3, 40, 40))
    assert not out_strict.valid.all()
    assert (out_strict.distance[out_strict.valid] <= 0.05).all()


def test_chunking_does_not_change_the_result():
    codec = SegmentationCodec()
    img = torch.rand(2, 3, 17, 13)
    chunked = SegmentationCodec(chunk_pixels=7).decode(img)
    whole = codec.decode(img)
    assert torch.equal(chunked.value, whole.value)
    assert torch.allclose(chunked.distance, whole.distance)


def test_mask_and_ignore_get_the_ignore_colour():
    codec = SegmentationCodec(num_classes=4, palette="auto", ignore_color=(10, 20, 30))
    ids = torch.tensor([[0, 1], [255, 3]])
    mask = torch.tensor([[True, False], [True, True]])
    img = codec.encode(ids, mask=mask)
    ignore = torch.tensor([10, 20, 30]) / 255
    assert torch.allclose(img[:, 0, 1], ignore) and torch.allclose(img[:, 1, 0], ignore)
    assert codec.decode(img).value.tolist() == [[0, 255], [255, 3]]


def test_custom_palette_and_inputs_at_the_edges():
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    codec = SegmentationCodec(palette=palette, ignore_index=-1)
    indexed = Image.fromarray(np.array([[0, 1], [2, 0]], dtype=np.uint8), mode="L")
    img = codec.encode(indexed)
    assert img[:, 1, 0].tolist() == [0.0, 0.0, 1.0]
    channel_last = _uint8(img).permute(1, 2, 0).numpy()
    assert codec.decode(channel_last).value.tolist() == [[0, 1], [2, 0]]
    float_palette = SegmentationCodec(palette=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert float_palette.num_classes == 2


def test_make_palette_is_deterministic_distinct_and_far_apart():
    palette = make_palette(150)
    assert torch.equal(palette, make_palette(150))
    assert len({tuple(c) for c in palette.tolist()}) == 150
    assert _min_pairwise(palette) > _min_pairwise(ade20k_palette()[torch.arange(150) != 48])
    assert palette.float().norm(dim=-1).min() >= _min_pairwise(palette)  # black (ignore) counts as taken
    assert torch.equal(make_palette(40), palette[:40])  # same grid: prefixes
    assert make_palette(2000).shape == (2000, 3)
    away_from_white = make_palette(3, exclude=[(255, 255, 255)])
    assert away_from_white[0].tolist() == [0, 0, 0]


def test_instance_codec_from_the_registry():
    codec = get_codec("instance")
    assert codec.name == "instance" and codec.units == "instance id" and codec.num_classes == 255
    ids = torch.randint(0, 255, (8, 8))
    assert torch.equal(codec.decode(codec.encode(ids)).value, ids)
    rebuilt = get_codec("instance", **json.loads(json.dumps(codec.config)))
    assert torch.equal(rebuilt.encode(ids), codec.encode(ids))


def test_config_round_trips_through_json():
    palette = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]])
    for codec in (SegmentationCodec(num_classes=20), SegmentationCodec(palette=palette, ignore_index=7)):
        rebuilt = get_codec("segmentation", **json.loads(json.dumps(codec.config)))
        ids = torch.randint(0, codec.num_classes, (5, 5))
        assert torch.equal(rebuilt.encode(ids), codec.encode(ids))


def test_bad_input_names_the_argument():
    codec = SegmentationCodec(num_classes=10, palette="auto")
    with pytest.raises(ValueError, match=r"x: ids must be in \[0, 9\] or ignore_index=255; found 10"):
        codec.encode(torch.tensor([[1, 10]]))
    with pytest.raises(ValueError, match="found -3"):
        codec.encode(torch.tensor([[-3]]))
    with pytest.raises(TypeError, match="x: expected an integer id map"):
        codec.encode(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="mask"):
        codec.encode(torch.zeros(2, 2, dtype=torch.long), mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="img"):
        codec.decode(torch.rand(1, 5, 5))


def test_bad_construction_names_the_argument():
    with pytest.raises(ValueError, match="num_classes: the ade20k palette has 150"):
        SegmentationCodec(num_classes=151)
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationCodec(palette="auto")
    with pytest.raises(ValueError, match="palette: colours must be distinct"):
        SegmentationCodec(palette=[[1, 2, 3], [1, 2, 3]])
    with pytest.raises(ValueError, match="ignore_color"):
        SegmentationCodec(palette=[[0, 0, 0], [1, 2, 3]])
    with pytest.raises(ValueError, match="ignore_index: 3 is a class id"):
        SegmentationCodec(num_classes=5, palette="auto", ignore_index=3)
    with pytest.raises(ValueError, match="palette: expected shape"):
        SegmentationCodec(palette=np.zeros((4, 4)))
    with pytest.raises(ValueError, match="num_colors"):
        make_palette(0)
