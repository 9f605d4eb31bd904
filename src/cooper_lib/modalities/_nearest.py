"""Nearest colour in a small table, for every pixel of a pseudo-image, without a loop over pixels.

Written by hand because it is a few lines of torch. The ranking comes from one matrix product per
chunk of pixels (|c|^2 - 2 x.c, the squared distance less |x|^2) and the distance to the winner
is then computed directly (no cancellation), so memory stays at ``chunk_pixels x K`` floats. For
uint8 images the search runs once per distinct colour (``torch.unique`` on packed 24-bit keys):
an exact encoding has only as many colours as the palette, so decoding it costs little more
than the ``unique`` itself.
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK_PIXELS = 1 << 14


def _search(
    pixels: torch.Tensor, table: torch.Tensor, chunk_pixels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    table_sq = (table * table).sum(-1)
    index = torch.empty(pixels.shape[0], dtype=torch.long, device=pixels.device)
    distance = torch.empty(pixels.shape[0], dtype=torch.float32, device=pixels.device)
    for start in range(0, pixels.shape[0], chunk_pixels):
        chunk = pixels[start : start + chunk_pixels]
        arg = torch.addmm(table_sq, chunk, table.T, alpha=-2.0).min(dim=-1).indices  # first on ties
        index[start : start + chunk.shape[0]] = arg
        distance[start : start + chunk.shape[0]] = (chunk - table[arg]).norm(dim=-1)
    return index, distance


def nearest_colour(
    img: torch.Tensor, table: torch.Tensor, chunk_pixels: int = DEFAULT_CHUNK_PIXELS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of, and Euclidean distance to, the nearest row of ``table`` for each pixel.

    Args:
        img: ``(..., 3, H, W)``, uint8 (read as value / 255) or float on the [0, 1] scale.
        table: float ``(K, 3)`` colours on the [0, 1] scale.
        chunk_pixels: pixels per matrix product; bounds memory to ``chunk_pixels * K`` floats.

    Returns:
        ``(index, distance)``, long and float32 of shape ``(..., H, W)``; ties go to the lower index.
    """
    shape = img.shape[:-3] + img.shape[-2:]
    table = table.to(device=img.device, dtype=torch.float32)
    if img.dtype == torch.uint8:
        wide = img.to(torch.int32)
        packed = (wide[..., 0, :, :] << 16) | (wide[..., 1, :, :] << 8) | wide[..., 2, :, :]
        keys, inverse = torch.unique(packed, return_inverse=True)
        colours = torch.stack([keys >> 16, (keys >> 8) & 255, keys & 255], dim=-1).float() / 255.0
        index, distance = _search(colours, table, chunk_pixels)
        return index[inverse], distance[inverse]
    pixels = img.movedim(-3, -1).reshape(-1, 3).float()
    index, distance = _search(pixels, table, chunk_pixels)
    return index.reshape(shape), distance.reshape(shape)
