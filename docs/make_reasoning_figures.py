"""Make the picture of docs/reasoning.md with the library: one interleaved-reasoning trace.

A tiny random Qwen2-VL gets depth and segmentation heads, trained for a few hundred stage-1 steps
on the synthetic world (`cooper_lib.demo.train`), so the maps it generates are real predictions.
Its language model is random and writes noise, so the *text* of the two turns is forced through a
logits processor: it is the synthetic SFT trace's text for the same scene and question. Everything
else (stopping at the closing tag, the query block, the depth head, the Spectral rendering, the
insertion through the processor, the KV cache, the trace) is the library running as in use.

Writes docs/img/reasoning_trace.png and prints the trace as JSON. Run from the repository root:

    python docs/make_reasoning_figures.py            # about 300 training steps, a few minutes on CPU
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import LogitsProcessor

from cooper_lib import add_spatial_heads
from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.data.synthetic import SEMANTIC_CLASSES, SceneConfig, make_qa, make_traces, render_scenes
from cooper_lib.demo import DemoConfig, train
from cooper_lib.modalities import to_pil
from cooper_lib.reasoning import InterleavedReasoner

OUT = Path(__file__).parent / "img"
SEED = 7


class ForcedText(LogitsProcessor):
    """Forces the tokens of `texts`, in order, one per sampling call (a single rollout)."""

    def __init__(self, tokenizer, texts: list[str]) -> None:
        self.ids = [i for text in texts for i in tokenizer.encode(text, add_special_tokens=False)]
        self.eos = tokenizer.eos_token_id
        self.calls = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        token = self.ids[self.calls] if self.calls < len(self.ids) else self.eos
        self.calls += 1
        forced = torch.full_like(scores, -float("inf"))
        forced[:, token] = 0.0
        return forced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="stage-1 training steps of the heads")
    args = parser.parse_args()
    torch.manual_seed(SEED)
    OUT.mkdir(exist_ok=True)
    config = DemoConfig(steps=args.steps, seed=SEED)
    scene_config = SceneConfig(width=config.image_size, height=config.image_size)
    scenes = render_scenes(config.train_scenes, seed=SEED, config=scene_config)
    backbone, processor = build_tiny_backbone("qwen2_vl", seed=SEED)
    model = add_spatial_heads(
        backbone,
        processor,
        ("depth", "segmentation"),
        num_classes=len(SEMANTIC_CLASSES),
        output_size=(config.map_size, config.map_size),
        head_width=config.head_width,
    )
    train(model, scenes, config)

    (scene,) = render_scenes(1, seed=SEED + 1_000_003, config=SceneConfig(width=192, height=192))
    question = next(q for q in make_qa(scene, 0) if q.modality == "depth")
    (record,) = make_traces(scene, [question], 0, tool_ratio=1.0)
    turns = [item.value for item in record.items if item.role == "assistant"]
    tokenizer = model.adapter.tokenizer(processor)
    reasoner = InterleavedReasoner(model, logits_processors=[ForcedText(tokenizer, turns)])
    trace = reasoner.run(to_pil(scene.rgb), question.prompt)
    trace.to_image(width=760).save(OUT / "reasoning_trace.png")
    print(trace.to_json())


if __name__ == "__main__":
    main()
