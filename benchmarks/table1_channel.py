"""What could a Table 1 model's own depth maps tell its reader about distance, through its tokens?

A perceiving arm sees a generated depth map again as an image, through the same visual tokens as
the photograph: each token covers a block of the map's cells (4 x 4 of the heads' 16 x 16 with the
preset's 16 tokens an image, 2 x 2 with 64; the map is shown at the photograph's size). For every
distance question of a finished (or partly finished) `cooper-lib experiment table1` run's test set
("how far is the blue box from the camera?"), this script reads the asked object's distance off
the depth map of its scene (the median of the map over the object's pixels, its instance mask at
the map's size) and scores the reading as the benchmark scores an answer (`benchmark.score`: mean
relative accuracy), three ways:

- at the heads' size;
- with each block of cells one visual token covers replaced by its mean: a crude model of what a
  token keeps (its linear patch embedding sees every pixel of the block), indicative, not a bound;
- that reading averaged with the QA-only arm's answer to the same question: what a reader that
  weighed map and photograph equally would score, above either alone where their errors differ.

Rows: the true map as the SFT traces show it, and every trained map head of the seed (each arm's
stage-1 model and the model it finished with); the heading gives the questions' chance and best
fixed answer, and below the table, what each finished arm answered to the same questions under
each evaluation condition. Takes about half a minute a seed on a 2-core CPU.

    python benchmarks/table1_channel.py table1-full --seed 0
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from cooper_lib.data.synthetic import shown_depth
from cooper_lib.data.synthetic.scene import SpatialScene
from cooper_lib.eval.benchmarks import BenchmarkItem
from cooper_lib.eval.synthetic_bench import SyntheticBenchmark
from cooper_lib.experiments.table1.evaluation import SceneMaps, held_out_benchmark, object_depth, priors
from cooper_lib.loading import load_trained_folder
from cooper_lib.modalities.depth import DISPLAY_RANGE
from cooper_lib.model import SpatialModel
from cooper_lib.training.collators import resize_map

CATEGORY = "distance_camera"


def block_mean(depth: torch.Tensor, cells: int) -> torch.Tensor:
    """Depth maps [n, h, w] with every `cells` x `cells` block replaced by its mean."""
    if depth.shape[-1] % cells or depth.shape[-2] % cells:
        raise ValueError(f"cells: expected a divisor of the map size {tuple(depth.shape[-2:])}, got {cells}")
    pooled = F.avg_pool2d(depth[:, None], cells)
    return F.interpolate(pooled, size=tuple(depth.shape[-2:]), mode="nearest")[:, 0]


def cells_per_token(model: SpatialModel, image: object, map_size: int) -> int:
    """How many of the map's cells, along one side, a visual token of `image` covers (the photo's
    visual tokens counted in the model's own perception inputs, a square grid assumed)."""
    ids = model.perception_inputs([image], "depth")["input_ids"]
    side = round(float((ids == model.adapter.image_token_id).sum()) ** 0.5)
    if side < 1 or map_size % side:
        raise ValueError(f"model: a {side} x {side} token grid does not tile the {map_size}-cell map")
    return map_size // side


def map_folders(seed_dir: Path) -> list[Path]:
    """Every trained map head of a seed: the stage-1 model of each arm that has one, and the model
    that arm finished with (its last stage's final folder)."""
    folders = []
    for arm in sorted(p for p in seed_dir.iterdir() if (p / "train" / "stage1" / "final").is_dir()):
        stages = [arm / "train" / stage / "final" for stage in ("stage1", "sft", "grpo")]
        finished = [folder for folder in stages if folder.is_dir()]
        folders += [finished[0]] + ([finished[-1]] if len(finished) > 1 else [])
    return folders


def readings(
    depth: torch.Tensor, scenes: Sequence[SpatialScene], items: Sequence[BenchmarkItem]
) -> list[float | None]:
    """The asked object's distance as each map shows it (`object_depth`; None: none of its pixels)."""
    return [
        object_depth(map_, scene, item.extra["objects"][0])
        for map_, scene, item in zip(depth, scenes, items, strict=True)
    ]


