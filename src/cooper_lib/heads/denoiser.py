"""`FlowDenoiser`: a small DiT that predicts the rectified-flow velocity of latent tokens.

Blocks are DiT's adaLN-Zero blocks (Peebles & Xie, 2023) assembled from timm's `Attention` and
`Mlp`: LayerNorm without affine, shift/scale from the conditioning vector, a gated residual whose
gate starts at zero, so an untrained block is the identity and an untrained denoiser predicts
zero velocity.

Conditioning on the K query states: prefix tokens. The projected queries are put in front of the
latent tokens and the blocks attend over the joint sequence, as BAGEL / COOPER do (latent tokens
attend to the LLM context in one sequence). Against cross-attention this needs no extra attention
layer (timm's self-attention is used as is), lets the condition tokens be refined together with
the latents, and costs (N + K)^2 instead of N^2 + N K attention scores, which is small while K is
at most a few times N. The mean of the projected queries is also added to the timestep embedding
that drives adaLN, so the whole condition modulates every block. The unconditional branch of
classifier-free guidance replaces the K projected queries with K learned null tokens.

The sinusoidal timestep features are written here (four lines; timm has no timestep embedding).
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from cooper_lib.heads.options import check_width

TIME_FEATURES = 256


def timestep_features(t: torch.Tensor, dim: int = TIME_FEATURES, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features [B, dim] of times t [B] in [0, 1] (scaled by 1000, as DiT's integer steps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class AdaLNBlock(nn.Module):
    """Pre-norm transformer block whose norms and residual gates are set by a conditioning vector."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float) -> None:
        from timm.layers import Attention, Mlp  # timm is imported when a head is built, not at import

        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio), act_layer=partial(nn.GELU, approximate="tanh"))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.attn(_modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(_modulate(self.norm2(x), shift2, scale2))


class FlowDenoiser(nn.Module):
    """Velocity of noisy latent tokens [B, N, D] at times t [B], given query states [B, K, H].

    Args:
        token_dim: D, dimensions of a latent token.
        grid: (rows, cols) of the latent token grid, rows * cols = N.
        cond_dim: H, hidden size of the query states.
        num_cond: K, query states per sample.
        width: transformer width.
        blocks: number of blocks.
        num_heads: attention heads (must divide `width`).
        mlp_ratio: MLP hidden size / width.
    """

    def __init__(
        self,
        token_dim: int,
        grid: tuple[int, int],
        cond_dim: int,
        num_cond: int,
        *,
        width: int = 256,
        blocks: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        check_width(width, num_heads)
        if blocks < 1:
            raise ValueError(f"blocks: expected a positive number of blocks, got {blocks}")
        self.grid = tuple(grid)
        self.num_cond = num_cond
        self.token_in = nn.Linear(token_dim, width)
        from timm.layers import Mlp, build_sincos2d_pos_embed  # timm is imported when a head is built

        self.register_buffer(
            "token_pos", build_sincos2d_pos_embed(list(self.grid), dim=width)[None], persistent=False
        )
        self.cond_norm = nn.LayerNorm(cond_dim)
        self.cond_in = nn.Linear(cond_dim, width)
        self.cond_pos = nn.Parameter(torch.zeros(1, num_cond, width))
        self.null_cond = nn.Parameter(torch.randn(1, num_cond, width) * 0.02)
        self.time_in = Mlp(TIME_FEATURES, width, width, act_layer=nn.SiLU)
        self.blocks = nn.ModuleList([AdaLNBlock(width, num_heads, mlp_ratio) for _ in range(blocks)])
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.token_out = nn.Linear(width, token_dim)
        for layer in (self.final_modulation[1], self.token_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def condition_tokens(self, cond: torch.Tensor, conditional: torch.Tensor) -> torch.Tensor:
        """Projected query states [B, K, width]; the learned null tokens where `conditional` is False."""
        tokens = self.cond_in(self.cond_norm(cond))
        return (
            torch.where(conditional[:, None, None], tokens, self.null_cond.to(tokens.dtype)) + self.cond_pos
        )

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, conditional: torch.Tensor
    ) -> torch.Tensor:
        """Velocity [B, N, D].

        Args:
            x: noisy tokens [B, N, D].
            t: times [B] in [0, 1] (1 = noise).
            cond: query states [B, K, H].
            conditional: bool [B]; False replaces the condition with the null tokens.
        """
        prefix = self.condition_tokens(cond.to(self.token_in.weight.dtype), conditional)
        c = self.time_in(timestep_features(t).to(prefix.dtype)) + prefix.mean(dim=1)
        h = torch.cat([prefix, self.token_in(x) + self.token_pos], dim=1)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.token_out(_modulate(self.final_norm(h[:, self.num_cond :]), shift, scale))
