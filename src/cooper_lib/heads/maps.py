"""Maps <-> pseudo-images for the generative heads: the codec, training targets, and decoding.

The flow and discrete heads generate a modality's RGB pseudo-image (COOPER's representation) and
read the map back with the modality's codec. Training targets go the other way, with one rule
for invalid pixels (depth 0 / NaN / inf / negative or out of the codec's range, segmentation 255,
non-finite normals): they are painted with the mean colour of the map's valid pixels, so they
add no edge the generator would have to learn, and every token is weighted by the fraction of
its pixels that are valid, so tokens made only of invalid pixels do not count at all.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from cooper_lib.heads.base import map_kind
from cooper_lib.modalities import ModalityCodec, get_codec


def build_codec(
    modality: str, spec: dict[str, Any] | None, *, num_classes: int, depth_mode: str
) -> ModalityCodec:
    """The codec of `modality`'s kind, built with the keyword arguments `spec` (JSON) over defaults.

    Defaults: depth codecs are relative when `depth_mode == "relative"`; segmentation codecs have
    `num_classes` classes drawn with the ADE20K palette at 150 classes (COOPER's colour maps) and
    a generated far-apart palette otherwise.
    """
    if spec is not None and not isinstance(spec, dict):
        raise TypeError(
            f"head_options['codec']: expected a dict of codec arguments, got {type(spec).__name__}"
        )
    kind = map_kind(modality)
    defaults: dict[str, Any] = {}
    if kind == "depth" and depth_mode == "relative":
        defaults["relative"] = True
    if kind == "segmentation":
        defaults = {"num_classes": num_classes, "palette": "ade20k" if num_classes == 150 else "auto"}
    codec = get_codec(kind, **{**defaults, **(spec or {})})
    if kind == "segmentation" and codec.num_classes != num_classes:
        raise ValueError(
            f"head_options['codec']: the codec has {codec.num_classes} classes, the config {num_classes}"
        )
    return codec


def _clean(kind: str, target: torch.Tensor) -> torch.Tensor:
    """A target the codec accepts: missing depth as 0, normals at unit length (0 where invalid)."""
    if kind == "depth":
        target = target.float()
        return torch.where(torch.isfinite(target) & (target > 0), target, 0.0)
    if kind == "segmentation":
        return target.long()
    return F.normalize(torch.nan_to_num(target.float(), nan=0.0, posinf=0.0, neginf=0.0), dim=1)


def resize_image(image: torch.Tensor, size: tuple[int, int], kind: str) -> torch.Tensor:
    """Resize pseudo-images [n, 3, h, w]; nearest for segmentation, so palette colours stay exact."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    if kind == "segmentation":
        return F.interpolate(image, size=size, mode="nearest-exact")
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


def target_images(
    codec: ModalityCodec, kind: str, target: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-images [n, 3, *size] of target maps, and the fraction of valid pixels [n, *size].

    Validity is the codec's own: a pixel is valid when its encoding decodes as valid.
    """
    image = codec.encode(_clean(kind, target))
    valid = codec.decode(image).valid.float()
    count = valid.sum(dim=(-2, -1)).clamp_min(1.0)
    mean = (image * valid[:, None]).sum(dim=(-2, -1)) / count[:, None]
    image = torch.where(valid[:, None] > 0, image, mean[:, :, None, None])
    image = resize_image(image, size, kind)
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


def image_to_map(codec: ModalityCodec, kind: str, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Generated pseudo-images [n, 3, h, w] -> maps at `size`.

    Segmentation: the class of the nearest palette colour at every pixel (the ignore colour is
    not a candidate, so every pixel gets a class). Depth and normals: the codec's decoding, which
    is NaN where a pixel is nearer the codec's invalid colour than its code.
    """
    image = resize_image(image.float().clamp(0.0, 1.0), size, kind)
    if kind == "segmentation":
        pixels = image.movedim(1, -1)  # [n, h, w, 3]
        palette = codec.palette.to(pixels.device)
        return (
            torch.cdist(pixels.reshape(pixels.shape[0], -1, 3), palette[None])
            .argmin(-1)
            .reshape(pixels.shape[:-1])
        )
    return codec.decode(image).value
