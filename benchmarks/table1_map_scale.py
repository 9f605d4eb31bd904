"""How much of a Table 1 model's depth error on each object is its map's overall scale?

A depth map can be wrong about an object in two ways: the whole map drawn too near or too far (one
factor for every pixel: its scale), or the object drawn out of place in a map of the right scale.
The heads' SILog loss (``silog_lambda`` 0.85) forgives most of the first, a reader of metres
forgives none. For the depth maps a trained model's heads draw of the first ``--scenes`` scenes of
the run's held-out set (``--split test``) or of stage 1's training set (``--split stage1``: does the
error generalise, or do the heads miss their own training scenes as much?), at the heads' output
size, the true maps resized to it (nearest), this measures, in log metres:

- ``room``: per map, the median over its room (pixels of no object, true depth > 0) of
  log(drawn / true): the map's scale error;
- ``object``: per object the map shows, log(median drawn / median true) over its pixels;
- ``object - room``: the object's error with its map's scale error taken out, and the correlation
  of the two;

and what a reader of the maps could answer to "how far is the object?" (`object_distance_mra`,
percent): the maps as drawn, each rescaled by its room's true scale (an oracle), and the true maps.
Prints a markdown table, a row per seed and stage (``stage1``: after stage 1; ``grpo``: the arm's
final model).

    python benchmarks/table1_map_scale.py RUN_DIR --seeds 0 1 [--stages stage1 grpo] [--scenes 200] [--split stage1]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from cooper_lib.data.synthetic.loader import SceneDataset
from cooper_lib.data.synthetic.scene import SpatialScene
from cooper_lib.experiments.table1.evaluation import object_distance_mra
from cooper_lib.images import open_image
from cooper_lib.loading import load_trained_folder
from cooper_lib.training.collators import resize_map

COLUMNS = {
    "room_sd": "room sd",
    "object_sd": "object sd",
    "object_less_room_sd": "object - room sd",
    "correlation": "corr",
    "read_off": "read off",
    "read_off_rescaled": "read off, rescaled",
    "read_off_true": "true maps",
}


def scale_errors(
    pred: torch.Tensor, true: torch.Tensor, scenes: Sequence[SpatialScene]
) -> tuple[list[float | None], list[tuple[float, float | None]]]:
    """Log-scale errors of depth maps `pred` against `true` ([n, h, w] metres, the true maps 0 where
    nothing is), one scene per map: the room's error of each map (None when the map shows no room
    pixel) and, for every object a map shows with a true depth, (its error, its map's room error)."""
    rooms: list[float | None] = []
    objects: list[tuple[float, float | None]] = []
    for drawn, depth, scene in zip(pred, true, scenes, strict=True):
        instance = resize_map(scene.instance, tuple(depth.shape))
        room = (depth > 0) & (instance == 0)
        error = (
            (drawn[room].clamp_min(1e-3).log() - depth[room].log()).median().item() if room.any() else None
        )
        rooms.append(error)
        for obj in scene.objects:
            mask = (instance == obj.instance_id) & (depth > 0)
            if mask.any():
                ratio = drawn[mask].median().clamp_min(1e-3) / depth[mask].median()
                objects.append((ratio.log().item(), error))
    return rooms, objects


def summary(pred: torch.Tensor, true: torch.Tensor, scenes: Sequence[SpatialScene]) -> dict[str, float]:
    """`COLUMNS` of maps `pred` against `true` (see the module docstring); sds over the maps and
    objects that show a room, read-offs in percent."""
    rooms, objects = scale_errors(pred, true, scenes)
    pairs = torch.tensor([pair for pair in objects if pair[1] is not None], dtype=torch.float64)
    scale = torch.tensor([0.0 if r is None else r for r in rooms], dtype=pred.dtype).exp().view(-1, 1, 1)
    return {
        "room_sd": torch.tensor([r for r in rooms if r is not None], dtype=torch.float64).std().item(),
        "object_sd": pairs[:, 0].std().item(),
        "object_less_room_sd": (pairs[:, 0] - pairs[:, 1]).std().item(),
        "correlation": torch.corrcoef(pairs.T)[0, 1].item(),
        "read_off": 100 * object_distance_mra(pred, scenes),
        "read_off_rescaled": 100 * object_distance_mra(pred / scale, scenes),
        "read_off_true": 100 * object_distance_mra(true, scenes),
    }


def map_scale(run: Path, seed: int, stage: str, scenes: int, split: str = "test") -> dict[str, float]:
    """`summary` of the depth maps seed `seed`'s COOPER model after `stage` draws of the first
    `scenes` scenes of the `split` dataset (``test``: held out; ``stage1``: the scenes stage 1
    trains on) of finished table1 run `run`."""
    dataset = SceneDataset(run / "data" / split)
    picked = range(min(scenes, len(dataset)))
    images = [open_image(dataset.root / dataset.scenes[i]["files"]["images"], "scene image") for i in picked]
    model = load_trained_folder(run / f"seed-{seed}" / "cooper" / "train" / stage / "final").eval()
    with torch.no_grad():
        pred = torch.cat(
            [model.perceive(images[k : k + 50], "depth").float().cpu() for k in range(0, len(images), 50)]
        )
    drawn = [dataset[i] for i in picked]
    true = torch.stack([resize_map(scene.depth, tuple(pred.shape[-2:])) for scene in drawn]).float()
    return summary(pred, true, drawn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "run", type=Path, help="a finished table1 run folder (holds config.json, data/, seed-N/)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds whose COOPER arm is probed")
    parser.add_argument(
        "--stages",
        nargs="+",
        choices=["stage1", "sft", "grpo"],
        default=["stage1", "grpo"],
        help="the COOPER arm's stages whose final models draw the maps (default: stage1 grpo)",
    )
    parser.add_argument("--scenes", type=int, default=200, help="scenes drawn (default 200)")
    parser.add_argument(
        "--split",
        choices=["test", "stage1"],
        default="test",
        help="the run's scenes drawn: held out (test, default) or stage 1's training scenes (stage1)",
    )
    args = parser.parse_args()
    print("| seed | stage | " + " | ".join(COLUMNS.values()) + " |")
    print("| --- " * (len(COLUMNS) + 2) + "|")
    for seed in args.seeds:
        for stage in args.stages:
            row = map_scale(args.run, seed, stage, args.scenes, args.split)
            sds = [f"{row[k]:.3f}" for k in ("room_sd", "object_sd", "object_less_room_sd")]
            rest = [f"{row['correlation']:.2f}"] + [
                f"{row[k]:.1f}" for k in ("read_off", "read_off_rescaled", "read_off_true")
            ]
            print(f"| {seed} | {stage} | " + " | ".join(sds + rest) + " |")


if __name__ == "__main__":
    main()
