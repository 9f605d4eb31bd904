"""Where the Table 1 experiment's depth maps lose the photo: one data set, one budget, several readers.

Every row trains a depth reader from scratch on the experiment's scenes (`EXPERIMENT_SCENE`, train
split) with the same loss (`DenseHead`'s SILog on 16 x 16 maps), optimiser (AdamW, ``--lr``, 10 %
linear warm-up), batch (16) and steps, and scores held-out test-split scenes as the experiment's
report does (`evaluation.depth_scores`: AbsRel, AbsRel on the objects' pixels, delta1):

- ``fixed``: no reader, the training scenes' per-pixel median depth (the report's "fixed map" row);
- ``cnn``: a four-block convolutional net on the 64 px pixels (what the data allows at this budget);
- ``tower``: the experiment backbone's vision tower alone, `DenseHead` on its 16 merged tokens;
- ``library``: `SpatialModel` as stage 1 trains it (`perception_inputs`: photo, COOPER's tagged
  instruction, a block of learned queries; the head reads the queries' last states), with
  the experiment's 2 x 2 queries (``library-4x4``: 4 x 4); ``library-seeded`` and
  ``library-seeded-4x4``: the same with ``query_source="image"`` (each query starts from its cell
  of the photo's visual tokens, `cooper_lib.query_seeds`);
- ``mixer-learned``: the vision tower's tokens, 35 learned text slots (the instruction's length)
  and 16 learned queries through a plain two-layer causal transformer with learned absolute
  positions; the head reads the queries;
- ``mixer-seeded``: the same, each query starting from its image cell's token.

The rows isolate the step the maps fail at: if ``tower`` and ``mixer-seeded`` draw maps and
``library`` and ``mixer-learned`` draw the fixed map, learned queries do not learn to gather the
image (a plain transformer with absolute positions fails the same way, so it is not M-RoPE or the
instruction text). Run:

    PYTHONPATH=src python benchmarks/query_route.py [--scenes 1000] [--steps 600] [--rows cnn,tower,...]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cooper_lib.backbones.tiny import build_from_spec
from cooper_lib.data.synthetic import SceneConfig, SpatialScene, render_scenes
from cooper_lib.experiments.table1.config import EXPERIMENT_BACKBONE, EXPERIMENT_SCENE, EXPERIMENT_SPATIAL
from cooper_lib.experiments.table1.evaluation import depth_scores
from cooper_lib.heads.dense import DenseHead
from cooper_lib.images import to_pil
from cooper_lib.modalities import get_modality

SIZE = (16, 16)
BATCH = 16
TEXT_SLOTS = 35  # tokens of COOPER's depth instruction and the chat frame between photo and queries
ROWS = (
    "fixed",
    "cnn",
    "tower",
    "library",
    "library-4x4",
    "library-seeded",
    "library-seeded-4x4",
    "mixer-learned",
    "mixer-seeded",
)


def resized(scenes: list[SpatialScene]) -> tuple[torch.Tensor, torch.Tensor]:
    """True depth [n, 16, 16] (metres, 0 where nothing is) and object pixels, nearest-resized."""
    depth = torch.stack([s.depth.float() for s in scenes])[:, None]
    objects = torch.stack([s.instance for s in scenes])[:, None].float()
    return (
        F.interpolate(depth, size=SIZE, mode="nearest")[:, 0],
        F.interpolate(objects, size=SIZE, mode="nearest")[:, 0] > 0,
    )


class Tower(nn.Module):
    """The experiment backbone's vision tower: photos -> merged tokens [n, 16, H]."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        model, self.processor = build_from_spec(EXPERIMENT_BACKBONE, seed=seed)
        self.visual = model.model.visual
        self.hidden = model.config.text_config.hidden_size

    def pixels(self, scenes: list[SpatialScene]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.processor.image_processor(images=[to_pil(s.rgb) for s in scenes], return_tensors="pt")
        return out["pixel_values"], out["image_grid_thw"]

    def forward(self, pixel_values: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        out = self.visual(pixel_values, grid_thw=grid)
        out = out if torch.is_tensor(out) else out.pooler_output
        return out.reshape(grid.shape[0], -1, out.shape[-1])


class Mixer(nn.Module):
    """Tower tokens, learned text slots and K queries through a plain causal transformer; the
    queries' outputs [n, K, H]. ``seeded``: each query starts from its image cell's token."""

    def __init__(self, tower: Tower, queries: int, seeded: bool) -> None:
        super().__init__()
        width = tower.hidden
        self.tower, self.k, self.seeded = tower, queries, seeded
        length = 16 + TEXT_SLOTS + queries
        self.pos = nn.Parameter(torch.randn(length, width) * 0.02)
        self.text = nn.Parameter(torch.randn(TEXT_SLOTS, width) * 0.02)
        self.queries = nn.Parameter(torch.randn(queries, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, 2, 4 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(length), persistent=False)

    def forward(self, pixel_values: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        tokens = self.tower(pixel_values, grid)
        n, _, width = tokens.shape
        queries = self.queries.expand(n, -1, -1)
        if self.seeded:
            side, cells = int(self.k**0.5), int(tokens.shape[1] ** 0.5)
            image = tokens.transpose(1, 2).reshape(n, width, cells, cells)
            queries = queries + F.adaptive_avg_pool2d(image, side).flatten(2).transpose(1, 2)
        x = torch.cat([tokens, self.text.expand(n, -1, -1), queries], 1) + self.pos
        return self.encoder(x, mask=self.mask, is_causal=True)[:, -self.k :]


def cnn() -> nn.Module:
    def block(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.GELU())

    net = nn.Sequential(
        block(3, 32),
        nn.MaxPool2d(2),
        block(32, 64),
        nn.MaxPool2d(2),
        block(64, 64),
        block(64, 64),
        nn.Conv2d(64, 1, 1),
    )
    nn.init.constant_(net[-1].bias, 1.1)  # log 3 m, as DenseHead's init_depth
    return net


def silog(raw_log_depth: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    return get_modality("depth").dense_loss(
        raw_log_depth, depth, depth_mode="metric", silog_lambda=0.85, dice_weight=1.0
    )


def train(
    params: list[nn.Parameter],
    loss_of: Callable[[list[int]], torch.Tensor],
    predict: Callable[[], torch.Tensor],
    scenes: int,
    steps: int,
    lr: float,
) -> tuple[torch.Tensor, float]:
    """AdamW over `params` for `steps` batches of random training indices; the held-out
    prediction and the last training loss."""
    opt = torch.optim.AdamW(params, lr, weight_decay=0.0)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        loss = loss_of(torch.randint(0, scenes, (BATCH,)).tolist())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return predict().float(), loss.item()


def run_row(
    row: str, train_scenes: list, test_scenes: list, args: argparse.Namespace
) -> tuple[torch.Tensor, float]:
    depth, _ = resized(train_scenes)
    n = len(train_scenes)
    if row == "fixed":
        median = depth.masked_fill(depth <= 0, float("nan")).nanmedian(dim=0).values.nan_to_num(0.0)
        return median.expand(len(test_scenes), *SIZE), float("nan")
    if row == "cnn":
        net = cnn()
        rgb = torch.stack([s.rgb.float() for s in train_scenes])
        test_rgb = torch.stack([s.rgb.float() for s in test_scenes])
        return train(
            list(net.parameters()),
            lambda i: silog(net(rgb[i]), depth[i]),
            lambda: net(test_rgb)[:, 0].exp(),
            n,
            args.steps,
            args.lr,
        )
    if row.startswith("library"):
        return run_library(row, train_scenes, test_scenes, depth, args)
    tower = Tower(args.seed)
    pixels, grid = tower.pixels(train_scenes)
    per_image = pixels.shape[0] // n
    test_pixels, test_grid = tower.pixels(test_scenes)
    reader = tower if row == "tower" else Mixer(tower, 16, seeded=row == "mixer-seeded")
    head = DenseHead(tower.hidden, (4, 4), "depth", SIZE, width=32)

    def states(i: list[int]) -> torch.Tensor:
        return reader(pixels.view(n, per_image, -1)[i].reshape(len(i) * per_image, -1), grid[i])

    return train(
        [*reader.parameters(), *head.parameters()],
        lambda i: head.loss(states(i), depth[i]),
        lambda: head.generate(reader(test_pixels, test_grid)),
        n,
        args.steps,
        args.lr,
    )


def run_library(
    row: str, train_scenes: list, test_scenes: list, depth: torch.Tensor, args: argparse.Namespace
) -> tuple[torch.Tensor, float]:
    from cooper_lib.training.config import ModelConfig
    from cooper_lib.training.weights import build_model

    grid = [4, 4] if row.endswith("4x4") else list(EXPERIMENT_SPATIAL["query_grid"])
    source = "image" if "seeded" in row else "learned"
    spatial = {
        **EXPERIMENT_SPATIAL,
        "modalities": ["depth"],
        "query_grid": grid,
        "query_source": source,
        "output_size": list(SIZE),
    }
    backbone = f"{EXPERIMENT_BACKBONE}&seed={args.seed}"
    model = build_model(ModelConfig(backbone=backbone, spatial=spatial, llm="full", freeze_vision=False))
    model.train()

    def loss_of(i: list[int]) -> torch.Tensor:
        inputs = model.perception_inputs([train_scenes[j].rgb for j in i], "depth")
        return model(**inputs, aux_targets={"depth": depth[i]}).loss

    def predict() -> torch.Tensor:
        model.eval()
        return model.perceive([s.rgb for s in test_scenes], "depth")

    return train(
        [p for p in model.parameters() if p.requires_grad],
        loss_of,
        predict,
        len(train_scenes),
        args.steps,
        args.lr,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenes", type=int, default=1000, help="training scenes (train split, data seed 0)")
    parser.add_argument("--test-scenes", type=int, default=64, help="held-out scenes (test split)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="seed of every row's initial weights and batches")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from {', '.join(ROWS)}")
    args = parser.parse_args()
    rows = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"--rows: unknown {unknown}; expected names from {list(ROWS)}")
    config = SceneConfig(**EXPERIMENT_SCENE)
    train_scenes = render_scenes(args.scenes, 0, config)
    test_scenes = render_scenes(args.test_scenes, 0, config, split="test")
    true, objects = resized(test_scenes)
    print(
        f"{args.scenes} training scenes, {args.test_scenes} held out, {args.steps} steps of {BATCH}, lr {args.lr}"
    )
    print("| reader | AbsRel | AbsRel on objects | delta1 | last training loss | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        torch.manual_seed(args.seed)
        tick = time.perf_counter()
        pred, loss = run_row(row, train_scenes, test_scenes, args)
        scores = depth_scores(pred, true, objects)
        print(
            f"| {row} | {scores['depth_abs_rel']:.3f} | {scores['depth_abs_rel_objects']:.3f} | "
            f"{scores['depth_delta1']:.3f} | {loss:.3f} | {time.perf_counter() - tick:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