def accuracy(
    benchmark: SyntheticBenchmark, items: Sequence[BenchmarkItem], values: Sequence[float | None]
) -> float:
    """Percent score of `values` (metres, None: no answer) as answers to `items`."""
    scores = [
        benchmark.score(item, f"\\boxed{{{v:.3f}}}")["score"] if v is not None else 0.0
        for item, v in zip(items, values, strict=True)
    ]
    return 100 * sum(scores) / len(scores)


def mean_with(values: Sequence[float | None], others: Sequence[float | None]) -> list[float | None]:
    """Pairwise means, falling back to whichever of the two exists."""
    return [
        (a + b) / 2 if a is not None and b is not None else (a if b is None else b)
        for a, b in zip(values, others, strict=True)
    ]


def arm_answers(seed_dir: Path) -> dict[str, dict[str, dict]]:
    """Each finished arm's records per evaluation condition, by question id."""
    out = {}
    for results in sorted(seed_dir.glob("*/results.json")):
        record = json.loads(results.read_text())
        out[record["arm"]] = {cond: {r["id"]: r for r in rows} for cond, rows in record["conditions"].items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="a finished (or partly finished) table1 run's --out folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    if not (args.out / "config.json").is_file():
        raise SystemExit(f"out: expected a table1 run's --out folder (with config.json), got {args.out}")
    spatial = json.loads((args.out / "config.json").read_text())["spatial"]
    seed_dir = args.out / f"seed-{args.seed}"
    benchmark = held_out_benchmark(args.out / "data" / "test" / "records.jsonl")
    items = [item for item in benchmark.items if item.category == CATEGORY]
    if not items:
        raise SystemExit(f"{args.out}: the test set asks no {CATEGORY} questions")
    maps = SceneMaps(benchmark, (spatial.get("depth_display_range") or DISPLAY_RANGE)[1])
    scenes = [maps.scene(item) for item in items]
    images = [item.load_image() for item in items]
    size = tuple(spatial["output_size"])

    rows: list[tuple[str, torch.Tensor]] = []
    cells = None
    for folder in map_folders(seed_dir):
        model = load_trained_folder(folder).eval()
        cells = cells or cells_per_token(model, images[0], size[0])
        with torch.no_grad():
            rows.append((str(folder.relative_to(seed_dir)), model.perceive(images, "depth").float().cpu()))
    if cells is None:
        raise SystemExit(f"{seed_dir}: no arm with a trained stage-1 model yet")
    true = torch.stack([resize_map(shown_depth(scene, maps.far), size) for scene in scenes]).float()
    rows.insert(0, ("true map, as the traces show it", true))

    answers = arm_answers(seed_dir)
    qa_only = answers.get("qa_only", {}).get("main")
    qa_values = (
        [benchmark.score(item, qa_only[item.id]["prediction"])["extracted"] for item in items]
        if qa_only
        else None
    )
    prior = priors(benchmark)[CATEGORY]
    print(
        f"{args.out}, seed {args.seed}: {len(items)} {CATEGORY} questions (chance {prior['chance']:.1f}, "
        f"best fixed answer {prior['best_fixed']:.1f}); maps {size[0]} x {size[1]}, one visual token over "
        f"{cells} x {cells} cells\n"
    )
    header = f"| depth map read | at {size[0]} x {size[1]} | over each token's {cells} x {cells} cells |"
    print(header + (" the same, averaged with QA-only's answer |" if qa_values else ""))
    print("| --- | --- | --- |" + (" --- |" if qa_values else ""))
    for name, depth in rows:
        per_token = readings(block_mean(depth, cells), scenes, items)
        cols = [
            accuracy(benchmark, items, readings(depth, scenes, items)),
            accuracy(benchmark, items, per_token),
        ]
        if qa_values:
            cols.append(accuracy(benchmark, items, mean_with(per_token, qa_values)))
        print(f"| {name} | " + " | ".join(f"{c:.1f}" for c in cols) + " |")
    print("\nThe arms' answers to the same questions:")
    for arm, conditions in answers.items():
        for condition, records in conditions.items():
            score = 100 * sum(records[item.id]["score"] for item in items) / len(items)
            print(f"- {arm}{'' if condition == 'main' else f', {condition} maps'}: {score:.1f}")


if __name__ == "__main__":
    main()
