"""Surface-normal codec: unit normals ``(..., 3, H, W)`` <-> RGB ``(n + 1) / 2``.

The map is linear and convention-agnostic: whichever camera axes the normals use come back
unchanged. Invalid normals (zero vectors, NaN, inf, or False in ``mask``) are drawn as mid-grey
(0.5, 0.5, 0.5), the image of the zero vector; decode reports a pixel invalid when its vector
``2 * rgb - 1`` is shorter than 0.5, i.e. nearer the zero vector than the unit sphere.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from cooper_lib.modalities._convert import channel_norm, channels_first, image_tensor, mask_tensor
from cooper_lib.modalities.base import ArrayLike, DecodedMap, ModalityCodec

__all__ = ["NormalsCodec"]


class NormalsCodec(ModalityCodec):
    """Unit surface normals <-> RGB pseudo-images.

    Args:
        unit_tolerance: how far a valid normal's length may be from 1 before ``encode`` refuses it.

    Round trip: exact to float precision when kept float; within 0.4 degrees after uint8
    quantisation (each channel is off by at most half a step of 2/255).
    """

    name = "normals"
    units = "unit vector"
    value_range = (-1.0, 1.0)

    def __init__(self, unit_tolerance: float = 1e-2) -> None:
        if not 0 < unit_tolerance < 0.5:
            raise ValueError(f"unit_tolerance: expected a value in (0, 0.5), got {unit_tolerance}")
        self.unit_tolerance = unit_tolerance

    @property
    def config(self) -> dict[str, Any]:
        return {"unit_tolerance": self.unit_tolerance}

    def encode(self, x: ArrayLike, mask: ArrayLike | None = None) -> torch.Tensor:
        """Normals ``(..., 3, H, W)`` (numpy: ``(..., H, W, 3)``) -> float32 RGB ``(..., 3, H, W)``.

        Raises:
            TypeError: ``x`` is not floating point.
            ValueError: a finite non-zero normal is not unit length, or ``mask`` has the wrong shape.
        """
        normals = channels_first(x, "x")
        if not normals.is_floating_point():
            raise TypeError(f"x: expected float normals, got dtype {normals.dtype}")
        length = channel_norm(normals)
        valid = torch.isfinite(normals).all(-3) & (length > 0)
        off = valid & ((length - 1).abs() > self.unit_tolerance)
        if off.any():
            raise ValueError(
                f"x: normals must be unit length (within {self.unit_tolerance}); found length {float(length[off][0]):.4f}"
            )
        keep = mask_tensor(mask, valid.shape, normals.device)
        if keep is not None:
            valid &= keep
        rgb = (normals.float() + 1.0) * 0.5
        return torch.where(valid.unsqueeze(-3), rgb, 0.5).clamp(0.0, 1.0).contiguous()

    def decode(self, img: ArrayLike) -> DecodedMap:
        """RGB ``(..., 3, H, W)`` -> unit normals (NaN where invalid), validity, distance to the code."""
        vectors = image_tensor(img, "img") * 2.0 - 1.0
        length = channel_norm(vectors)
        valid = length >= 0.5
        value = torch.where(valid.unsqueeze(-3), vectors / length.clamp_min(1e-12).unsqueeze(-3), math.nan)
        return DecodedMap(value=value, valid=valid, distance=(length - 1.0).abs() * 0.5)
