"""`ReasoningTrace`: what one interleaved-reasoning run did, in order, with its maps.

A trace is a list of steps: the model's text turns, the tool calls they made, the maps the heads
generated and the pseudo-images inserted back into the context, each with its token count and
wall time. It renders as JSON (for logs and GRPO bookkeeping) here, and as a self-contained HTML
page and a PNG storyboard through `cooper_lib.reasoning.render`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from cooper_lib.reasoning.render import png_base64, trace_to_html, trace_to_image

__all__ = ["ReasoningStep", "ReasoningTrace", "StreamEvent"]

StepKind = Literal["text", "tool_call", "map", "image", "prompt"]


@dataclass
class ReasoningStep:
    """One step of a trace.

    Attributes:
        kind: ``"text"`` (an assistant turn), ``"tool_call"`` (the call that turn made), ``"map"``
            (the map the modality's head generated), ``"image"`` (the pseudo-image inserted,
            with the prompt after it) or ``"prompt"`` (the retry prompt inserted after a turn
            with neither a tool call nor an answer).
        turn: 0-based turn the step belongs to.
        text: the turn's text, the call's request, or the inserted prompt.
        modality: the tool's modality (tool_call, map, image steps).
        map: the generated map (depth [h, w], class ids [h, w], normals [3, h, w]), on the CPU.
        image: the inserted pseudo-image.
        token_ids: the tokens the step added to the context (the turn's tokens, an end-of-turn
            token included; the query block; or the inserted segment).
        seconds: wall time of the step (model calls it took part in, sampling, rendering).
        forced: the controller wrote the turn (``perceive_first``), not the model.
        finish: how a text turn ended: ``"tool"``, ``"answer"``, ``"eos"`` (end of turn without
            either), ``"length"`` (per-turn budget), ``"budget"`` (total budget).
    """

    kind: StepKind
    turn: int
    text: str = ""
    modality: str | None = None
    map: torch.Tensor | None = None
    image: Image.Image | None = None
    token_ids: list[int] = field(default_factory=list)
    seconds: float = 0.0
    forced: bool = False
    finish: str | None = None

    @property
    def tokens(self) -> int:
        return len(self.token_ids)

    def to_dict(self, embed_images: bool = False) -> dict[str, Any]:
        """JSON-ready fields; maps as shape and statistics, images as size (or base64 PNG)."""
        out: dict[str, Any] = {"kind": self.kind, "turn": self.turn, "text": self.text, "tokens": self.tokens}
        out["seconds"] = round(self.seconds, 6)
        for name in ("modality", "finish"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.forced:
            out["forced"] = True
        if self.map is not None:
            values = self.map.float()
            out["map"] = {
                "shape": list(self.map.shape),
                "dtype": str(self.map.dtype).removeprefix("torch."),
                "min": float(values.min()),
                "max": float(values.max()),
                "mean": float(values.mean()),
            }
        if self.image is not None:
            out["image"] = {"size": list(self.image.size)}
            if embed_images:
                out["image"]["png_base64"] = png_base64(self.image)
        return out


@dataclass
class StreamEvent:
    """What the streaming callback receives: a text piece of a turn as it is decoded, a generated
    map, or an inserted image.

    Attributes:
        row: the rollout's index in the batch (0 for `run`).
        kind: ``"text"``, ``"map"`` or ``"image"``.
        turn: 0-based turn.
        text: the new text piece (text events) or the prompt after the image (image events).
        modality: the map's modality (map and image events).
        map: the map (map events).
        image: the inserted pseudo-image (image events).
    """

    row: int
    kind: Literal["text", "map", "image"]
    turn: int
    text: str = ""
    modality: str | None = None
    map: torch.Tensor | None = None
    image: Image.Image | None = None


@dataclass
class ReasoningTrace:
    """One rollout of the interleaved reasoner.

    Attributes:
        question: the question asked.
        image: the input image.
        policy: the policy's name.
        steps: the steps, in order.
        answer: the content of the final answer's last ``\\boxed{}`` (None without one).
        raw_answer: the text between the final ``<answer>`` tags (None when the run never answered).
        stop_reason: ``"answer"``, ``"max_turns"`` or ``"max_total_tokens"``.
        prompt_tokens: tokens of the prompt (system, image, question, generation prompt).
        total_tokens: tokens of the whole context at the end.
        seconds: wall time of the run (of the batch, for `run_batch`).
        seed: the seed the rollout sampled with (None when greedy).
        model_inputs: the whole context as model inputs (``return_inputs=True``), e.g. to score the
            rollout's tokens in a GRPO step.
        generated_mask: [T] bool over `model_inputs["input_ids"]`: True on tokens the model sampled.
    """

    question: str
    image: Image.Image
    policy: str
    steps: list[ReasoningStep] = field(default_factory=list)
    answer: str | None = None
    raw_answer: str | None = None
    stop_reason: str = ""
    prompt_tokens: int = 0
    total_tokens: int = 0
    seconds: float = 0.0
    seed: int | None = None
    model_inputs: dict[str, torch.Tensor] | None = None
    generated_mask: torch.Tensor | None = None

    @property
    def turns(self) -> list[str]:
        """The assistant turns' texts, in order (what COOPER's CPR reward reads)."""
        return [step.text for step in self.steps if step.kind == "text"]

    @property
    def maps(self) -> list[tuple[str, torch.Tensor]]:
        """(modality, map) of every generated map, in order."""
        return [(step.modality, step.map) for step in self.steps if step.kind == "map"]

    @property
    def generated_tokens(self) -> int:
        """Tokens the model sampled (forced turns excluded)."""
        return sum(step.tokens for step in self.steps if step.kind == "text" and not step.forced)

    # ------------------------------------------------------------------ JSON
    def to_dict(self, embed_images: bool = False) -> dict[str, Any]:
        return {
            "question": self.question,
            "policy": self.policy,
            "answer": self.answer,
            "raw_answer": self.raw_answer,
            "stop_reason": self.stop_reason,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "total_tokens": self.total_tokens,
            "seconds": round(self.seconds, 6),
            "seed": self.seed,
            "image": {"size": list(self.image.size)}
            | ({"png_base64": png_base64(self.image)} if embed_images else {}),
            "steps": [step.to_dict(embed_images) for step in self.steps],
        }

    def to_json(
        self, path: str | Path | None = None, *, embed_images: bool = False, indent: int | None = 2
    ) -> str:
        """The trace as JSON (maps summarised; images as base64 PNG with `embed_images`); also
        written to `path` when given."""
        text = json.dumps(self.to_dict(embed_images), indent=indent)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    # ------------------------------------------------------------------ pictures
    def to_html(self, path: str | Path) -> Path:
        """Write a self-contained HTML page of the trace (images inline) to `path`."""
        return trace_to_html(self, path)

    def to_image(self, width: int = 720, image_height: int = 160) -> Image.Image:
        """The trace as one picture: question and input image, each turn's text, each inserted
        image with its prompt, and the answer, top to bottom."""
        return trace_to_image(self, width, image_height)
