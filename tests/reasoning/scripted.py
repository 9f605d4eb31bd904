"""Shared pieces of the reasoning tests: tiny spatial models per family and a scripted "model"."""

from __future__ import annotations

import functools

import torch
from helpers import SMALL_HEADS, images
from transformers import LogitsProcessor

from cooper_lib import SpatialModel, add_spatial_heads
from cooper_lib.backbones.tiny import build_tiny_backbone, tiny_families

FAMILIES = tiny_families()
QUESTION = "Which chair is closer to the camera?"


@functools.cache
def spatial(family: str) -> SpatialModel:
    """A tiny `family` backbone with small depth and segmentation heads (shared: never mutated).

    Mllama gets a third decoder layer so its cross-attention layer (index 1) has a layer after it:
    with two, what the cross-attention sees could not reach the last position's logits.
    """
    overrides = {"num_hidden_layers": 3} if family == "mllama" else {}
    model, processor = build_tiny_backbone(family, **overrides)
    return add_spatial_heads(model, processor, **SMALL_HEADS)


def image(seed: int = 1):
    return images(seed)[-1]


class Script(LogitsProcessor):
    """Forces the tokens of `texts`, in order, one per sampling call (batch of one); then EOS."""

    def __init__(self, tokenizer, texts: list[str], eos_id: int) -> None:
        self.ids = [i for text in texts for i in tokenizer.encode(text, add_special_tokens=False)]
        self.eos_id = eos_id
        self.calls = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        assert scores.shape[0] == 1, "a script drives one rollout"
        token = self.ids[self.calls] if self.calls < len(self.ids) else self.eos_id
        self.calls += 1
        forced = torch.full_like(scores, -float("inf"))
        forced[0, token] = 0.0
        return forced


def script(model: SpatialModel, *texts: str) -> Script:
    tokenizer = model.adapter.tokenizer(model.processor)
    return Script(tokenizer, list(texts), tokenizer.eos_token_id)


TOOL_TURN = "<think>depth</think><depth-estimation>go</depth-estimation>"
SEG_TURN = "<think>count</think><segmentation>go</segmentation>"
ANSWER_TURN = "<think>left</think><answer>Left. \\boxed{A}</answer>"
