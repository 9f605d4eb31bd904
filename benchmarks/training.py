"""Training throughput and peak memory per stage, and the trainer's overhead over a plain step.

Throughput: optimiser steps of `Stage1Trainer`, `InterleavedSFTTrainer` and `SpatialGRPOTrainer` on a tiny
Qwen2-VL with synthetic data, timed after warm-up steps; samples are maps (stage 1), traces (SFT)
or rollouts (GRPO), tokens are the non-padding tokens of the micro-batches (GRPO: of the rollouts'
whole contexts, prompt and inserted maps included). Peak memory is the kernel's peak RSS during the
timed steps (`memory.PeakRSS`, the whole process: model, optimiser, data), and that peak minus
the RSS before the timed steps.

Overhead: the same records through (a) our path: the collator (rendering, processor, exact label
search, targets) and the `SpatialModel` step (hidden states, fused linear cross-entropy, heads),
and (b) a plain path: the processor on the same texts and images and the backbone's own
``forward(labels=...)`` step on the same tokens and labels. Both decode the records' images on
every step (a real input pipeline must), and both include backward and AdamW. The two alternate, and the median of each is reported.

    python benchmarks/training.py --threads 1        # tiny backbone (hidden 64)
    python benchmarks/training.py --hidden 512 --layers 4 --steps 6
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from memory import PeakRSS  # noqa: E402

SPATIAL = {"num_classes": 7, "output_size": (16, 16), "query_grid": (2, 2), "head_width": 32}


def build(args: argparse.Namespace):
    from cooper_lib import add_spatial_heads
    from cooper_lib.backbones.tiny import build_tiny_backbone

    overrides = {}
    if args.hidden:
        overrides.update(
            hidden_size=args.hidden,
            num_attention_heads=max(2, args.hidden // 64),
            intermediate_size=4 * args.hidden,
        )
    if args.layers:
        overrides["num_hidden_layers"] = args.layers
    torch.manual_seed(0)
    backbone, processor = build_tiny_backbone("qwen2_vl", **overrides)
    return add_spatial_heads(backbone, processor, **SPATIAL)


def data(root: Path) -> dict[str, Path]:
    from cooper_lib.data.synthetic import SceneConfig, write_dataset

    scene = SceneConfig(width=64, height=64)
    return {
        "stage1": write_dataset(root / "stage1", 32, seed=0, stage="stage1", config=scene) / "records.jsonl",
        "sft": write_dataset(root / "sft", 16, seed=1, stage="sft", config=scene) / "records.jsonl",
        "grpo": write_dataset(root / "grpo", 8, seed=2, stage="grpo", config=scene) / "records.jsonl",
    }


def trainer_for(stage: str, args: argparse.Namespace, files: dict[str, Path], out: Path):
    from cooper_lib.training import (
        GRPOConfig,
        InterleavedSFTTrainer,
        ModelConfig,
        OptimConfig,
        RunConfig,
        SFTConfig,
        SpatialGRPOTrainer,
        Stage1Config,
        Stage1Trainer,
    )

    run = RunConfig(
        output_dir=str(out / stage),
        max_steps=args.warmup + args.steps,
        batch_size=args.batch,
        save_every=0,
        progress_bar=False,
    )
    common = {
        "model": ModelConfig(),
        "optim": OptimConfig(lr=1e-4, warmup_steps=0),
        "run": run,
        "data": [str(files[stage])],
    }
    model = build(args)
    if stage == "stage1":
        return Stage1Trainer(model, Stage1Config(**common))
    if stage == "sft":
        return InterleavedSFTTrainer(model, SFTConfig(**common))
    common["run"].batch_size = 1
    config = GRPOConfig(
        **common, num_generations=args.generations, max_new_tokens=args.new_tokens, max_turns=2
    )
    return SpatialGRPOTrainer(model, config)


def throughput(stage: str, args: argparse.Namespace, files: dict[str, Path], out: Path) -> dict[str, float]:
    trainer = trainer_for(stage, args, files, out)
    counted = {"samples": 0, "tokens": 0}
    if stage == "grpo":
        rollouts = trainer.rollouts

        def counting_rollouts(prompts):
            batch = rollouts(prompts)
            counted["samples"] += len(batch.traces)
            counted["tokens"] += sum(t.total_tokens for t in batch.traces)
            return batch

        trainer.rollouts = counting_rollouts
    else:
        collator = trainer.collator

        def counting_collator(records):
            batch = collator(records)
            counted["samples"] += len(records)
            counted["tokens"] += int(batch["attention_mask"].sum())
            return batch

        trainer.collator = counting_collator
    trainer.model.train()
    for _ in range(args.warmup):
        trainer.train_step()
    counted.update(samples=0, tokens=0)
    with PeakRSS() as peak:
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        seconds = time.perf_counter() - start
    return {
        "step_ms": 1000 * seconds / args.steps,
        "samples_s": counted["samples"] / seconds,
        "tokens_s": counted["tokens"] / seconds,
        "peak_mib": peak.peak_kib / 1024,
        "peak_delta_mib": peak.delta_mib,
    }


def overhead(stage: str, args: argparse.Namespace, files: dict[str, Path]) -> dict[str, float]:
    """Median ms of our collator + step against the processor + plain backbone step, same records."""
    from cooper_lib.data.records import load_sft_records, load_stage1_records
    from cooper_lib.training.collators import SFTCollator, Stage1Collator

    model = build(args)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if stage == "sft":
        records = load_sft_records([files["sft"]])[: args.batch]
        collator = SFTCollator(model)
        rendered = [collator.render(r) for r in records]
        texts = [model.adapter.render_chat(model.processor, messages) for messages, *_ in rendered]

        def load_images() -> list:
            return [imgs for _, imgs, *_ in map(collator.render, records)]

    else:
        records = load_stage1_records([files["stage1"]])[: args.batch]
        collator = Stage1Collator(model)
        texts = [  # the prompts `SpatialModel.perception_inputs` renders
            model.adapter.render_chat(
                model.processor,
                [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image"},
                            {"type": "text", "text": model.layout.request_text(r.modality)},
                        ],
                    },
                    {"role": "assistant", "content": model.layout.query_text()},
                ],
                continue_final_message=True,
            )
            for r in records
        ]

        def load_images() -> list:
            return [[r.load_image()] for r in records]

    batch = collator(records)
    labels = (
        batch["labels"] if stage == "sft" else batch["input_ids"]
    )  # stage 1: plain LM loss on every token

    def ours() -> None:
        out = model(**collator(records))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def plain() -> None:
        inputs = model.adapter.build_inputs(model.processor, texts, load_images())
        out = model.backbone(**inputs, labels=labels)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {"ours": [], "plain": []}
    for _ in range(2):  # warm-up
        ours()
        plain()
    for _ in range(args.repeats):
        for name, fn in (("ours", ours), ("plain", plain)):
            start = time.perf_counter()
            fn()
            times[name].append(1000 * (time.perf_counter() - start))
    a, b = statistics.median(times["ours"]), statistics.median(times["plain"])
    return {"ours_ms": a, "plain_ms": b, "overhead": a / b - 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed optimiser steps per stage")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=4, help="maps (stage 1) or traces (SFT) per step")
    parser.add_argument(
        "--generations", type=int, default=4, help="GRPO rollouts per prompt (one prompt per step)"
    )
    parser.add_argument("--new-tokens", type=int, default=16, help="GRPO tokens per turn")
    parser.add_argument("--repeats", type=int, default=9, help="alternating repeats of the overhead timing")
    parser.add_argument(
        "--hidden", type=int, default=0, help="backbone hidden size (0: the tiny default, 64)"
    )
    parser.add_argument("--layers", type=int, default=0, help="backbone layers (0: the tiny default)")
    parser.add_argument(
        "--stages", nargs="+", default=["stage1", "sft", "grpo"], choices=["stage1", "sft", "grpo"]
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = data(root)
        print(
            f"threads={torch.get_num_threads()}  hidden={args.hidden or 64}  layers={args.layers or 'tiny'}"
        )
        print("| stage | step ms | samples/s | tokens/s | peak RSS MiB | peak - RSS before, MiB |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for stage in args.stages:
            r = throughput(stage, args, files, root / "runs")
            print(
                f"| {stage} | {r['step_ms']:.0f} | {r['samples_s']:.2f} | {r['tokens_s']:.0f} "
                f"| {r['peak_mib']:.0f} | {r['peak_delta_mib']:.0f} |"
            )
        print()
        print("| stage | ours: collator + step, ms | plain: processor + backbone step, ms | overhead |")
        print("| --- | ---: | ---: | ---: |")
        for stage in [s for s in args.stages if s != "grpo"]:
            r = overhead(stage, args, files)
            print(f"| {stage} | {r['ours_ms']:.1f} | {r['plain_ms']:.1f} | {100 * r['overhead']:+.1f}% |")


if __name__ == "__main__":
    main()
