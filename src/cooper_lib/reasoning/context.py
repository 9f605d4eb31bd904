"""`KVContext`: a batch of growing model contexts held in the backbone's KV cache.

Each call to `append` runs only the new tokens of every row (a sampled token, a query block, an
inserted image with its prompt) on top of the cache; nothing already in the context is run again.
Rows advance in lockstep: a step's segments are left-padded to the longest, and the padding stays
in the cache as masked holes, so rows can take different paths (one inserts a map while another
decodes a token). Positions are explicit, so holes never shift a row's positions.

`full_inputs(row)` rebuilds one row's whole context as a single set of model inputs: what a full
re-prefill runs, and what the KV-cache tests compare against.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from cooper_lib.backbones.continuation import TOKEN_KEYS, ContinuationState, Inputs, stack_images
from cooper_lib.model import SpatialModel

__all__ = ["KVContext", "StepOutput", "cache_keyword"]


def cache_keyword(decoder: torch.nn.Module) -> str:
    """The keyword `decoder` takes (and returns) its KV cache under: ``cache`` from transformers 5.24,
    ``past_key_values`` before (the package supports transformers >= 5.17)."""
    parameters = inspect.signature(decoder.forward).parameters
    return "past_key_values" if "past_key_values" in parameters and "cache" not in parameters else "cache"


@dataclass
class StepOutput:
    """What one `KVContext.append` call returns.

    Attributes:
        logits: [B, V] next-token logits after each row's last new token (rows that appended
            nothing get the logits of a padding position: ignore them).
        hidden: [B, L, H] last hidden states (after the final norm) of the step's L positions;
            a row's own tokens are its last positions (left padding).
    """

    logits: torch.Tensor
    hidden: torch.Tensor


class KVContext:
    """Contexts of `batch_size` rows for `model`, kept in one KV cache.

    Args:
        model: the `SpatialModel` (the query hook fills query blocks with the learned queries).
        batch_size: rows advanced together.
    """

    def __init__(self, model: SpatialModel, batch_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size}")
        self.model = model
        self.adapter = model.adapter
        self.batch_size = batch_size
        self.state = ContinuationState(batch_size)
        self.cache: Any = None
        self.cache_keyword = cache_keyword(self.adapter.decoder())
        self.mask = torch.zeros(batch_size, 0, dtype=torch.long)
        self.segments: list[list[Inputs]] = [[] for _ in range(batch_size)]
        self.ids: list[list[int]] = [[] for _ in range(batch_size)]
        self.image_seeds: dict[int, torch.Tensor | ValueError] = {}
        tokenizer = self.adapter.tokenizer(model.processor)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)
        parameter = next(model.backbone.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype

    # ------------------------------------------------------------------ building segments
    def prompt_segment(self, text: str, images: Sequence[Any]) -> Inputs:
        """The first segment of a row: `text` with the processor's special tokens, and its images."""
        return self.adapter.prompt_inputs(self.model.processor, text, list(images))

    def text_segment(self, text: str, images: Sequence[Any] = ()) -> Inputs:
        """A continuation segment: `text` tokenised without special tokens, with its images."""
        return self.adapter.segment_inputs(self.model.processor, text, list(images))

    @staticmethod
    def token_segment(ids: Sequence[int], then: Inputs | None = None) -> Inputs:
        """A segment of given token ids (sampled tokens, a query block), optionally followed by the
        segment `then` (its token-aligned inputs get zeros, or ones for the attention mask, there)."""
        head = torch.tensor([list(ids)], dtype=torch.long)
        if then is None:
            return {"input_ids": head}
        joined = dict(then)
        for key in ("input_ids", "attention_mask", *TOKEN_KEYS):
            if key in then:
                value = then[key]
                fill = (
                    head
                    if key == "input_ids"
                    else value.new_full((1, head.shape[1], *value.shape[2:]), int(key == "attention_mask"))
                )
                joined[key] = torch.cat([fill.to(value.dtype), value], dim=1)
        return joined

    # ------------------------------------------------------------------ running
    def length(self, row: int) -> int:
        """Tokens in `row`'s context (holes excluded)."""
        return len(self.ids[row])

    def input_ids(self, row: int) -> list[int]:
        """`row`'s context as token ids."""
        return self.ids[row]

    def record(self, row: int, ids: Sequence[int]) -> None:
        """Add tokens to a finished row's context without running them (a last sampled token that
        nothing follows): they count in `length` and `full_inputs`, not in the cache."""
        self.segments[row].append(self.token_segment(ids))
        self.ids[row].extend(int(i) for i in ids)

    @torch.no_grad()
    def append(self, segments: Sequence[Inputs | None]) -> StepOutput:
        """Run one segment per row (None: the row adds nothing) on top of the cache.

        Raises:
            ValueError: wrong number of rows, or every segment empty.
        """
        if len(segments) != self.batch_size:
            raise ValueError(f"segments: expected one per row ({self.batch_size}), got {len(segments)}")
        rows = [seg if seg is not None and seg["input_ids"].shape[1] > 0 else None for seg in segments]
        if all(seg is None for seg in rows):
            raise ValueError("segments: expected at least one non-empty segment, got none")
        length = max(seg["input_ids"].shape[1] for seg in rows if seg is not None)
        ids = torch.full((self.batch_size, length), self.pad_id, dtype=torch.long)
        step_mask = torch.zeros(self.batch_size, length, dtype=torch.long)
        for row, seg in enumerate(rows):
            if seg is not None:
                n = seg["input_ids"].shape[1]
                ids[row, length - n :] = seg["input_ids"][0]
                step_mask[row, length - n :] = 1
                self.segments[row].append(seg)
                self.ids[row].extend(seg["input_ids"][0].tolist())
        positions = self.adapter.continuation_positions(self.state, rows, length)
        extra = self.adapter.continuation_inputs(self.state, rows, length)
        images = stack_images(
            [(row, seg) for row, seg in enumerate(rows) if seg is not None],
            self.adapter.image_input_axes,
            self.batch_size,
        )
        self.mask = torch.cat([self.mask, step_mask], dim=1)
        inputs = {
            "input_ids": ids,
            "position_ids": positions,
            "attention_mask": self.mask if bool((self.mask == 0).any()) else None,
            **extra,
            **images,
        }
        with self._seed_memory():
            out = self.adapter.decoder()(
                **self._to_device(inputs),
                **{self.cache_keyword: self.cache},
                use_cache=True,
                return_dict=True,
            )
        self.cache = getattr(out, self.cache_keyword)
        hidden = out.last_hidden_state
        return StepOutput(logits=self.logits(hidden[:, -1]), hidden=hidden)

    def _seed_memory(self) -> AbstractContextManager:
        """Keep each row's image seeds across steps when the model seeds its queries from the image."""
        seeder = self.model.query_seeder
        return seeder.remember(self.image_seeds) if seeder is not None else nullcontext()

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits from last hidden states, as the backbone's head computes them (float32)."""
        logits = self.adapter.output_embeddings()(hidden).float()
        cap = self.adapter.logit_softcap
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    # ------------------------------------------------------------------ re-prefill
    def full_inputs(self, row: int = 0) -> dict[str, torch.Tensor]:
        """`row`'s whole context as one batch-of-one model input (what a full re-prefill runs)."""
        segments = self.segments[row]
        if not segments:
            raise ValueError(f"row: row {row} holds no context yet")
        ids = torch.cat([seg["input_ids"] for seg in segments], dim=1)
        images = stack_images([(0, seg) for seg in segments], self.adapter.image_input_axes, 1)
        extra = self.adapter.context_inputs(ids, segments)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), **extra, **images}

    def _to_device(self, inputs: dict[str, Any]) -> dict[str, Any]:
        moved = {}
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device, dtype=self.dtype if value.is_floating_point() else None)
            moved[key] = value
        return moved
