"""The "Spectral" colormap COOPER uses to show depth, rebuilt without matplotlib.

matplotlib's "Spectral" is ColorBrewer's 11-class Spectral scheme, spaced evenly on [0, 1] and
interpolated linearly into a 256-entry table: entry ``i`` is the interpolation at ``i / 255``,
and a value ``t`` is drawn with entry ``min(floor(t * 256), 255)``. Rebuilding that table from
the eleven public anchor colours keeps matplotlib out of the dependencies; the tests check it
against reference entries taken from matplotlib.
"""

from __future__ import annotations

import torch

__all__ = ["SPECTRAL_ANCHORS", "colormap_index", "spectral_lut"]

SPECTRAL_ANCHORS: tuple[str, ...] = (
    "9e0142", "d53e4f", "f46d43", "fdae61", "fee08b", "ffffbf",
    "e6f598", "abdda4", "66c2a5", "3288bd", "5e4fa2",
)  # fmt: skip


def spectral_lut(levels: int = 256) -> torch.Tensor:
    """The Spectral table as float32 ``(levels, 3)`` in [0, 1]; ``levels=256`` is matplotlib's."""
    if levels < 2:
        raise ValueError(f"levels: expected at least 2 table entries, got {levels}")
    anchors = (
        torch.tensor(
            [[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in SPECTRAL_ANCHORS], dtype=torch.float64
        )
        / 255.0
    )
    position = torch.linspace(0.0, 1.0, levels, dtype=torch.float64) * (len(SPECTRAL_ANCHORS) - 1)
    left = position.floor().long().clamp(max=len(SPECTRAL_ANCHORS) - 2)
    frac = (position - left).unsqueeze(-1)
    return ((1 - frac) * anchors[left] + frac * anchors[left + 1]).float()


def colormap_index(t: torch.Tensor, levels: int) -> torch.Tensor:
    """Table entry matplotlib draws for values ``t`` in [0, 1]: ``min(floor(t * levels), levels - 1)``."""
    return (t * levels).floor().long().clamp(0, levels - 1)
