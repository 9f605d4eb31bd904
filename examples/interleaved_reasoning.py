"""Interleaved reasoning: think, call a perception tool, look at the generated map, answer.

With an untrained tiny backbone the text is noise, so this example steers the first turn into a
depth tool call with a logits processor (as the tests do) to show the whole loop: the reasoner
stops at the closing tool tag, runs the depth head on the query positions, inserts the map as an
image with COOPER's reflection prompt, and continues from the KV cache. Use a trained model and
drop `--scripted` to let the model choose.

    python examples/interleaved_reasoning.py --out trace.html
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import LogitsProcessor

from cooper_lib import InterleavedReasoner, add_spatial_heads
from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.data.synthetic import render_scenes

TOOL_TURN = (
    "<think>The answer depends on distance.</think><depth-estimation>Estimate the depth.</depth-estimation>"
)
ANSWER_TURN = "<think>The left object is darker, so nearer.</think><answer>Left. \\boxed{A}</answer>"


class ForceText(LogitsProcessor):
    """Makes greedy decoding write the token ids of `turns`, one turn after another, then EOS."""

    def __init__(self, tokenizer, turns: list[str]) -> None:
        self.script = [t for turn in turns for t in tokenizer.encode(turn, add_special_tokens=False)]
        self.eos = tokenizer.eos_token_id
        self.step = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        token = self.script[self.step] if self.step < len(self.script) else self.eos
        self.step += 1
        forced = torch.full_like(scores, float("-inf"))
        forced[:, token] = 0.0
        return forced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("trace.html"))
    parser.add_argument("--scripted", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()

    backbone, processor = build_tiny_backbone("qwen2_vl")
    model = add_spatial_heads(backbone, processor, output_size=(32, 32), num_classes=7).eval()
    processors = [ForceText(processor.tokenizer, [TOOL_TURN, ANSWER_TURN])] if args.scripted else []
    reasoner = InterleavedReasoner(model, logits_processors=processors, max_new_tokens_per_turn=64)
    scene = render_scenes(1, seed=3)[0]
    trace = reasoner.run(scene.rgb, "Which object is closer to the camera? A. the left one B. the right one")
    for step in trace.steps:
        print(f"{step.kind:>9}: {step.text or step.modality or ''}"[:100])
    print(f"answer: {trace.answer!r} ({trace.stop_reason}), {trace.total_tokens} tokens in the context")
    print(f"wrote {trace.to_html(args.out)}")


if __name__ == "__main__":
    main()
