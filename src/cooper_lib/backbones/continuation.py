"""Pieces every adapter uses to append segments to a KV-cached context (see `BackboneAdapter`).

A context grows by *segments*: the prompt, sampled tokens, a query block, an inserted image with
its prompt. Each is tokenised on its own, so the context is the concatenation of its segments'
tokens, and a step runs several rows' segments at once, left-padded to the longest. The helpers
here are generic; what differs between families (positions, masks, how images stack) lives in
the adapters' ``continuation_*`` methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

Inputs = dict[str, torch.Tensor]

#: Keys aligned with the tokens (dimension 1 is the sequence) besides input_ids and attention_mask.
TOKEN_KEYS = ("mm_token_type_ids", "token_type_ids", "cross_attention_mask")


class ContinuationState:
    """Per-row bookkeeping an adapter keeps across the steps of one context.

    Attributes:
        next_position: per row, the position id the row's next token gets.
        extra: whole-context tensors a family needs at every step (e.g. a running mask), by name.
    """

    def __init__(self, batch_size: int) -> None:
        self.next_position = [0] * batch_size
        self.extra: dict[str, torch.Tensor] = {}


def strip_leading_bos(batch: Inputs, tokenizer: Any, text: str) -> Inputs:
    """Drop a BOS that a processor adds even with ``add_special_tokens=False`` (Mllama's does)."""
    bos = getattr(tokenizer, "bos_token", None)
    bos_id = getattr(tokenizer, "bos_token_id", None)
    ids = batch["input_ids"]
    if bos is None or bos_id is None or ids.shape[1] == 0 or int(ids[0, 0]) != bos_id or text.startswith(bos):
        return batch
    return {k: v[:, 1:] if k in ("input_ids", "attention_mask", *TOKEN_KEYS) else v for k, v in batch.items()}


def left_pad_key(rows: Sequence[Inputs | None], key: str, length: int) -> torch.Tensor:
    """Token-aligned `key` ([1, n]) of every row, left-padded with zeros to `length`: [B, L]."""
    out = torch.zeros(len(rows), length, dtype=torch.long)
    for row, seg in enumerate(rows):
        if seg is not None and key in seg:
            n = seg[key].shape[1]
            out[row, length - n :] = seg[key][0]
    return out


def counted_positions(state: ContinuationState, rows: Sequence[Inputs | None], length: int) -> torch.Tensor:
    """Positions [B, L] that count each row's tokens (pads get 0); advances `state.next_position`."""
    out = torch.zeros(len(rows), length, dtype=torch.long)
    for row, seg in enumerate(rows):
        if seg is None:
            continue
        n = seg["input_ids"].shape[1]
        start = state.next_position[row]
        out[row, length - n :] = torch.arange(start, start + n)
        state.next_position[row] = start + n
    return out


def stack_images(parts: Sequence[tuple[int, Inputs]], axes: dict[str, int], batch_size: int) -> Inputs:
    """Merge the image inputs of (row, inputs) parts into the inputs of one model call.

    Keys stacked on axis 0 hold images flattened over the batch: they are concatenated in order.
    Keys stacked on axis 1 hold one row per sample: each row's images are concatenated along
    dimension 1, and rows with fewer images are zero-filled (the processors' own padding). Other
    dimensions (tiles, views) are zero-padded to the largest.
    """
    out: Inputs = {}
    for key, axis in axes.items():
        present = [(row, seg[key]) for row, seg in parts if key in seg]
        if not present:
            continue
        if axis == 0:
            out[key] = _pad_cat([tensor for _, tensor in present], dim=0)
            continue
        per_row: list[list[torch.Tensor]] = [[] for _ in range(batch_size)]
        for row, tensor in present:
            per_row[row].append(tensor)
        empty = present[0][1][:, :0]
        out[key] = _pad_cat([_pad_cat(items, dim=1) if items else empty for items in per_row], dim=0)
    return out


def _pad_cat(tensors: Sequence[torch.Tensor], dim: int) -> torch.Tensor:
    """Concatenate along `dim`, zero-padding every other dimension to the largest."""
    shape = [max(t.shape[d] for t in tensors) for d in range(tensors[0].ndim)]
    padded = []
    for tensor in tensors:
        target = list(shape)
        target[dim] = tensor.shape[dim]
        if list(tensor.shape) != target:
            grown = tensor.new_zeros(target)
            grown[tuple(slice(0, s) for s in tensor.shape)] = tensor
            tensor = grown
        padded.append(tensor)
    return torch.cat(padded, dim=dim)
