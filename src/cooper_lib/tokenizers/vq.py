"""A small VQ-VAE that turns a pseudo-image into a grid of discrete codes and back.

An LLM can then generate auxiliary maps as ordinary tokens (one extra vocabulary entry per code).
Encoder: a stem convolution, then per halving of the resolution residual blocks and a stride-2
convolution, then a 1x1 projection to the code dimension. Decoder: the mirror image with
nearest-neighbour upsampling. Plain conv blocks written here (GroupNorm, SiLU) keep the model
small and free of batch statistics; quantisation is ``VectorQuantizer``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from cooper_lib.serialization import from_dict, to_dict
from cooper_lib.tokenizers._files import load_files, save_files
from cooper_lib.tokenizers.quantizer import QuantizerOutput, VectorQuantizer

__all__ = ["VQConfig", "VQOutput", "VQTokenizer"]


@dataclass
class VQConfig:
    """Configuration of a ``VQTokenizer`` (round-trips through JSON with ``to_dict`` / ``from_dict``).

    Attributes:
        image_size: side of the square input images.
        channels: image channels.
        downsample: image side / token grid side, a power of two (4: 64 x 64 -> 16 x 16 codes).
        base_channels: width of the first stage; doubles at each halving, up to 4x.
        num_res_blocks: residual blocks per stage.
        codebook_size: number of codes.
        code_dim: size of a code vector.
        quantizer: ``"ema"`` codebook updates or ``"straight_through"`` with a codebook loss.
        commitment: weight of the commitment loss.
        ema_decay: decay of the codebook and code-use moving averages.
        dead_code_threshold: restart codes used less than this many times per step on average.
    """

    image_size: int = 64
    channels: int = 3
    downsample: int = 4
    base_channels: int = 32
    num_res_blocks: int = 1
    codebook_size: int = 512
    code_dim: int = 32
    quantizer: Literal["ema", "straight_through"] = "ema"
    commitment: float = 0.25
    ema_decay: float = 0.99
    dead_code_threshold: float = 1.0

    def __post_init__(self) -> None:
        if self.downsample < 2 or self.downsample & (self.downsample - 1):
            raise ValueError(f"downsample: expected a power of two >= 2, got {self.downsample}")
        if self.image_size % self.downsample:
            raise ValueError(
                f"image_size: {self.image_size} is not divisible by downsample={self.downsample}"
            )
        for field in ("channels", "base_channels", "num_res_blocks", "codebook_size", "code_dim"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field}: expected a positive int, got {getattr(self, field)}")
        if self.quantizer not in ("ema", "straight_through"):
            raise ValueError(f'quantizer: expected "ema" or "straight_through", got {self.quantizer!r}')

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> VQConfig:
        """Build from ``to_dict`` output; unknown keys raise ValueError naming them."""
        return from_dict(cls, config)


@dataclass
class VQOutput:
    """What a training forward pass returns."""

    reconstruction: torch.Tensor
    codes: torch.Tensor
    vq_loss: torch.Tensor
    perplexity: torch.Tensor
    restarted: int


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class _ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _widths(config: VQConfig) -> list[int]:
    """Channel width of each stage, from full resolution to the token grid."""
    stages = int(math.log2(config.downsample))
    return [config.base_channels * min(2**i, 4) for i in range(stages + 1)]


def _encoder(config: VQConfig) -> nn.Sequential:
    widths = _widths(config)
    layers: list[nn.Module] = [nn.Conv2d(config.channels, widths[0], 3, padding=1)]
    for here, below in zip(widths[:-1], widths[1:], strict=True):
        layers += [_ResBlock(here) for _ in range(config.num_res_blocks)]
        layers.append(nn.Conv2d(here, below, 4, stride=2, padding=1))
    layers += [_ResBlock(widths[-1]), _norm(widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], config.code_dim, 1)]
    return nn.Sequential(*layers)


def _decoder(config: VQConfig) -> nn.Sequential:
    widths = _widths(config)[::-1]
    layers: list[nn.Module] = [nn.Conv2d(config.code_dim, widths[0], 3, padding=1), _ResBlock(widths[0])]
    for here, above in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(here, above, 3, padding=1)]
        layers += [_ResBlock(above) for _ in range(config.num_res_blocks)]
    layers += [_norm(widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], config.channels, 3, padding=1)]
    return nn.Sequential(*layers)


class VQTokenizer(nn.Module):
    """Pseudo-image ``(B, C, S, S)`` in [0, 1] <-> discrete codes ``(B, S/d, S/d)``."""

    tokenizer_type = "vq"

    def __init__(self, config: VQConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else VQConfig()
        if not isinstance(self.config, VQConfig):
            raise TypeError(
                f"config: expected a VQConfig, got {type(config).__name__}; use from_config for dicts"
            )
        self.encoder = _encoder(self.config)
        self.quantizer = VectorQuantizer(
            self.config.codebook_size,
            self.config.code_dim,
            mode=self.config.quantizer,
            commitment=self.config.commitment,
            ema_decay=self.config.ema_decay,
            dead_code_threshold=self.config.dead_code_threshold,
        )
        self.decoder = _decoder(self.config)

    @property
    def codebook_size(self) -> int:
        """Number of distinct codes (vocabulary entries an LLM needs)."""
        return self.config.codebook_size

    @property
    def grid(self) -> tuple[int, int]:
        """Code grid ``(rows, cols)``."""
        side = self.config.image_size // self.config.downsample
        return (side, side)

    @property
    def num_tokens(self) -> int:
        """Codes per image."""
        return self.grid[0] * self.grid[1]

    def _check_image(self, img: torch.Tensor) -> None:
        if not isinstance(img, torch.Tensor):
            raise TypeError(f"img: expected a torch.Tensor, got {type(img).__name__}")
        if not img.is_floating_point():
            raise TypeError(f"img: expected a float image in [0, 1], got dtype {img.dtype}")
        expected = (self.config.channels, self.config.image_size, self.config.image_size)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(
                f"img: expected shape (B, {', '.join(map(str, expected))}), got {tuple(img.shape)}"
            )

    def _quantize(self, img: torch.Tensor) -> QuantizerOutput:
        self._check_image(img)
        latent = self.encoder(img * 2.0 - 1.0)  # (B, D, h, w)
        flat = latent.permute(0, 2, 3, 1).reshape(-1, self.config.code_dim)
        out = self.quantizer(flat)
        b, _, h, w = latent.shape
        out.quantized = out.quantized.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        out.codes = out.codes.reshape(b, h, w)
        return out

    def _render(self, quantized: torch.Tensor) -> torch.Tensor:
        return (self.decoder(quantized) + 1.0) * 0.5

    def forward(self, img: torch.Tensor) -> VQOutput:
        """Training pass: reconstruction (unclamped), codes, VQ loss, code perplexity, restarts."""
        out = self._quantize(img)
        return VQOutput(self._render(out.quantized), out.codes, out.loss, out.perplexity, out.restarted)

    @torch.no_grad()
    def encode(self, img: torch.Tensor) -> torch.Tensor:
        """Image ``(B, C, S, S)`` in [0, 1] -> long codes ``(B, rows, cols)``."""
        was_training = self.training
        self.eval()
        try:
            return self._quantize(img).codes
        finally:
            self.train(was_training)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Long codes ``(B, rows, cols)`` -> image ``(B, C, S, S)`` clamped to [0, 1]."""
        if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.dtype == torch.bool:
            raise TypeError(
                f"codes: expected an integer tensor, got {getattr(codes, 'dtype', type(codes).__name__)}"
            )
        if codes.ndim != 3 or tuple(codes.shape[1:]) != self.grid:
            raise ValueError(
                f"codes: expected shape (B, {self.grid[0]}, {self.grid[1]}), got {tuple(codes.shape)}"
            )
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(
                f"codes: values must be in [0, {self.codebook_size - 1}], got {int(codes.min())}..{int(codes.max())}"
            )
        quantized = self.quantizer.lookup(codes.long()).permute(0, 3, 1, 2)
        return self._render(quantized).clamp(0.0, 1.0)

    def get_config(self) -> dict[str, Any]:
        """The configuration as a JSON-serialisable dict."""
        return self.config.to_dict()

    @classmethod
    def from_config(cls, config: dict[str, Any] | VQConfig) -> VQTokenizer:
        """Build an untrained tokenizer from a ``VQConfig`` or its dict."""
        return cls(config if isinstance(config, VQConfig) else VQConfig.from_dict(config))

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``tokenizer_config.json`` and ``tokenizer.safetensors`` (all weights and codebook state)."""
        save_files(
            directory, {"tokenizer_type": self.tokenizer_type, **self.get_config()}, dict(self.state_dict())
        )

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> VQTokenizer:
        """Load a tokenizer saved with ``save_pretrained`` (in eval mode)."""
        config, tensors = load_files(directory, cls.tokenizer_type)
        tokenizer = cls.from_config(config)
        tokenizer.load_state_dict(tensors)
        return tokenizer.eval()
