"""Does a direct-answer SFT model read the image? A learnability probe for the Table 1 experiment.

Trains the experiment's tiny backbone on direct-answer records of a few question categories (no
system prompt, as `Table1Config` writes them) with a plain AdamW loop over `SFTCollator` batches,
and prints, every ``--eval-every`` steps, the teacher-forced answer accuracy (every labelled token
of the answer turn predicted right) on training records and on held-out test-split scenes, beside
the held-out majority answer. ``--blank`` zeroes every image (the control: no pixel information);
``--base-steps N`` first trains N steps on scene captions, as the experiment's base model does
(``--base-cache FILE`` keeps its weights as safetensors for the next run with the same settings).

``--trace perceive_first`` trains on BAGEL-PE's traces instead (depth, then segmentation maps shown
before the answer; the true maps, as in the experiment's SFT) and scores the held-out answers twice:
with each scene's own maps and with another scene's maps (the perception-use probe, teacher-forced).
``--no-map-loss`` leaves the heads out of the loss; ``--reflection TEXT`` replaces COOPER's
reflection prompt after each map; ``--depth-range 1.5,6`` draws the depth maps over that range; ``--blank-input`` zeroes the question's
image and keeps the maps (can the model read the maps alone?). ``--trace interleaved`` trains on
COOPER's adaptive traces (``--tool-ratio`` of the questions a map helps call its tool; ``--tool-think``
replaces the reasoning before each call); the answer turn alone is scored.

    python benchmarks/table1_probe.py --categories count_colour --scenes 64 --steps 300   # memorisation
    python benchmarks/table1_probe.py --categories all --scenes 1200 --questions 4 --steps 600
    python benchmarks/table1_probe.py --categories colour --scenes 2000 --steps 600 --eval-every 150 \\
        --scene '{"max_objects": 1, "placement_distance": [2.0, 5.0], "object_size": [0.6, 1.2]}'
    python benchmarks/table1_probe.py --categories colour,count_shape,distance_camera,relative_depth \\
        --scenes 1000 --questions 4 --base-steps 1500 --trace perceive_first --steps 400
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import time
import zlib
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cooper_lib.data.records import load_sft_records
from cooper_lib.data.synthetic import CATEGORIES, SceneConfig, write_dataset
from cooper_lib.data.synthetic.files import load_depth
from cooper_lib.experiments.table1.config import EXPERIMENT_BACKBONE, EXPERIMENT_SCENE, EXPERIMENT_SPATIAL
from cooper_lib.experiments.table1.data import PE_FILE, write_perceive_first
from cooper_lib.modalities.depth import DepthCodec
from cooper_lib.model import IGNORE_INDEX
from cooper_lib.training.collators import SFTCollator
from cooper_lib.training.config import ModelConfig
from cooper_lib.training.trainable import configure_trainable
from cooper_lib.training.weights import build_model


def records(root: Path, n: int, split: str, args: argparse.Namespace, categories: list[str]) -> list:
    if not (root / "manifest.json").exists():
        write_dataset(
            root,
            n=n,
            stage="sft",
            tool_ratio=args.tool_ratio if args.trace == "interleaved" else 0.0,
            questions_per_scene=args.questions,
            answer_style=args.answer_style,
            categories=categories,
            split=split,
            overwrite=root.exists(),
            config=SceneConfig(**json.loads(args.scene)),
        )
    source = root / "records.jsonl"
    if args.trace == "perceive_first":
        if not (root / PE_FILE).exists():
            write_perceive_first(source, root / PE_FILE)
        source = root / PE_FILE
    rows = load_sft_records([source])
    codec = None
    if args.depth_range:
        low, high = (float(v) for v in args.depth_range.split(","))
        codec = DepthCodec("spectral", min_depth=low, max_depth=high, out_of_range="clamp")
    for row in rows:
        row.items = [item for item in row.items if item.role != "system"]
        for item in row.items:
            if item.role == "tool" and item.type == "text" and args.reflection is not None:
                item.value = args.reflection
            if item.role == "assistant" and args.tool_think is not None and "</answer>" not in item.value:
                item.value = re.sub(r"<think>.*?</think>", f"<think>{args.tool_think}</think>", item.value)
            if item.role == "tool" and item.modality == "depth" and codec is not None:
                depth = load_depth(root / item.target)
                item.value = codec.encode(torch.where(depth > 0, depth, codec.max_depth))
    return rows


def swap_maps(rows: list, offset: int) -> list:
    """`rows` with every tool-result map replaced by the same modality's map of the first row from
    `offset` places on whose scene differs."""
    maps = [{i.modality: i for i in row.items if i.role == "tool" and i.type == "image"} for row in rows]
    swapped = []
    for index, row in enumerate(rows):
        items = []
        for item in row.items:
            if item.role == "tool" and item.type == "image":
                other = next(
                    j % len(rows)
                    for j in range(index + offset, index + offset + len(rows))
                    if item.modality in maps[j % len(rows)]
                    and rows[j % len(rows)].meta["scene_seed"] != row.meta["scene_seed"]
                )
                item = maps[other][item.modality]
            items.append(item)
        swapped.append(replace(row, items=items))
    return swapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", default="count_colour", help="comma-separated, or 'all'")
    parser.add_argument("--backbone", default=EXPERIMENT_BACKBONE)
    parser.add_argument("--scenes", type=int, default=400, help="training scenes")
    parser.add_argument("--test-scenes", type=int, default=100)
    parser.add_argument("--questions", type=int, default=1, help="questions per scene")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--blank", action="store_true", help="zero every image (control)")
    parser.add_argument(
        "--blank-input", action="store_true", help="zero the question's image, keep the maps (perceive_first)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--answer-style",
        choices=("short", "short_text"),
        default="short_text",
        help="choice questions answered with the letter (short) or the option's text (short_text)",
    )
    parser.add_argument(
        "--scene",
        default=json.dumps(EXPERIMENT_SCENE),
        help="SceneConfig overrides as JSON (default: the experiment's scenes; '{}': SceneConfig())",
    )
    parser.add_argument("--cache", default="/tmp/table1_probe", help="where the datasets are written")
    parser.add_argument(
        "--base-steps",
        type=int,
        default=0,
        help="caption steps before the questions (the experiment's base model)",
    )
    parser.add_argument("--base-scenes", type=int, default=1500, help="scenes of the caption set")
    parser.add_argument(
        "--base-cache", help="safetensors file of the base model's weights (read, or written)"
    )
    parser.add_argument("--trace", choices=("direct", "perceive_first", "interleaved"), default="direct")
    parser.add_argument(
        "--tool-ratio", type=float, default=0.75, help="tool-using share of interleaved traces"
    )
    parser.add_argument("--tool-think", help="replace the reasoning before every tool call with this text")
    parser.add_argument("--no-map-loss", action="store_true", help="train no head on the shown maps")
    parser.add_argument("--reflection", help="text after each map (default: COOPER's reflection prompt)")
    parser.add_argument(
        "--depth-range",
        help="LOW,HIGH metres the shown depth maps spread over (default: the library's 0-20 m)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = random.Random(0)
    categories = list(CATEGORIES) if args.categories == "all" else args.categories.split(",")
    scene_tag = "".join(ch for ch in args.scene if ch.isalnum() or ch in ".,") + args.answer_style
    named = (
        "-".join(categories)
        if len(categories) < 4
        else f"{len(categories)}cats-{zlib.crc32(str(categories).encode()):08x}"
    )
    tag = f"{named}-q{args.questions}-{scene_tag}"
    if args.trace == "interleaved":
        tag += f"-tools{args.tool_ratio:g}"
    train = records(Path(args.cache) / f"{tag}-train-{args.scenes}", args.scenes, "train", args, categories)
    test = records(
        Path(args.cache) / f"{tag}-test-{args.test_scenes}", args.test_scenes, "test", args, categories
    )

    config = ModelConfig(
        backbone=args.backbone, spatial=dict(EXPERIMENT_SPATIAL), llm="full", freeze_vision=False
    )
    model = build_model(config)
    configure_trainable(model, config)
    collator = SFTCollator(model, system_prompt="", supervise_maps=not args.no_map_loss)
    head = model.adapter.output_embeddings()

    def batch_of(rows: list) -> dict:
        batch = collator(rows)
        if args.blank:
            batch["pixel_values"] = torch.zeros_like(batch["pixel_values"])
        if args.blank_input:
            # each record's first image is the question's: zero its patches, keep the maps'
            sizes = batch["image_grid_thw"].prod(-1).tolist()
            per_record = len(sizes) // len(rows)
            start = 0
            for index, size in enumerate(sizes):
                if index % per_record == 0:
                    batch["pixel_values"][start : start + size] = 0
                start += size
        return batch

    @torch.no_grad()
    def accuracy(rows: list) -> dict[str, list[bool]]:
        model.eval()
        per: dict[str, list[bool]] = {}
        for start in range(0, len(rows), 32):
            part = rows[start : start + 32]
            batch = batch_of(part)
            labels = batch.pop("labels")[:, 1:]
            batch.pop("aux_targets", None)
            logits = model.adapter.hidden_states(**batch)[:, :-1] @ head.weight.T
            # the answer turn: the last run of labelled positions (earlier runs are tool calls)
            labelled = labels != IGNORE_INDEX
            last = torch.zeros_like(labelled)
            for r in range(labels.shape[0]):
                where = labelled[r].nonzero().flatten()
                gaps = (where[1:] - where[:-1] > 1).nonzero().flatten()
                first = where[gaps[-1] + 1] if len(gaps) else where[0]
                last[r, first:] = labelled[r, first:]
            right = ((logits.argmax(-1) == labels) | ~last).all(dim=1)
            for row, ok in zip(part, right.tolist(), strict=True):
                per.setdefault(row.meta["category"], []).append(ok)
        model.train()
        return per

    def rate(per: dict[str, list[bool]]) -> float:
        scores = [ok for oks in per.values() for ok in oks]
        return 100 * sum(scores) / len(scores)

    answers = {c: Counter(r.items[-1].value for r in test if r.meta["category"] == c) for c in categories}
    majority = {c: 100 * a.most_common(1)[0][1] / sum(a.values()) for c, a in answers.items() if a}
    overall_majority = 100 * sum(a.most_common(1)[0][1] for a in answers.values() if a) / len(test)
    print(f"{len(train)} training records, {len(test)} held-out; backbone {args.backbone}")
    print(f"held-out majority answer (per category): {overall_majority:.1f} %")
    params = [p for p in model.parameters() if p.requires_grad]
    vision = model.adapter.vision_tower()
    initial = [p.detach().clone() for p in vision.parameters()]

    def fit(rows: list, steps: int, report: bool) -> dict[str, list[bool]]:
        """`steps` AdamW steps over `rows` (lr cosine, 10 % warm-up); the table when `report`."""
        optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
        warmup = max(1, steps // 10)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))),
        )
        order: list[int] = []
        held_out: dict[str, list[bool]] = {}
        tick = time.perf_counter()
        for step in range(1, steps + 1):
            if len(order) < args.batch_size:
                order = list(range(len(rows)))
                rng.shuffle(order)
            loss = model(**batch_of([rows[order.pop()] for _ in range(args.batch_size)])).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            if report and (step % args.eval_every == 0 or step == steps):
                held_out = accuracy(test)
                change = sum(
                    (p - q).abs().mean().item() for p, q in zip(vision.parameters(), initial, strict=True)
                )
                print(
                    f"| {step} | {loss.item():.3f} | {rate(accuracy(rows[: len(test)])):.1f} | "
                    f"{rate(held_out):.1f} | {change:.4f} | {time.perf_counter() - tick:.0f} |",
                    flush=True,
                )
        if not report:
            print(f"captions: {steps} steps, last loss {loss.item():.3f}, {time.perf_counter() - tick:.0f} s")
        return held_out

    if args.base_steps:
        base = Path(args.cache) / f"captions-{args.base_scenes}-{scene_tag}"
        if not (base / "manifest.json").exists():
            write_dataset(
                base,
                n=args.base_scenes,
                seed=2,
                stage="caption",
                overwrite=base.exists(),
                config=SceneConfig(**json.loads(args.scene)),
            )
        cache = Path(args.base_cache) if args.base_cache else None
        if cache is not None and cache.exists():
            model.load_state_dict(load_file(cache), strict=False)
            print(f"base model read from {cache}")
        else:
            fit(load_sft_records([base / "records.jsonl"]), args.base_steps, report=False)
            if cache is not None:
                save_file({k: v.contiguous() for k, v in model.state_dict().items()}, cache)
    print("| step | loss | train acc | held-out acc | vision weight change | wall s |")
    print("| --- | --- | --- | --- | --- | --- |")
    held_out = fit(train, args.steps, report=True)
    if args.trace == "direct":
        print("\n| category | n | held-out acc | majority |\n| --- | --- | --- | --- |")
        for category, oks in sorted(held_out.items()):
            print(f"| {category} | {len(oks)} | {100 * sum(oks) / len(oks):.1f} | {majority[category]:.1f} |")
        return
    swapped = accuracy(swap_maps(test, args.questions))
    print("\n| category | n | own maps | another scene's maps | majority |\n| --- | --- | --- | --- | --- |")
    for category, oks in sorted(held_out.items()):
        other = swapped[category]
        print(
            f"| {category} | {len(oks)} | {100 * sum(oks) / len(oks):.1f} | "
            f"{100 * sum(other) / len(other):.1f} | {majority[category]:.1f} |"
        )
    print(f"| overall | {len(test)} | {rate(held_out):.1f} | {rate(swapped):.1f} | {overall_majority:.1f} |")


if __name__ == "__main__":
    main()
