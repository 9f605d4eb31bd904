"""The token layout of perception: tag tokens, query blocks, and finding them in `input_ids`.

A perception request is a modality's tag pair in text followed by a block of K copies of the query
token. The block's modality is the modality of the nearest tag token before it, so one query token
serves every modality and the same layout works in stage-1 prompts and mid-reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from cooper_lib.config import SpatialConfig


@dataclass
class QueryPositions:
    """Where the query blocks of a batch are.

    Attributes:
        mask: [B, T] bool, True at query positions.
        modality: [B, T] long, index into `config.modalities` at query positions (-1 elsewhere).
        rank: [B, T] long, position of the query inside its block (0..K-1) at query positions.
        block_modality: [n_blocks] long, the modality index of each block, in (sample, position) order.
    """

    mask: torch.Tensor
    modality: torch.Tensor
    rank: torch.Tensor
    block_modality: torch.Tensor


class PerceptionLayout:
    """Token ids of the tags and the query token, and the text of a perception request."""

    def __init__(self, config: SpatialConfig, tokenizer: Any) -> None:
        self.config = config
        self.query_id = _single_token_id(tokenizer, config.query_token)
        ids = []
        owners = []
        for index, name in enumerate(config.modalities):
            spec = config.spec(name)
            for tag in (spec.open_tag, spec.close_tag):
                ids.append(_single_token_id(tokenizer, tag))
                owners.append(index)
        self.tag_ids = torch.tensor(ids, dtype=torch.long)
        self.tag_owner = torch.tensor(owners, dtype=torch.long)

    @property
    def num_queries(self) -> int:
        """K, the query tokens after each tag."""
        return self.config.num_queries

    def query_text(self) -> str:
        """The query block as text: the query token repeated K times."""
        return self.config.query_token * self.num_queries

    def request_text(self, modality: str) -> str:
        """COOPER's tagged instruction for `modality`, e.g. ``<depth-estimation>Estimate ...</depth-estimation>``."""
        spec = self.config.spec(modality)
        return f"{spec.open_tag}{spec.instruction}{spec.close_tag}"

    def locate(self, input_ids: torch.Tensor) -> QueryPositions:
        """Find query blocks in `input_ids` [B, T] and the modality of each.

        Raises:
            ValueError: when a row holds a partial block or a block with no tag before it.
        """
        mask = input_ids == self.query_id
        batch, length = input_ids.shape
        device = input_ids.device
        tag_ids = self.tag_ids.to(device)
        is_tag = torch.isin(input_ids, tag_ids)
        positions = torch.arange(length, device=device).expand(batch, length)
        last_tag = torch.where(is_tag, positions, torch.full_like(positions, -1)).cummax(dim=1).values
        tag_token = input_ids.gather(1, last_tag.clamp(min=0))
        match = tag_token.unsqueeze(-1) == tag_ids  # [B, T, n_tags]
        owner = (match.long() * (self.tag_owner.to(device) + 1)).sum(dim=-1) - 1
        modality = torch.where(last_tag >= 0, owner, torch.full_like(owner, -1))
        modality = torch.where(mask, modality, torch.full_like(modality, -1))
        counts = mask.sum(dim=1)
        k = self.num_queries
        if bool((counts % k != 0).any()):
            raise ValueError(
                f"input_ids: expected query tokens in whole blocks of {k}, got counts {counts.tolist()} per row"
            )
        if bool((mask & (modality < 0)).any()):
            raise ValueError("input_ids: a query block has no perception tag before it; expected a tag first")
        rank = torch.where(mask, (mask.long().cumsum(dim=1) - 1) % k, torch.full_like(modality, -1))
        block_starts = mask & (rank == 0)
        _check_contiguous(mask, rank, k)
        return QueryPositions(mask, modality, rank, modality[block_starts])


def _check_contiguous(mask: torch.Tensor, rank: torch.Tensor, k: int) -> None:
    """Each block's K positions must be consecutive (a block split by other tokens is malformed)."""
    if k == 1 or not bool(mask.any()):
        return
    rows, cols = mask.nonzero(as_tuple=True)
    starts = rank[rows, cols] == 0
    block_id = starts.long().cumsum(0) - 1
    first_col = cols[starts][block_id]
    if not bool((cols - first_col == rank[rows, cols]).all()):
        raise ValueError(f"input_ids: a query block is interrupted; expected {k} consecutive query tokens")


def _single_token_id(tokenizer: Any, text: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"tokenizer: expected {text!r} to be one added token, got ids {ids}")
    return int(ids[0])
