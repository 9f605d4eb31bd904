"""`cooper-lib demo`: stage-1 training of dense depth and segmentation heads on a tiny backbone.

Everything is made locally: a tiny random backbone with its offline processor, and scenes from the
synthetic spatial world with exact depth and segmentation. The demo measures depth AbsRel /
delta1 and segmentation mIoU on held-out scenes before and after training, and saves image grids
of input / target / prediction plus the trained heads.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from cooper_lib.attach import add_spatial_heads
from cooper_lib.backbones.tiny import build_tiny_backbone, tiny_families
from cooper_lib.data.synthetic import SEMANTIC_CLASSES, SceneConfig, SpatialScene, render_scenes
from cooper_lib.modalities import SegmentationCodec, make_grid
from cooper_lib.modalities.depth_metrics import abs_rel, delta_accuracy
from cooper_lib.modalities.segmentation_metrics import confusion_matrix, mean_iou
from cooper_lib.model import SpatialModel

MODALITIES = ("depth", "segmentation")


@dataclass
class DemoConfig:
    """Settings of the demo; the defaults finish in a few minutes on a 2-core CPU."""

    family: str = "qwen2_vl"
    steps: int = 2000
    batch_size: int = 8
    train_scenes: int = 4000
    eval_scenes: int = 64
    image_size: int = 64
    map_size: int = 32
    head_width: int = 64
    lr: float = 1e-3
    seed: int = 0
    out: str = "demo_out"


@dataclass
class DemoResult:
    """Held-out metrics before and after training, the loss of every step, and the files written."""

    before: dict[str, float]
    after: dict[str, float]
    losses: list[float]
    files: list[Path]


def evaluate(model: SpatialModel, scenes: list[SpatialScene], batch_size: int) -> dict[str, float]:
    """Depth AbsRel and delta1 (metric, no alignment) and segmentation mIoU over `scenes`."""
    model.eval()
    preds: dict[str, list[torch.Tensor]] = {m: [] for m in MODALITIES}
    for start in range(0, len(scenes), batch_size):
        batch = scenes[start : start + batch_size]
        for name in MODALITIES:
            preds[name].append(model.perceive([s.rgb for s in batch], name))
    depth = torch.cat(preds["depth"])
    semantic = torch.cat(preds["segmentation"])
    gt_depth = torch.stack([s.depth for s in scenes])
    gt_semantic = torch.stack([s.semantic for s in scenes])
    valid = gt_depth > 0
    depth = _resize(depth, gt_depth.shape[-2:], "bilinear")
    semantic = _resize(semantic, gt_semantic.shape[-2:], "nearest")
    confmat = confusion_matrix(semantic, gt_semantic, len(SEMANTIC_CLASSES))
    return {
        "depth AbsRel": abs_rel(depth, gt_depth, valid),
        "depth delta1": delta_accuracy(depth, gt_depth, valid, power=1),
        "seg mIoU": mean_iou(confmat),
    }


def train(model: SpatialModel, scenes: list[SpatialScene], config: DemoConfig) -> list[float]:
    """Stage-1 training: each step asks for depth on half the batch and segmentation on the other half."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.steps, pct_start=0.1
    )
    generator = torch.Generator().manual_seed(config.seed)
    losses = []
    bar = tqdm(range(config.steps), desc="stage-1 training", unit="step")
    for _ in bar:
        index = torch.randint(len(scenes), (config.batch_size,), generator=generator).tolist()
        batch = [scenes[i] for i in index]
        half = len(batch) // 2
        names = ["depth"] * half + ["segmentation"] * (len(batch) - half)
        inputs = model.perception_inputs([s.rgb for s in batch], names)
        targets = {
            "depth": torch.stack([s.depth for s in batch[:half]]),
            "segmentation": torch.stack([s.semantic for s in batch[half:]]),
        }
        loss = model(**inputs, aux_targets=targets).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def save_grids(model: SpatialModel, scenes: list[SpatialScene], out: Path) -> list[Path]:
    """PNG grids of input / target / prediction for depth and segmentation."""
    depth = model.perceive([s.rgb for s in scenes], "depth")
    semantic = model.perceive([s.rgb for s in scenes], "segmentation")
    depth_rows = [(s.rgb, s.depth, d) for s, d in zip(scenes, depth, strict=True)]
    seg_rows = [(s.rgb, s.semantic, p) for s, p in zip(scenes, semantic, strict=True)]
    codec = SegmentationCodec(num_classes=len(SEMANTIC_CLASSES), palette="auto")
    paths = [out / "demo_depth.png", out / "demo_segmentation.png"]
    make_grid(depth_rows, "depth", encoding="spectral", min_depth=0.1, max_depth=20.0).save(paths[0])
    make_grid(seg_rows, codec).save(paths[1])
    return paths


