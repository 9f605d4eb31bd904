import pytest
import torch

from cooper_lib.heads.maps import build_codec, image_to_map, target_images, token_weights
from cooper_lib.modalities import DepthCodec, NormalsCodec, SegmentationCodec


def test_codec_defaults_follow_the_config():
    assert isinstance(build_codec("depth", None, num_classes=6, depth_mode="metric"), DepthCodec)
    assert build_codec("depth", None, num_classes=6, depth_mode="relative").relative
    seg = build_codec("segmentation", None, num_classes=6, depth_mode="metric")
    assert isinstance(seg, SegmentationCodec) and seg.num_classes == 6
    assert (
        build_codec("segmentation", None, num_classes=150, depth_mode="metric").config["palette"] == "ade20k"
    )
    assert isinstance(build_codec("normals", None, num_classes=6, depth_mode="metric"), NormalsCodec)
    log = build_codec("depth", {"encoding": "log", "preset": "nyu"}, num_classes=6, depth_mode="metric")
    assert log.encoding == "log" and log.max_depth == 10.0
    with pytest.raises(TypeError, match="codec"):
        build_codec("depth", "log", num_classes=6, depth_mode="metric")


def test_invalid_depth_is_filled_with_the_mean_valid_colour_and_weighted_out():
    codec = DepthCodec(min_depth=1.0, max_depth=9.0)
    depth = torch.full((1, 8, 8), 5.0)
    depth[0, :4] = 3.0
    depth[0, 0, 0] = float("nan")
    depth[0, 0, 1] = -2.0
    depth[0, 0, 2] = 0.0
    depth[0, 0, 3] = 50.0  # outside the codec's range
    image, valid = target_images(codec, "depth", depth, (8, 8))
    assert valid[0, 0, :4].sum() == 0 and valid.sum() == 60
    mean = (28 * 0.25 + 32 * 0.5) / 60  # gray code (d - 1) / 8: 28 valid pixels at 3 m, 32 at 5 m
    torch.testing.assert_close(image[0, :, 0, :4], torch.full((3, 4), float(mean)))
    torch.testing.assert_close(codec.decode(image).value[0, 4:], depth[0, 4:])


def test_validity_is_averaged_when_resizing():
    codec = SegmentationCodec(num_classes=3, palette="auto")
    ids = torch.zeros(1, 8, 8, dtype=torch.long)
    ids[0, :, :2] = 255
    image, valid = target_images(codec, "segmentation", ids, (4, 4))
    assert image.shape == (1, 3, 4, 4)
    torch.testing.assert_close(valid[0, 0], torch.tensor([0.0, 1.0, 1.0, 1.0]))
    torch.testing.assert_close(token_weights(valid, (2, 2)), torch.tensor([[0.5, 1.0, 0.5, 1.0]]))
    with pytest.raises(ValueError, match="token grid"):
        token_weights(valid, (3, 3))


def test_segmentation_decodes_to_the_nearest_class_never_to_ignore():
    codec = SegmentationCodec(num_classes=4, palette="auto")
    ids = torch.randint(0, 4, (2, 6, 6))
    image = codec.encode(ids)
    assert torch.equal(image_to_map(codec, "segmentation", image, (6, 6)), ids)
    noisy = image + 0.05 * torch.randn_like(image)
    assert torch.equal(image_to_map(codec, "segmentation", noisy, (6, 6)), ids)
    black = torch.zeros(1, 3, 6, 6)  # the ignore colour
    assert int(image_to_map(codec, "segmentation", black, (6, 6)).max()) < 4
    assert image_to_map(codec, "segmentation", image, (12, 12)).shape == (2, 12, 12)


def test_depth_and_normals_decode_through_the_codec():
    depth_codec = DepthCodec(min_depth=1.0, max_depth=9.0)
    depth = torch.rand(2, 5, 5) * 8 + 1
    torch.testing.assert_close(image_to_map(depth_codec, "depth", depth_codec.encode(depth), (5, 5)), depth)
    magenta = torch.tensor([1.0, 0.0, 1.0])[None, :, None, None].expand(1, 3, 5, 5)
    assert bool(image_to_map(depth_codec, "depth", magenta, (5, 5)).isnan().all())
    normals = torch.nn.functional.normalize(torch.randn(2, 3, 5, 5), dim=1)
    out = image_to_map(NormalsCodec(), "normals", NormalsCodec().encode(normals), (5, 5))
    torch.testing.assert_close(out, normals)
