"""Continuous patch tokens for pseudo-images: pixel patches, or patches of a user autoencoder's latent.

Pixel path: a ``(B, C, H, W)`` image at the working resolution is cut into ``patch x patch``
patches, each flattened in ``(row, col, channel)`` order and normalised per dimension by
``(patch - token_mean) / token_std`` (0.5 / 0.5 by default, mapping [0, 1] to [-1, 1]; or
statistics fitted with ``fit_normalization`` for zero mean and unit variance). Decoding
reverses both steps, so it is the exact inverse up to float rounding.

Autoencoder path (COOPER / BAGEL): any object with ``encode(x)`` and ``decode(z)`` taking images in
[-1, 1] (a diffusers ``AutoencoderKL`` works: its ``latent_dist`` mode is used). Latents are
normalised as ``latent_scale * (z - latent_shift)`` (FLUX's 0.3611, 0.1159 by default) and cut
into ``latent_patch x latent_patch`` patches (2 x 2 of 16 channels = 64 dims for FLUX).

Resizing to the working resolution is a separate, explicit step (``to_working_resolution``).
"""

from __future__ import annotations

import os
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from cooper_lib.tokenizers._files import load_files, save_files

__all__ = ["PatchTokenizer"]

ResizeMode = Literal["bilinear", "bicubic", "area", "nearest"]


def _size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"image_size: expected a positive int or (height, width), got {image_size!r}")
    return size