def run(config: DemoConfig) -> DemoResult:
    """Run the whole demo: render scenes, attach heads, measure, train, measure, save grids and heads."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    scene_config = SceneConfig(width=config.image_size, height=config.image_size)
    print(f"rendering {config.train_scenes} training and {config.eval_scenes} held-out scenes ...")
    train_scenes = render_scenes(config.train_scenes, seed=config.seed, config=scene_config)
    eval_scenes = render_scenes(config.eval_scenes, seed=config.seed + 1_000_003, config=scene_config)
    backbone, processor = build_tiny_backbone(config.family, seed=config.seed)
    model = add_spatial_heads(
        backbone,
        processor,
        MODALITIES,
        num_classes=len(SEMANTIC_CLASSES),
        output_size=(config.map_size, config.map_size),
        head_width=config.head_width,
        train_backbone=True,  # stage 1 trains the LLM too (COOPER's recipe)
    )
    params = sum(p.numel() for p in model.parameters())
    print(f"tiny {config.family} backbone + depth/segmentation dense heads: {params / 1e6:.2f}M parameters")
    before = evaluate(model, eval_scenes, config.batch_size)
    losses = train(model, train_scenes, config)
    after = evaluate(model, eval_scenes, config.batch_size)
    grids = save_grids(model, eval_scenes[:4], out)
    heads = model.save_pretrained(out / "heads")
    _print_table(before, after)
    print(f"loss: first 20 steps {sum(losses[:20]) / 20:.3f}, last 20 steps {sum(losses[-20:]) / 20:.3f}")
    print(f"saved {', '.join(str(p) for p in grids)} and the heads in {out / 'heads'}")
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return DemoResult(before, after, losses, [*grids, heads])


def _print_table(before: dict[str, float], after: dict[str, float]) -> None:
    print(f"\n{'held-out metric':<16} {'before':>8} {'after':>8}")
    for key in before:
        print(f"{key:<16} {before[key]:>8.3f} {after[key]:>8.3f}")
    print()


def _resize(maps: torch.Tensor, size: torch.Size, mode: str) -> torch.Tensor:
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    resized = torch.nn.functional.interpolate(maps[:, None].float(), size=tuple(size), mode=mode)[:, 0]
    return resized if mode != "nearest" else resized.long()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `cooper-lib demo`."""
    defaults = DemoConfig()
    parser = subparsers.add_parser(
        "demo", help="train dense depth/segmentation heads on a tiny backbone (CPU)"
    )
    parser.add_argument(
        "--family", default=defaults.family, choices=tiny_families(), help="tiny backbone family"
    )
    parser.add_argument("--steps", type=int, default=defaults.steps, help="training steps")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per step")
    parser.add_argument("--train-scenes", type=int, default=defaults.train_scenes, help="training scenes")
    parser.add_argument("--eval-scenes", type=int, default=defaults.eval_scenes, help="held-out scenes")
    parser.add_argument(
        "--image-size", type=int, default=defaults.image_size, help="scene width and height (px)"
    )
    parser.add_argument(
        "--map-size", type=int, default=defaults.map_size, help="side of the generated maps (px)"
    )
    parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate (one-cycle)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of scenes and weights")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (the tiny model's ops are too small to split)",
    )
    parser.add_argument("--out", default=defaults.out, help="output folder for grids and heads")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    positive = ("steps", "batch_size", "train_scenes", "eval_scenes", "image_size", "map_size", "threads")
    for name in positive:
        value = getattr(args, name)
        if value < 1:
            raise SystemExit(f"--{name.replace('_', '-')}: expected a positive int, got {value}")
    if args.batch_size < 2:
        raise SystemExit(
            f"--batch-size: expected at least 2 (depth and segmentation halves), got {args.batch_size}"
        )
    torch.set_num_threads(args.threads)
    config = DemoConfig(
        family=args.family,
        steps=args.steps,
        batch_size=args.batch_size,
        train_scenes=args.train_scenes,
        eval_scenes=args.eval_scenes,
        image_size=args.image_size,
        map_size=args.map_size,
        lr=args.lr,
        seed=args.seed,
        out=args.out,
    )
    run(config)
    return 0
