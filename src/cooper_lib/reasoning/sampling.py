"""`SamplingConfig` and `TokenSampler`: next-token choice for the reasoner, per row, reproducibly.

Temperature, top-k and top-p are transformers' own logits warpers; user logits processors (the
`LogitsProcessor` interface) run first. Each row draws from its own generator seeded by its
rollout's seed, so a rollout samples the same tokens alone or inside any batch (up to the
floating-point effects of batching), which GRPO groups rely on for reproducibility.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from cooper_lib.serialization import from_dict, to_dict

__all__ = ["SamplingConfig", "TokenSampler"]


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is chosen.

    Attributes:
        temperature: 0 picks the most likely token (greedy); > 0 samples (COOPER's rollouts use 1.0).
        top_p: nucleus sampling mass, in (0, 1]; 1 keeps every token.
        top_k: keep the k most likely tokens; 0 keeps every token.
        seed: seed of a run's first rollout; rollout i of a batch uses ``seed + i``. None draws a
            seed from torch's global generator.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"temperature: expected a number >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p: expected a number in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k: expected an int >= 0, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingConfig:
        """Inverse of `to_dict`; unknown keys raise ValueError naming them."""
        return from_dict(cls, data)


class TokenSampler:
    """Chooses next tokens for a batch of rows.

    Args:
        config: the sampling settings.
        seeds: one seed per row.
        logits_processors: transformers `LogitsProcessor`s, called with each row's context ids.
        banned_ids: tokens never chosen (the perception query token: only the controller places it).
    """

    def __init__(
        self,
        config: SamplingConfig,
        seeds: Sequence[int],
        logits_processors: Sequence[Any] = (),
        banned_ids: Sequence[int] = (),
    ) -> None:
        self.config = config
        self.banned = torch.tensor(sorted(set(banned_ids)), dtype=torch.long)
        self.processors = LogitsProcessorList(logits_processors)
        warpers = LogitsProcessorList()
        if not config.greedy:
            warpers.append(TemperatureLogitsWarper(config.temperature))
            if config.top_k:
                warpers.append(TopKLogitsWarper(config.top_k))
            if config.top_p < 1:
                warpers.append(TopPLogitsWarper(config.top_p))
        self.warpers = warpers
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]

    def __call__(
        self, logits: torch.Tensor, rows: Sequence[int], contexts: Sequence[Sequence[int]]
    ) -> list[int]:
        """Next token of each of `rows`, from their logits [len(rows), V] and context ids."""
        scores = logits.float()
        if len(self.banned):
            scores = scores.index_fill(-1, self.banned.to(scores.device), -float("inf"))
        if len(self.processors):
            scores = self.processors(_left_padded(contexts).to(scores.device), scores)
        if self.config.greedy:
            return scores.argmax(dim=-1).tolist()
        no_ids = torch.zeros(len(rows), 0, dtype=torch.long, device=scores.device)  # warpers read no ids
        probs = torch.softmax(self.warpers(no_ids, scores), dim=-1).cpu()
        return [
            int(torch.multinomial(p, 1, generator=self.generators[row]))
            for p, row in zip(probs, rows, strict=True)
        ]


def _left_padded(contexts: Sequence[Sequence[int]]) -> torch.Tensor:
    """Context ids as one [n, T] tensor, left-padded with 0 (warpers ignore the ids)."""
    length = max(len(ids) for ids in contexts)
    out = torch.zeros(len(contexts), length, dtype=torch.long)
    for i, ids in enumerate(contexts):
        if ids:
            out[i, length - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
    return out
