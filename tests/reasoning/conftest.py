"""Shared fixtures of the reasoning tests: a small hand-made trace."""

import pytest
import torch
from PIL import Image

from cooper_lib.reasoning import ReasoningStep, ReasoningTrace


@pytest.fixture
def trace():
    picture = Image.new("RGB", (20, 10), (200, 30, 30))
    steps = [
        ReasoningStep(
            "text",
            0,
            text="<think>a</think><depth-estimation>go</depth-estimation>",
            token_ids=[1, 2],
            finish="tool",
        ),
        ReasoningStep("tool_call", 0, text="go", modality="depth"),
        ReasoningStep("map", 0, modality="depth", map=torch.tensor([[1.0, 3.0]]), token_ids=[9, 9]),
        ReasoningStep(
            "image", 0, text="Here is the map.", modality="depth", image=picture, token_ids=[5] * 7
        ),
        ReasoningStep(
            "text",
            1,
            text="<think>b</think><answer>\\boxed{A}</answer>",
            token_ids=[3, 4, 5],
            finish="answer",
        ),
    ]
    return ReasoningTrace(
        "Which?", picture, "adaptive", steps, answer="A", raw_answer="\\boxed{A}", stop_reason="answer"
    )
