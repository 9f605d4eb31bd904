"""`DenseHead`: query hidden states -> an auxiliary map in one pass (regression or per-pixel logits).

The K query states form a (rows x cols) grid; a linear projection turns them into a feature map
that timm's `ConvNormAct` blocks upsample by 2 until the output size is reached.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

#: Output channels and activation meaning per modality kind.
DENSE_KINDS = ("depth", "segmentation", "normals")


class DenseHead(nn.Module):
    """Decode a block of query hidden states [N, K, H] into maps [N, C, h, w].

    Args:
        hidden_size: backbone hidden size H.
        query_grid: (rows, cols) with rows * cols = K.
        kind: `"depth"` (C=1, log-depth), `"segmentation"` (C=num_classes logits) or `"normals"` (C=3).
        output_size: (h, w) of the produced map.
        num_classes: segmentation classes (ignored for other kinds).
        width: channels after the projection; halved at each upsampling down to 32.
    """

    def __init__(
        self,
        hidden_size: int,
        query_grid: tuple[int, int],
        kind: str,
        output_size: tuple[int, int],
        *,
        num_classes: int = 150,
        width: int = 128,
    ) -> None:
        super().__init__()
        if kind not in DENSE_KINDS:
            raise ValueError(f"kind: expected one of {list(DENSE_KINDS)}, got {kind!r}")
        self.kind = kind
        self.query_grid = tuple(query_grid)
        self.output_size = tuple(output_size)
        out_channels = {"depth": 1, "segmentation": num_classes, "normals": 3}[kind]
        self.norm = nn.LayerNorm(hidden_size)
        self.proj = nn.Linear(hidden_size, width)
        ups = max(0, math.ceil(math.log2(max(output_size[0] / query_grid[0], output_size[1] / query_grid[1]))))
        blocks: list[nn.Module] = []
        channels = width
        for _ in range(ups):
            nxt = max(32, channels // 2)
            blocks += [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                ConvNormAct(channels, nxt, 3, norm_layer="groupnorm", act_layer="gelu"),
            ]
            channels = nxt
        blocks.append(ConvNormAct(channels, channels, 3, norm_layer="groupnorm", act_layer="gelu"))
        self.decoder = nn.Sequential(*blocks)
        self.out = nn.Conv2d(channels, out_channels, 1)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        """Raw head output [N, C, h, w]: log-depth, class logits, or unnormalised normals."""
        rows, cols = self.query_grid
        if queries.ndim != 3 or queries.shape[1] != rows * cols:
            raise ValueError(f"queries: expected [N, {rows * cols}, H], got {tuple(queries.shape)}")
        x = self.proj(self.norm(queries.to(self.proj.weight.dtype)))
        x = x.transpose(1, 2).reshape(x.shape[0], -1, rows, cols)
        x = self.out(self.decoder(x))
        if tuple(x.shape[-2:]) != self.output_size:
            x = F.interpolate(x, size=self.output_size, mode="bilinear", align_corners=False)
        return x

    def to_map(self, raw: torch.Tensor) -> torch.Tensor:
        """Turn raw output into the map: depth [N, h, w] (positive), class ids [N, h, w], unit normals [N, 3, h, w]."""
        if self.kind == "depth":
            return raw[:, 0].float().exp()
        if self.kind == "segmentation":
            return raw.argmax(dim=1)
        return F.normalize(raw.float(), dim=1)
