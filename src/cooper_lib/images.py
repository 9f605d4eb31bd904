"""Every image input of the library, turned into an RGB PIL image in one place.

`to_pil` is what `SpatialModel.perceive`, the reasoner, the training records and collators, the
benchmark loaders and the synthetic world call on an image they are given. It accepts:

- a PIL image (any mode, converted to RGB);
- a path to an image file (`os.PathLike`; a missing file is FileNotFoundError), or a string that
  is either a path (relative to `base_dir` when given) or a base64-encoded image, with or without
  a ``data:image/...;base64,`` prefix;
- encoded image bytes (PNG, JPEG, ...);
- a numpy array or a torch tensor holding one image: ``[H, W, C]`` or ``[C, H, W]`` with
  ``C`` 1 (grey) or 3 (RGB), after dropping leading axes of size 1. Tensors are read
  channel-first and arrays channel-last (the layout rule of `cooper_lib.modalities`); the other
  layout is used when only it fits.

The pixel rules (dtype and range), checked by `rgb_pixels` for every array and tensor:

- ``uint8``: 0..255, taken as it is.
- floating point (float16, bfloat16, float32, float64): the 0..1 scale. Every value must be finite
  and within ``[-PIXEL_TOLERANCE, 1 + PIXEL_TOLERANCE]`` (rounding slack); values are clipped to
  [0, 1] and rounded to 8 bits. A float image on the 0..255 scale is a ValueError naming the
  argument and the range found (divide it by 255, or pass it as ``uint8``) -- never clipped to white.
- any other dtype (``uint16``, ``int32``, ``int64``, ``bool``, ...) is a ValueError: 16-bit images
  have no single 8-bit reading, so convert them first (e.g. ``(x / 65535).astype(np.float32)``).

A string that is not valid base64 and names no existing file is FileNotFoundError when it looks
like a path (it ends with an image suffix such as ``.png``), else ValueError. A file that is not a
readable image is a ValueError naming the file and the decoder's reason.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = ["image_from_base64", "image_from_bytes", "open_image", "rgb_pixels", "to_pil"]

_MAX_PATH = 4096  # longer strings are never paths (they may be base64 images)
PIXEL_TOLERANCE = 1e-3
"""How far outside [0, 1] a float pixel may be (rounding slack) before it is an error."""
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def open_image(path: str | os.PathLike, name: str = "image") -> Image.Image:
    """The image file at `path` as an RGB PIL image; FileNotFoundError naming `name` when missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no image file at {path}")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as err:  # PIL's UnidentifiedImageError and truncated files
        raise ValueError(f"{name}: {path} is not a readable image ({err})") from err


def image_from_bytes(data: bytes, name: str = "image") -> Image.Image:
    """Decode encoded image bytes (PNG, JPEG, ...) into an RGB PIL image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except OSError as err:
        raise ValueError(f"{name}: the bytes are not an encoded image ({err})") from err


def image_from_base64(data: str, name: str = "image") -> Image.Image:
    """Decode a base64 string holding an encoded image (optionally ``data:image/...;base64,...``)."""
    payload = data.split("base64,", 1)[1] if "base64," in data[:100] else data
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"{name}: not valid base64 ({err}); starts with {data[:32]!r}") from err
    return image_from_bytes(raw, name)


def rgb_pixels(array: np.ndarray, name: str = "image", *, channels_first: bool = False) -> np.ndarray:
    """One image's pixels as ``[H, W, 3]`` uint8 (see the module rules for layouts and dtypes).

    Args:
        array: the pixels.
        name: the argument's name, for errors.
        channels_first: the layout tried first (torch tensors: True; numpy arrays: False).
    """
    shape = array.shape
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    first, last = array.ndim == 3 and array.shape[0] in (1, 3), array.ndim == 3 and array.shape[-1] in (1, 3)
    if not (first or last):
        raise ValueError(
            f"{name}: expected one image, an RGB array [H, W, C] or [C, H, W] with C = 1 or 3 "
            f"(leading axes of size 1 allowed), got shape {tuple(shape)}"
        )
    if first and (channels_first or not last):
        array = np.moveaxis(array, 0, -1)
    if array.dtype != np.uint8:
        array = (np.clip(_unit_floats(array, name), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array)


def _unit_floats(array: np.ndarray, name: str) -> np.ndarray:
    """`array` as float64 after checking the float rule (finite, within [0, 1] up to the tolerance)."""
    if not np.issubdtype(array.dtype, np.floating):
        low, high = (array.min(), array.max()) if array.size else (0, 0)
        raise ValueError(
            f"{name}: expected uint8 pixels (0..255) or floating-point pixels in [0, 1], got dtype "
            f"{array.dtype} with values in [{low}, {high}]; convert it first (e.g. x / 65535 for "
            "16-bit images, or x.astype(np.uint8) for 8-bit values held in a wider type)"
        )
    values = array.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        raise ValueError(f"{name}: expected finite pixels, got {int((~finite).sum())} NaN or infinite values")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low < -PIXEL_TOLERANCE or high > 1.0 + PIXEL_TOLERANCE:
        hint = "; it looks like the 0..255 scale: divide by 255 or pass uint8" if high > 1.5 else ""
        raise ValueError(
            f"{name}: expected floating-point pixels in [0, 1], got values in [{low:.4g}, {high:.4g}]{hint}"
        )
    return values


def to_pil(image: Any, name: str = "image", *, base_dir: str | os.PathLike | None = None) -> Image.Image:
    """`image` as an RGB PIL image (module rules).

    Args:
        image: a PIL image, a path, a base64 string, encoded bytes, a numpy array or a torch tensor.
        name: the argument's name, for errors (e.g. ``"images[2]"``).
        base_dir: the folder relative paths are read from (record files name images this way).
    """
    if image is None:
        raise ValueError(f"{name}: expected an image, got None")
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (bytes, bytearray)):
        return image_from_bytes(bytes(image), name)
    if isinstance(image, os.PathLike):
        return open_image(_resolve(Path(image), base_dir), name)
    if isinstance(image, str):
        path = _resolve(Path(image), base_dir) if len(image) < _MAX_PATH else None
        if path is not None and path.is_file():
            return open_image(path, name)
        try:
            return image_from_base64(image, name)
        except ValueError:
            if path is not None and image.lower().endswith(_IMAGE_SUFFIXES):
                raise FileNotFoundError(f"{name}: no image file at {path}") from None
            raise ValueError(
                f"{name}: {image[:80]!r} is neither an existing file nor a base64-encoded image"
            ) from None
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        array = (tensor.float() if tensor.is_floating_point() else tensor).numpy()
        return Image.fromarray(rgb_pixels(array, name, channels_first=True))
    if isinstance(image, np.ndarray):
        return Image.fromarray(rgb_pixels(image, name, channels_first=False))
    raise TypeError(
        f"{name}: expected a PIL image, a path, a base64 string, encoded bytes, a numpy array or a "
        f"torch tensor, got {type(image).__name__}"
    )


def _resolve(path: Path, base_dir: str | os.PathLike | None) -> Path:
    return path if base_dir is None or path.is_absolute() else Path(base_dir) / path
