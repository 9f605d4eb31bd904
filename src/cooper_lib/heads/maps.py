"""Maps <-> pseudo-images for the generative heads: the codec, training targets, and decoding.

The flow and discrete heads generate a modality's RGB pseudo-image (COOPER's representation) and
read the map back with the modality's codec. Training targets go the other way, with one rule
for invalid pixels (the modality's: depth 0 / NaN / inf / negative or out of the codec's range,
segmentation 255, non-finite normals): they are painted with the mean colour of the map's valid pixels, so they
add no edge the generator would have to learn, and every token is weighted by the fraction of
its pixels that are valid, so tokens made only of invalid pixels do not count at all.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from cooper_lib.modalities import Modality, ModalityCodec, get_modality


def _modality(modality: Modality | str) -> Modality:
    return modality if isinstance(modality, Modality) else get_modality(modality)


def build_codec(
    modality: Modality | str, spec: dict[str, Any] | None, *, num_classes: int, depth_mode: str
) -> ModalityCodec:
    """The modality's codec, built with the keyword arguments `spec` (JSON) over its defaults
    (`Modality.codec_defaults`: relative depth codecs when `depth_mode == "relative"`;
    segmentation codecs with `num_classes` classes in the ADE20K palette at 150 classes)."""
    return _modality(modality).build_codec(spec, num_classes=num_classes, depth_mode=depth_mode)


def resize_image(image: torch.Tensor, size: tuple[int, int], modality: Modality | str) -> torch.Tensor:
    """Resize pseudo-images [n, 3, h, w] with the modality's mode (nearest for palettes, so colours stay exact)."""
    return _modality(modality).resize_image(image, size)


def target_images(
    codec: ModalityCodec, modality: Modality | str, target: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-images [n, 3, *size] of target maps, and the fraction of valid pixels [n, *size].

    Validity is the codec's own: a pixel is valid when its encoding decodes as valid.
    """
    modality = _modality(modality)
    image = codec.encode(modality.clean_target(target))
    valid = codec.decode(image).valid.float()
    count = valid.sum(dim=(-2, -1)).clamp_min(1.0)
    mean = (image * valid[:, None]).sum(dim=(-2, -1)) / count[:, None]
    image = torch.where(valid[:, None] > 0, image, mean[:, :, None, None])
    image = modality.resize_image(image, size)
    if tuple(valid.shape[-2:]) != tuple(size):
        valid = F.interpolate(valid[:, None], size=size, mode="area")[:, 0]
    return image, valid


def token_weights(valid: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Per-token valid fraction [n, rows * cols] of a validity map [n, h, w] cut into `grid` cells."""
    rows, cols = grid
    if valid.shape[-2] % rows or valid.shape[-1] % cols:
        raise ValueError(
            f"valid: a {tuple(valid.shape[-2:])} map does not split into a {rows} x {cols} token grid"
        )
    return F.adaptive_avg_pool2d(valid[:, None], (rows, cols)).flatten(1)


def image_to_map(
    codec: ModalityCodec, modality: Modality | str, image: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Generated pseudo-images [n, 3, h, w] -> maps at `size` (`Modality.image_to_map`: for
    segmentation the nearest palette class at every pixel; for depth and normals the codec's
    decoding, NaN where a pixel is nearer the codec's invalid colour than its code)."""
    modality = _modality(modality)
    return modality.image_to_map(codec, modality.resize_image(image.float().clamp(0.0, 1.0), size))
