"""The small modules around the decoder: 2-D sin-cos position tables, the time embedder, the connector.

Position ids on a `side x side` table are `row * side + col` (BAGEL's "extrapolate" rule: an image
smaller than the table uses its top-left corner). The sin-cos table is DiT's: the first half of the
channels encodes the column, the second the row, each as `[sin(p w_k), cos(p w_k)]` with
`w_k = 10000^(-k / (D/4))`. It is stored in BAGEL's checkpoints (`vit_pos_embed.pos_embed`,
`latent_pos_embed.pos_embed`) but fixed, so it is a non-persistent buffer here, recomputed on build.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.activations import ACT2FN


def sincos_2d(dim: int, side: int) -> torch.Tensor:
    """`[side * side, dim]` float32 table; row `r * side + c` encodes (col c, row r)."""
    if dim % 4:
        raise ValueError(f"dim: expected a multiple of 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))  # [D/4]
    coords = torch.arange(side, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")  # [side, side]

    def one_axis(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega  # [side^2, D/4]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([one_axis(cols), one_axis(rows)], dim=1).float()


def grid_position_ids(rows: int, cols: int, side: int) -> torch.Tensor:
    """Flattened ids `[rows * cols]` of a `rows x cols` grid on a `side x side` table (row-major)."""
    if rows > side or cols > side:
        raise ValueError(f"grid: expected at most {side} x {side} tokens, got {rows} x {cols}")
    return (torch.arange(rows)[:, None] * side + torch.arange(cols)).flatten()


class PositionTable(nn.Module):
    """A fixed 2-D sin-cos table; `forward(ids [N]) -> [N, dim]`."""

    def __init__(self, side: int, dim: int):
        super().__init__()
        self.side, self.dim = side, dim
        self.register_buffer("pos_embed", sincos_2d(dim, side), persistent=False)

    def reset(self, device: torch.device | str | None = None) -> None:
        """Recompute the table (after a meta-device build)."""
        self.pos_embed = sincos_2d(self.dim, self.side).to(device)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.pos_embed[ids]


class TimestepEmbedder(nn.Module):
    """DiT's embedder: `[cos(t f_k), sin(t f_k)]` (256 frequencies) -> Linear -> SiLU -> Linear.

    t is the flow time in [0, 1] itself (BAGEL does not scale it by 1000)."""

    def __init__(self, hidden_size: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(
            nn.Linear(frequency_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # [N] -> [N, H]
        half = self.frequency_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs  # [N, half]
        emb = torch.cat([args.cos(), args.sin()], dim=-1)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class Connector(nn.Module):
    """ViT features to LLM width: `fc2(act(fc1(x)))`."""

    def __init__(self, in_dim: int, out_dim: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, out_dim)
        self.fc2 = nn.Linear(out_dim, out_dim)
        self.act = ACT2FN[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
