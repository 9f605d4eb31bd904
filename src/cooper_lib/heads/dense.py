"""`DenseHead` (`head="dense"`): query hidden states -> an auxiliary map in one pass.

The K query states form a (rows x cols) grid; a linear projection turns them into a feature map
that timm's `ConvNormAct` blocks upsample by 2 until the output size is reached. The modality
gives the output channels, the decoding and the loss (`Modality.out_channels`, `dense_map`,
`dense_loss`): depth is regressed as log-depth (so it stays positive) and trained with SILog
(metric) or the scale-and-shift-invariant loss (relative); segmentation as per-pixel logits with
cross-entropy + Dice; normals as three channels normalised to unit length, trained with 1 - cosine.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from cooper_lib.heads.base import PerceptionHead, register_head
from cooper_lib.modalities import Modality, get_modality

if TYPE_CHECKING:
    from cooper_lib.config import SpatialConfig


class DenseHead(PerceptionHead):
    """Decode a block of query hidden states [n, K, H] into maps.

    Args:
        hidden_size: backbone hidden size H.
        query_grid: (rows, cols) with rows * cols = K.
        modality: the `Modality` (or its registered name) the head produces maps of.
        output_size: (h, w) of the produced map.
        num_classes: segmentation classes (ignored by modalities without classes).
        width: channels after the projection; halved at each upsampling down to 32.
        depth_mode: `"metric"` (SILog) or `"relative"` (scale-and-shift invariant).
        silog_lambda: variance weight of SILog.
        dice_weight: weight of the Dice term of the segmentation loss.
        init_depth: depth (metres) the untrained head predicts everywhere; a mid-range prior
            spares SILog (which weighs the global scale by only 1 - lambda) learning the scale.
    """

    def __init__(
        self,
        hidden_size: int,
        query_grid: tuple[int, int],
        modality: Modality | str,
        output_size: tuple[int, int],
        *,
        num_classes: int = 150,
        width: int = 128,
        depth_mode: str = "metric",
        silog_lambda: float = 0.85,
        dice_weight: float = 1.0,
        init_depth: float = 3.0,
    ) -> None:
        super().__init__()
        self.modality = modality if isinstance(modality, Modality) else get_modality(modality)
        self.query_grid = tuple(query_grid)
        self.output_size = tuple(output_size)
        self.depth_mode = depth_mode
        self.silog_lambda = silog_lambda
        self.dice_weight = dice_weight
        out_channels = self.modality.out_channels(num_classes)
        self.norm = nn.LayerNorm(hidden_size)
        self.proj = nn.Linear(hidden_size, width)
        ups = max(
            0, math.ceil(math.log2(max(output_size[0] / query_grid[0], output_size[1] / query_grid[1])))
        )
        from timm.layers import ConvNormAct  # timm is imported when a head is built, not at import

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
        self.modality.init_dense_output(self.out, init_depth=init_depth)

    @classmethod
    def from_config(cls, config: SpatialConfig, modality: str, hidden_size: int) -> DenseHead:
        """The dense head `config` describes for `modality` on a backbone of `hidden_size`."""
        return cls(
            hidden_size,
            config.query_grid,
            config.modality(modality),
            config.output_size,
            num_classes=config.num_classes,
            width=config.head_width,
            depth_mode=config.depth_mode,
            silog_lambda=config.silog_lambda,
            dice_weight=config.dice_weight,
        )

    def apply_settings(self, config: SpatialConfig) -> None:
        """The loss weights a later stage may change: ``silog_lambda`` and ``dice_weight``."""
        self.silog_lambda = config.silog_lambda
        self.dice_weight = config.dice_weight

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        """Raw output [n, C, h, w]: log-depth, class logits, or unnormalised normals."""
        rows, cols = self.query_grid
        if queries.ndim != 3 or queries.shape[1] != rows * cols:
            raise ValueError(f"queries: expected [n, {rows * cols}, H], got {tuple(queries.shape)}")
        x = self.proj(self.norm(queries.to(self.proj.weight.dtype)))
        x = x.transpose(1, 2).reshape(x.shape[0], -1, rows, cols)
        x = self.out(self.decoder(x))
        if tuple(x.shape[-2:]) != self.output_size:
            x = F.interpolate(x, size=self.output_size, mode="bilinear", align_corners=False)
        return x

    def to_map(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw output -> maps (`Modality.dense_map`: positive depth, class ids or unit normals)."""
        return self.modality.dense_map(raw)

    def generate(self, queries: torch.Tensor, **options: Any) -> torch.Tensor:
        """Maps for query states; one deterministic pass (`options` are accepted and unused)."""
        return self.to_map(self(queries))

    def loss(self, queries: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss against `target`; predictions are resized to the target's size first."""
        raw = self(queries)
        if tuple(raw.shape[-2:]) != tuple(target.shape[-2:]):
            raw = F.interpolate(raw.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
        return self.modality.dense_loss(
            raw,
            target,
            depth_mode=self.depth_mode,
            silog_lambda=self.silog_lambda,
            dice_weight=self.dice_weight,
        )


register_head("dense", DenseHead.from_config)
