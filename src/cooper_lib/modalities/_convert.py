"""Conversions at the edges: torch tensors, numpy arrays and PIL images in, torch tensors out.

Layout rule: torch tensors are channel-first ``(..., 3, H, W)``; numpy arrays and PIL images
follow their own convention, channel-last ``(..., H, W, 3)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from cooper_lib.modalities.base import ArrayLike

_WIDEN = {np.dtype(np.uint16): np.int32, np.dtype(np.uint32): np.int64}


def as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    """``x`` as a torch tensor (numpy and PIL data are copied; uint16/uint32 widen to int32/int64)."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, Image.Image):
        x = np.array(x)
    if isinstance(x, np.ndarray):
        if x.dtype in _WIDEN:
            x = x.astype(_WIDEN[x.dtype])
        return torch.from_numpy(np.array(x, copy=True))
    raise TypeError(f"{name} must be a torch.Tensor, numpy array or PIL image, got {type(x).__name__}")


def channels_first(x: ArrayLike, name: str, channels: int = 3) -> torch.Tensor:
    """``x`` as a tensor ``(..., channels, H, W)``; numpy/PIL input is read as channel-last."""
    if isinstance(x, Image.Image) and channels == 3:
        x = x.convert("RGB")
    tensor = as_tensor(x, name)
    if not isinstance(x, torch.Tensor):
        if tensor.ndim < 3 or tensor.shape[-1] != channels:
            raise ValueError(
                f"{name}: numpy arrays and PIL images are read channel-last, expected shape "
                f"(..., H, W, {channels}), got {tuple(tensor.shape)}"
            )
        tensor = tensor.movedim(-1, -3)
    elif tensor.ndim < 3 or tensor.shape[-3] != channels:
        raise ValueError(
            f"{name}: expected a tensor of shape (..., {channels}, H, W), got {tuple(tensor.shape)}"
        )
    return tensor


def image_pixels(img: ArrayLike, name: str = "img") -> torch.Tensor:
    """A pseudo-image as ``(..., 3, H, W)``, uint8 kept as uint8 and floats as float32."""
    tensor = channels_first(img, name)
    if tensor.dtype == torch.uint8:
        return tensor
    if tensor.is_floating_point():
        return tensor.float()
    raise TypeError(f"{name}: expected uint8 or floating point pixels, got dtype {tensor.dtype}")


def image_tensor(img: ArrayLike, name: str = "img") -> torch.Tensor:
    """A pseudo-image as float32 ``(..., 3, H, W)``: uint8 is scaled by 1/255, floats kept as is."""
    tensor = image_pixels(img, name)
    return tensor.float() / 255.0 if tensor.dtype == torch.uint8 else tensor


def map_tensor(x: ArrayLike, name: str = "x") -> torch.Tensor:
    """A single-channel map as a tensor ``(..., H, W)`` with at least two dimensions."""
    tensor = as_tensor(x, name)
    if tensor.ndim < 2:
        raise ValueError(f"{name}: expected a map of shape (H, W) or (B, H, W), got {tuple(tensor.shape)}")
    return tensor


def mask_tensor(mask: ArrayLike | None, shape: torch.Size, device: torch.device) -> torch.Tensor | None:
    """The optional validity ``mask`` as a bool tensor of exactly ``shape`` (the map's shape)."""
    if mask is None:
        return None
    tensor = as_tensor(mask, "mask")
    if tensor.dtype != torch.bool:
        raise TypeError(f"mask: expected a bool tensor (True = valid), got dtype {tensor.dtype}")
    if tensor.shape != shape:
        raise ValueError(f"mask: expected shape {tuple(shape)} (the map's), got {tuple(tensor.shape)}")
    return tensor.to(device)


def channel_norm(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the channel axis of ``(..., 3, H, W)``, as ``(..., H, W)``.

    Spelled out because ``torch.linalg.vector_norm`` over a strided middle axis is about 20x
    slower on CPU than this sum of squares.
    """
    return x.square().sum(-3).sqrt()


def parse_colour(colour: Sequence[float] | Sequence[int], name: str) -> torch.Tensor:
    """An RGB triple as float32 in [0, 1]: integers are read on the 0..255 scale, floats on 0..1."""
    values = list(colour)
    if len(values) != 3:
        raise ValueError(f"{name}: expected an RGB triple, got {colour!r}")
    if all(isinstance(v, int | np.integer) for v in values):
        if not all(0 <= v <= 255 for v in values):
            raise ValueError(f"{name}: integer colours are on the 0..255 scale, got {colour!r}")
        return torch.tensor(values, dtype=torch.float32) / 255.0
    if not all(0.0 <= float(v) <= 1.0 for v in values):
        raise ValueError(f"{name}: float colours are on the 0..1 scale, got {colour!r}")
    return torch.tensor([float(v) for v in values], dtype=torch.float32)
