"""Surface-normal codec: unit normals ``(..., 3, H, W)`` <-> RGB ``(n + 1) / 2``.

The map is linear and convention-agnostic: whichever camera axes the normals use come back
unchanged. Invalid normals (zero vectors, NaN, inf, or False in ``mask``) are drawn as mid-grey
(0.5, 0.5, 0.5), the image of the zero vector; decode reports a pixel invalid when its vector
``2 * rgb - 1`` is shorter than 0.5, i.e. nearer the zero vector than the unit sphere.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F

from cooper_lib.modalities._convert import channel_norm, channels_first, image_tensor, mask_tensor
from cooper_lib.modalities.base import ArrayLike, DecodedMap, ModalityCodec
from cooper_lib.modalities.modality import Display, Modality

__all__ = ["NormalsCodec", "NormalsModality"]


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


NORMALS_TAGS = ("<normal-estimation>", "</normal-estimation>")
NORMALS_INSTRUCTION = "Estimate the surface normals of the image and generate the normal map."


class NormalsModality(Modality):
    """Unit surface normals [n, 3, h, w]; non-finite vectors invalid. Dense head: three channels
    normalised to unit length, trained with 1 - cosine. Stage-1 targets: 8-bit RGB PNGs of
    ``(n + 1) / 2``. Metric: mean angular error in degrees."""

    default_name = "normals"
    default_codec = NormalsCodec
    default_tool = (*NORMALS_TAGS, NORMALS_INSTRUCTION)
    default_display = Display("rgb", (-1.0, 1.0), "unit vector")
    kind = "vectors"
    channels = 3
    metric_names = ("normals/angle",)

    def validate_target(self, target: torch.Tensor, *, where: str, num_classes: int) -> torch.Tensor:
        """Float normals [n, 3, h, w]."""
        if not isinstance(target, torch.Tensor):
            raise TypeError(f"{where}: expected a torch.Tensor, got {type(target).__name__}")
        if target.ndim != 4 or target.shape[1] != 3:
            raise ValueError(f"{where}: expected normals of shape [n, 3, h, w], got {tuple(target.shape)}")
        if not target.is_floating_point():
            raise TypeError(f"{where}: expected a floating-point tensor, got dtype {target.dtype}")
        return target

    def valid_mask(self, target: torch.Tensor) -> torch.Tensor:
        return torch.isfinite(target).all(dim=-3)

    def clean_target(self, target: torch.Tensor) -> torch.Tensor:
        """Unit length, 0 where invalid (which the codec draws as invalid)."""
        return F.normalize(torch.nan_to_num(target.float(), nan=0.0, posinf=0.0, neginf=0.0), dim=-3)

    def load_target(self, path: str | os.PathLike, **options: Any) -> torch.Tensor:
        """Normals [3, H, W] (NaN where invalid) from an 8-bit PNG of ``(n + 1) / 2``."""
        return super().load_target(path, **options).float()

    def dense_map(self, raw: torch.Tensor) -> torch.Tensor:
        return F.normalize(raw.float(), dim=1)

    def dense_loss(self, raw: torch.Tensor, target: torch.Tensor, **settings: Any) -> torch.Tensor:
        """1 - cosine over valid pixels."""
        valid = self.valid_mask(target)
        cosine = (self.dense_map(raw) * self.clean_target(target)).sum(dim=1)
        return (1 - cosine)[valid].mean() if bool(valid.any()) else raw.sum() * 0.0

    def map_metrics(self, pred: torch.Tensor, target: torch.Tensor, *, num_classes: int) -> dict[str, float]:
        """Mean angle (degrees) between predicted and true normals over valid pixels."""
        valid = self.valid_mask(target) & self.valid_mask(pred)
        if not bool(valid.any()):
            return {}
        cosine = (F.normalize(pred.float(), dim=1) * self.clean_target(target)).sum(dim=1).clamp(-1.0, 1.0)
        return {self.metric_names[0]: float(torch.rad2deg(torch.acos(cosine[valid])).mean())}
