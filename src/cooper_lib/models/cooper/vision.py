"""The SigLIP encoder from transformers, in BAGEL's layout, over packed images of any size.

BAGEL stores SigLIP as `vit_model.vision_model.*` with two changes this module makes to
transformers' `SiglipVisionModel`: the patch embedding is a `Linear [hidden, 3 p p]` applied to
patches flattened as (row, col, channel), not a `Conv2d`; and images of any size share one learned
`side x side` position table, indexed `row * side + col`. Several images are packed into one row
with block-diagonal attention (each image attends to itself only). No pooling head.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import SiglipVisionModel

from cooper_lib.models.cooper.config import ViTConfig
from cooper_lib.models.cooper.embeddings import grid_position_ids


def patchify(image: torch.Tensor, patch: int) -> torch.Tensor:
    """`[C, H, W] -> [(H/p)(W/p), p p C]`, patches in row-major order, each flattened (row, col, channel)."""
    c, h, w = image.shape
    if h % patch or w % patch:
        raise ValueError(f"image: expected height and width multiples of {patch}, got {h} x {w}")
    x = image.reshape(c, h // patch, patch, w // patch, patch)
    return torch.einsum("chpwq->hwpqc", x).reshape(-1, patch * patch * c)


class PackedSiglip(nn.Module):
    """`vit_model.` in a BAGEL checkpoint; `forward(patches [N, 3 p p], pos [N], lengths) -> [N, hidden]`."""

    def __init__(self, cfg: ViTConfig, max_patches_per_side: int):
        super().__init__()
        self.cfg, self.side = cfg, max_patches_per_side
        self.vision_model = SiglipVisionModel(cfg.to_siglip(max_patches_per_side))
        embeddings = self.vision_model.embeddings
        embeddings.patch_embedding = nn.Linear(cfg.num_channels * cfg.patch_size**2, cfg.hidden_size)
        del embeddings.position_ids  # a buffer for fixed-size images; ids come with each patch here

    def position_ids(self, height: int, width: int) -> torch.Tensor:
        p = self.cfg.patch_size
        return grid_position_ids(height // p, width // p, self.side)

    def forward(self, patches: torch.Tensor, pos: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        emb = self.vision_model.embeddings
        x = emb.patch_embedding(patches.to(emb.patch_embedding.weight.dtype)) + emb.position_embedding(pos)
        image_id = torch.repeat_interleave(
            torch.arange(len(lengths), device=x.device), torch.tensor(lengths, device=x.device)
        )
        mask = image_id[:, None] == image_id[None, :]  # [N, N]: within one image
        x = self.vision_model.encoder(
            inputs_embeds=x[None], attention_mask=mask[None, None]
        ).last_hidden_state
        return self.vision_model.post_layernorm(x[0])
