"""The codec protocol every auxiliary modality follows, and the result type of decoding.

A codec turns an auxiliary map (depth in metres, class ids, surface normals, ...) into an RGB
pseudo-image in [0, 1] that an ordinary image pipeline can generate or read, and turns such an
image back into a map. Decoding never fails on a well-shaped image: pixels that are not a valid
encoding come back flagged in ``DecodedMap.valid`` with their distance to the nearest code colour.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = ["ArrayLike", "DecodedMap", "ModalityCodec"]

ArrayLike = torch.Tensor | np.ndarray | Image.Image


@dataclass
class DecodedMap:
    """A map read back from a pseudo-image.

    Attributes:
        value: the map: depth as float (metres, or relative units), class ids as long, unit
            normals as float ``(..., 3, H, W)``. Invalid pixels hold NaN (float maps) or the
            codec's ignore index (id maps).
        valid: bool ``(..., H, W)``, True where the pixel decoded to a value.
        distance: float ``(..., H, W)``, Euclidean RGB distance (channels in [0, 1]) from the pixel
            to the nearest code colour; 0 on an exact encoding, larger as the image drifts from the
            code. None when a codec has no such measure.
    """

    value: torch.Tensor
    valid: torch.Tensor
    distance: torch.Tensor | None = None


class ModalityCodec(ABC):
    """Base class of the codecs between an auxiliary map and an RGB pseudo-image.

    Subclasses set ``name`` (the registry key), ``units`` and ``value_range`` (None when unbounded)
    and implement ``encode``, ``decode`` and ``config``.
    """

    name: str
    units: str
    value_range: tuple[float, float] | None

    @abstractmethod
    def encode(self, x: ArrayLike, mask: ArrayLike | None = None) -> torch.Tensor:
        """Map ``x`` to a float32 pseudo-image ``(..., 3, H, W)`` in [0, 1].

        ``mask`` (bool, the map's spatial shape) marks pixels to treat as invalid where False.
        """

    @abstractmethod
    def decode(self, img: ArrayLike) -> DecodedMap:
        """Read a pseudo-image ``(..., 3, H, W)`` (float in [0, 1] or uint8) back into a map."""

    @property
    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable keyword arguments that rebuild this codec with ``get_codec(name, **config)``."""

    def __repr__(self) -> str:
        # Long lists (a palette) are left out to keep the repr readable.
        args = ", ".join(
            f"{k}={v!r}" for k, v in self.config.items() if not (isinstance(v, list) and len(v) > 4)
        )
        return f"{type(self).__name__}({args})"
