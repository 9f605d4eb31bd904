"""Vector quantiser with EMA or straight-through codebook learning and dead-code restarts.

Written by hand (about a hundred lines) rather than taken from a VQ package so the codebook
state is plain buffers/parameters that save as safetensors, and every update is visible:

- ``"ema"``: the codebook follows exponential moving averages of the encoder vectors assigned to
  each code (Laplace-smoothed counts); the encoder gets the commitment loss only.
- ``"straight_through"``: the codebook is a parameter trained by the codebook loss
  ``|sg(z) - e|^2`` plus the commitment loss ``beta |z - sg(e)|^2``.

Either way gradients reach the encoder through the straight-through estimator. The codebook is
initialised from the first training batch's vectors, and codes whose moving-average use falls
below ``dead_code_threshold`` assignments per step are restarted on random current vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["QuantizerOutput", "VectorQuantizer"]


@dataclass
class QuantizerOutput:
    """Quantised vectors (straight-through), code indices, auxiliary loss and code statistics."""

    quantized: torch.Tensor
    codes: torch.Tensor
    loss: torch.Tensor
    perplexity: torch.Tensor
    restarted: int


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation of ``(N, D)`` vectors into ``codebook_size`` codes.

    Args:
        codebook_size: number of codes K.
        code_dim: vector size D.
        mode: ``"ema"`` or ``"straight_through"``.
        commitment: weight beta of the commitment loss.
        ema_decay: decay of the moving averages (codebook in EMA mode, code use in both modes).
        dead_code_threshold: restart codes used less than this many times per step on average.
        eps: Laplace smoothing of the EMA counts.
    """

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        mode: Literal["ema", "straight_through"] = "ema",
        commitment: float = 0.25,
        ema_decay: float = 0.99,
        dead_code_threshold: float = 1.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if mode not in ("ema", "straight_through"):
            raise ValueError(f'mode: expected "ema" or "straight_through", got {mode!r}')
        self.codebook_size, self.code_dim, self.mode = codebook_size, code_dim, mode
        self.commitment, self.ema_decay = commitment, ema_decay
        self.dead_code_threshold, self.eps = dead_code_threshold, eps
        codebook = torch.randn(codebook_size, code_dim) / code_dim**0.5
        if mode == "ema":
            self.register_buffer("codebook", codebook)
            self.register_buffer("ema_count", torch.zeros(codebook_size))
            self.register_buffer("ema_sum", torch.zeros(codebook_size, code_dim))
        else:
            self.codebook = nn.Parameter(codebook)
        self.register_buffer("usage", torch.zeros(codebook_size))
        self.register_buffer("initialized", torch.tensor(False))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of ``z`` ``(N, D)``."""
        codebook = self.codebook.detach()
        scores = (codebook * codebook).sum(-1) - 2.0 * z.detach() @ codebook.T
        return scores.argmin(-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors for integer ``codes`` of any shape: ``(*codes.shape, D)``."""
        return F.embedding(codes, self.codebook)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantise ``z`` ``(N, D)``; in training mode also update the codebook state."""
        if self.training and not bool(self.initialized):
            self._initialise(z.detach())
        codes = self.nearest(z)
        counts = torch.bincount(codes, minlength=self.codebook_size).to(z.dtype)
        quantized = self.lookup(codes)  # codes and vectors from the codebook before this step's update
        restarted = 0
        if self.training:
            with torch.no_grad():
                self.usage.mul_(self.ema_decay).add_(counts, alpha=1 - self.ema_decay)
                if self.mode == "ema":
                    self._ema_update(z.detach(), codes, counts)
                restarted = self._restart_dead(z.detach())
        loss = self.commitment * F.mse_loss(z, quantized.detach())
        if self.mode == "straight_through":
            loss = loss + F.mse_loss(quantized, z.detach())
        probs = counts / counts.sum()
        perplexity = torch.exp(-(probs * probs.clamp_min(1e-10).log()).sum())
        return QuantizerOutput(z + (quantized - z).detach(), codes, loss, perplexity, restarted)

    def _initialise(self, z: torch.Tensor) -> None:
        pick = torch.randint(0, z.shape[0], (self.codebook_size,), device=z.device)
        start = z[pick] + 1e-3 * z.std() * torch.randn_like(z[pick])
        with torch.no_grad():
            self.codebook.copy_(start)
            if self.mode == "ema":
                self.ema_count.fill_(1.0)
                self.ema_sum.copy_(start)
            self.usage.fill_(z.shape[0] / self.codebook_size)
            self.initialized.fill_(True)

    def _ema_update(self, z: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor) -> None:
        sums = torch.zeros_like(self.ema_sum).index_add_(0, codes, z)
        self.ema_count.mul_(self.ema_decay).add_(counts, alpha=1 - self.ema_decay)
        self.ema_sum.mul_(self.ema_decay).add_(sums, alpha=1 - self.ema_decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (total + self.codebook_size * self.eps) * total
        self.codebook.copy_(self.ema_sum / smoothed[:, None])

    def _restart_dead(self, z: torch.Tensor) -> int:
        dead = (self.usage < self.dead_code_threshold).nonzero().squeeze(-1)
        if dead.numel() == 0:
            return 0
        pick = torch.randint(0, z.shape[0], (dead.numel(),), device=z.device)
        fresh = z[pick]
        self.codebook.data[dead] = fresh
        fair_share = z.shape[0] / self.codebook_size  # a fresh code gets a grace period
        self.usage[dead] = fair_share
        if self.mode == "ema":
            self.ema_count[dead] = fair_share
            self.ema_sum[dead] = fresh * fair_share
        return int(dead.numel())
