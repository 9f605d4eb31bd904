"""PNG files of scene maps: 8-bit RGB, 16-bit depth in millimetres, 8-bit ids, 8-bit normals."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from cooper_lib.images import open_image, to_pil
from cooper_lib.modalities import depth_from_png, depth_to_png

DEPTH_SCALE = 1000.0
"""Depth PNG units per metre (millimetres, as NYU and Hypersim store depth); 0 means no depth."""


def save_rgb(path: str | os.PathLike, image: torch.Tensor) -> None:
    """[3, H, W] float in [0, 1] -> 8-bit RGB PNG."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image: expected [3, H, W], got {tuple(image.shape)}")
    to_pil(image).save(path)


def load_rgb(path: str | os.PathLike) -> torch.Tensor:
    """8-bit RGB PNG -> [3, H, W] float in [0, 1]."""
    array = np.array(open_image(path))
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255.0


def save_depth(path: str | os.PathLike, depth: torch.Tensor) -> None:
    """[H, W] metres -> 16-bit PNG in millimetres (0 stays 0: no depth)."""
    Image.fromarray(depth_to_png(depth, scale=DEPTH_SCALE)).save(path)


def load_depth(path: str | os.PathLike) -> torch.Tensor:
    """16-bit millimetre PNG -> [H, W] float metres."""
    return depth_from_png(path, scale=DEPTH_SCALE)


def save_ids(path: str | os.PathLike, ids: torch.Tensor) -> None:
    """[H, W] integer ids in 0..255 -> 8-bit grayscale PNG."""
    if ids.is_floating_point() or ids.min() < 0 or ids.max() > 255:
        raise ValueError("ids: expected integer ids in 0..255")
    Image.fromarray(ids.to(torch.uint8).numpy()).save(path)


def load_ids(path: str | os.PathLike) -> torch.Tensor:
    """8-bit id PNG -> [H, W] long."""
    with Image.open(path) as image:
        return torch.from_numpy(np.array(image)).long()


def save_normals(path: str | os.PathLike, normals: torch.Tensor) -> None:
    """[3, H, W] unit normals -> 8-bit RGB PNG of (n + 1) / 2."""
    save_rgb(path, (normals + 1.0) * 0.5)


def load_normals(path: str | os.PathLike) -> torch.Tensor:
    """8-bit normal PNG -> [3, H, W] unit normals (zero where the stored vector was zero)."""
    vectors = load_rgb(path) * 2.0 - 1.0
    norm = vectors.norm(dim=0, keepdim=True)
    return torch.where(norm > 0.5, vectors / norm.clamp_min(1e-6), 0.0)