class PatchTokenizer(nn.Module):
    """Pseudo-image ``(B, C, H, W)`` in [0, 1] <-> continuous tokens ``(B, N, D)``.

    Args:
        image_size: working resolution, an int or ``(height, width)``.
        patch_size: pixel patch side (pixel path).
        channels: image channels (3 for pseudo-images, 1 for a raw map).
        autoencoder: optional object with ``encode`` / ``decode``; it stays the caller's (not a
            submodule: neither saved, trained, nor moved by ``.to()``), and inputs are moved to
            its device and dtype when it is an ``nn.Module``.
        latent_scale: autoencoder latent scale.
        latent_shift: autoencoder latent shift.
        latent_patch: latent patch side (autoencoder path).
    """

    tokenizer_type = "patch"

    def __init__(
        self,
        image_size: int | tuple[int, int] = 64,
        patch_size: int = 4,
        channels: int = 3,
        autoencoder: Any | None = None,
        latent_scale: float = 0.3611,
        latent_shift: float = 0.1159,
        latent_patch: int = 2,
    ) -> None:
        super().__init__()
        self.image_size = _size(image_size)
        if channels < 1:
            raise ValueError(f"channels: expected a positive int, got {channels}")
        if latent_scale == 0:
            raise ValueError("latent_scale: must be non-zero")
        self.patch_size = patch_size
        self.channels = channels
        self.latent_scale = float(latent_scale)
        self.latent_shift = float(latent_shift)
        self.latent_patch = latent_patch
        # The autoencoder is deliberately not registered as a submodule (see the class docstring).
        object.__setattr__(self, "autoencoder", autoencoder)
        if autoencoder is None:
            self._patch, self._latent_channels = patch_size, channels
            space = self.image_size
            default_mean, default_std = 0.5, 0.5
        else:
            for method in ("encode", "decode"):
                if not callable(getattr(autoencoder, method, None)):
                    raise TypeError(
                        f"autoencoder: expected an object with encode() and decode(), it lacks {method}()"
                    )
            with torch.no_grad():
                probe = self._ae_encode(torch.zeros(1, channels, *self.image_size))
            self._patch, self._latent_channels = latent_patch, probe.shape[1]
            space = tuple(probe.shape[-2:])
            default_mean, default_std = 0.0, 1.0
        if any(s % self._patch for s in space):
            what = "image_size" if autoencoder is None else "the autoencoder's latent grid"
            raise ValueError(f"{what} {space} is not divisible by the patch side {self._patch}")
        self._grid = (space[0] // self._patch, space[1] // self._patch)
        dim = self._latent_channels * self._patch**2
        self.register_buffer("token_mean", torch.full((dim,), default_mean))
        self.register_buffer("token_std", torch.full((dim,), default_std))

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid ``(rows, cols)``."""
        return self._grid

    @property
    def num_tokens(self) -> int:
        """Tokens per image: ``rows * cols``."""
        return self._grid[0] * self._grid[1]

    @property
    def token_dim(self) -> int:
        """Dimensions per token: ``channels * patch**2`` (latent channels on the autoencoder path)."""
        return self._latent_channels * self._patch**2

    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (the autoencoder is passed separately)."""
        return {
            "image_size": list(self.image_size),
            "patch_size": self.patch_size,
            "channels": self.channels,
            "latent_scale": self.latent_scale,
            "latent_shift": self.latent_shift,
            "latent_patch": self.latent_patch,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], autoencoder: Any | None = None) -> PatchTokenizer:
        """Build from ``get_config()`` output."""
        return cls(**config, autoencoder=autoencoder)

    def _check_image(self, img: torch.Tensor) -> None:
        if not isinstance(img, torch.Tensor):
            raise TypeError(f"img: expected a torch.Tensor, got {type(img).__name__}")
        if not img.is_floating_point():
            raise TypeError(f"img: expected a float image in [0, 1], got dtype {img.dtype}")
        expected = (self.channels, *self.image_size)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(
                f"img: expected shape (B, {', '.join(map(str, expected))}), got {tuple(img.shape)}; "
                "resize with to_working_resolution() first"
            )

    def _ae_target(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.autoencoder, nn.Module):
            param = next(self.autoencoder.parameters(), None)
            if param is not None:
                return x.to(device=param.device, dtype=param.dtype)
        return x

    def _ae_encode(self, img: torch.Tensor) -> torch.Tensor:
        out = self.autoencoder.encode(self._ae_target(img * 2.0 - 1.0))
        if hasattr(out, "latent_dist"):
            out = out.latent_dist.mode()
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            raise TypeError(
                "autoencoder: encode() must return a (B, C, h, w) tensor or an object with "
                f"latent_dist, got {type(out).__name__}"
            )
        return out.to(device=img.device, dtype=torch.float32)

    def _ae_decode(self, latent: torch.Tensor) -> torch.Tensor:
        out = self.autoencoder.decode(self._ae_target(latent))
        if hasattr(out, "sample"):
            out = out.sample
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"autoencoder: decode() must return a tensor or an object with .sample, got {type(out).__name__}"
            )
        return ((out.to(device=latent.device, dtype=torch.float32) + 1.0) * 0.5).clamp(0.0, 1.0)

    def _raw_patches(self, img: torch.Tensor) -> torch.Tensor:
        self._check_image(img)
        if self.autoencoder is None:
            space = img
        else:
            space = self.latent_scale * (self._ae_encode(img) - self.latent_shift)
        return rearrange(space, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=self._patch, p2=self._patch)

    def encode(self, img: torch.Tensor) -> torch.Tensor:
        """Image ``(B, C, H, W)`` in [0, 1] at the working resolution -> tokens ``(B, N, D)``."""
        return (self._raw_patches(img) - self.token_mean) / self.token_std

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, N, D)`` -> image ``(B, C, H, W)``; clamped to [0, 1] on the autoencoder path only."""
        if not isinstance(tokens, torch.Tensor) or not tokens.is_floating_point():
            raise TypeError(
                f"tokens: expected a float tensor, got {getattr(tokens, 'dtype', type(tokens).__name__)}"
            )
        if tokens.ndim != 3 or tokens.shape[1:] != (self.num_tokens, self.token_dim):
            raise ValueError(
                f"tokens: expected shape (B, {self.num_tokens}, {self.token_dim}), got {tuple(tokens.shape)}"
            )
        patches = tokens * self.token_std + self.token_mean
        space = rearrange(
            patches, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=self._grid[0], p1=self._patch, p2=self._patch
        )
        if self.autoencoder is None:
            return space
        return self._ae_decode(space / self.latent_scale + self.latent_shift)

    @torch.no_grad()
    def fit_normalization(self, images: torch.Tensor | Any, eps: float = 1e-6) -> PatchTokenizer:
        """Set ``token_mean`` / ``token_std`` to per-dimension statistics of ``images``' raw patches.

        Args:
            images: a tensor ``(N, C, H, W)`` or an iterable of such batches.
            eps: floor on the standard deviation.
        """
        batches = [images] if isinstance(images, torch.Tensor) else images
        count, total, total_sq = 0, 0.0, 0.0
        for batch in batches:
            raw = self._raw_patches(batch).double().flatten(0, 1)
            count += raw.shape[0]
            total = total + raw.sum(0)
            total_sq = total_sq + (raw * raw).sum(0)
        if count == 0:
            raise ValueError("images: no batches to fit the normalisation on")
        mean = total / count
        std = (total_sq / count - mean * mean).clamp_min(0.0).sqrt().clamp_min(eps)
        self.token_mean.copy_(mean.float())
        self.token_std.copy_(std.float())
        return self

    def to_working_resolution(self, img: torch.Tensor, mode: ResizeMode = "bilinear") -> torch.Tensor:
        """Resize ``(B, C, H, W)`` to the working resolution (antialiased for bilinear/bicubic).

        Use ``mode="nearest"`` for images whose colours must stay exact (segmentation palettes).
        """
        return _resize(img, self.image_size, mode)

    def from_working_resolution(
        self, img: torch.Tensor, size: tuple[int, int], mode: ResizeMode = "bilinear"
    ) -> torch.Tensor:
        """Resize a decoded ``(B, C, h, w)`` image back to ``size`` ``(H, W)``."""
        return _resize(img, _size(size), mode)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``tokenizer_config.json`` and ``tokenizer.safetensors`` (normalisation) to ``directory``."""
        config = {"tokenizer_type": self.tokenizer_type, "uses_autoencoder": self.autoencoder is not None}
        save_files(directory, {**config, **self.get_config()}, dict(self.state_dict()))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, autoencoder: Any | None = None) -> PatchTokenizer:
        """Load a tokenizer saved with ``save_pretrained``; pass the same kind of autoencoder if it used one."""
        config, tensors = load_files(directory, cls.tokenizer_type)
        uses_autoencoder = config.pop("uses_autoencoder")
        if uses_autoencoder != (autoencoder is not None):
            raise ValueError(
                f"autoencoder: the saved tokenizer {'used' if uses_autoencoder else 'did not use'} an autoencoder; "
                f"got {'none' if autoencoder is None else type(autoencoder).__name__}"
            )
        tokenizer = cls.from_config(config, autoencoder=autoencoder)
        tokenizer.load_state_dict(tensors)
        return tokenizer


def _resize(img: torch.Tensor, size: tuple[int, int], mode: ResizeMode) -> torch.Tensor:
    if not isinstance(img, torch.Tensor) or img.ndim != 4:
        raise ValueError(
            f"img: expected a (B, C, H, W) tensor, got {getattr(img, 'shape', type(img).__name__)}"
        )
    if tuple(img.shape[-2:]) == size:
        return img
    if mode == "nearest":
        return F.interpolate(img, size=size, mode="nearest-exact")
    if mode == "area":
        return F.interpolate(img, size=size, mode="area")
    if mode in ("bilinear", "bicubic"):
        return F.interpolate(img, size=size, mode=mode, align_corners=False, antialias=True)
    raise ValueError(f"mode: expected bilinear, bicubic, area or nearest, got {mode!r}")
