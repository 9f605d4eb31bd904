"""Which part of a depth map a trained Table 1 COOPER model reads: its distance answers shown its
own depth map, the true one, or splices of the two.

For each seed of a finished `cooper-lib experiment table1` run, the COOPER arm's final model
answers the held-out distance questions (greedy, its adaptive policy, as the experiment evaluates
it) with each depth map it asks for replaced through the reasoner's ``map_override``:

- ``own``: nothing replaced (the experiment's main condition; its figure comes back);
- ``own, smoothed``: its own map upsampled in metres (bilinear) to the photograph's size before it
  is coloured, instead of the reasoner's nearest resize of the coloured heads' output;
- ``true``: the scene's true map (the experiment's "true" condition, depth only);
- ``object true``: its own map (smoothed), the asked object's pixels from the true map;
- ``object own``: the true map, the asked object's pixels from its own map (smoothed);
- ``object flat``: its own map (smoothed), the asked object's pixels all set to their median: the
  depth its map puts the object at, without the spread of its pixels;
- ``own, rescaled``: its own map (smoothed) times the one factor that puts its room (the pixels of
  no object) at the true map's median scale: the map with its overall scale error taken out, the
  part of its error that SILog (``silog_lambda`` 0.85) weighs least.

Segmentation maps stay its own. Prints a markdown table, a row per seed and the mean.

    python benchmarks/table1_splice.py RUN_DIR --seeds 0 1 [--conditions own own_rescaled]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from cooper_lib.experiments.table1.config import Table1Config
from cooper_lib.experiments.table1.evaluation import SceneMaps, answer, held_out_benchmark
from cooper_lib.loading import load_trained_folder

CONDITIONS = {
    "own": "own",
    "own_smoothed": "own, smoothed",
    "true": "true",
    "object_true": "object true",
    "object_own": "object own",
    "object_flat": "object flat",
    "own_rescaled": "own, rescaled",
}


def _override(condition: str, maps: SceneMaps, batch: list) -> object:
    def shown(modality: str, row: int, generated: torch.Tensor) -> torch.Tensor | None:
        if modality != "depth" or condition == "own":
            return None
        item = batch[row]
        true = maps.shown(item, "depth")
        if condition == "true":
            return true
        own = F.interpolate(
            generated.reshape(1, 1, *generated.shape[-2:]).float(),
            size=true.shape[-2:],
            mode="bilinear",
            align_corners=False,
        ).reshape(true.shape)
        asked = torch.isin(maps.scene(item).instance, torch.tensor(item.extra["objects"])).reshape(true.shape)
        if condition == "own_smoothed":
            return own
        if condition == "object_true":
            return torch.where(asked, true, own)
        if condition == "object_flat":
            return torch.where(asked, own[asked].median(), own) if asked.any() else own
        if condition == "own_rescaled":
            depth = maps.true_map(item, "depth").reshape(true.shape)
            room = (depth > 0) & (maps.scene(item).instance.reshape(true.shape) == 0)
            if not room.any():
                return own
            return own * (depth[room].log() - own[room].clamp_min(1e-3).log()).median().exp()
        return torch.where(asked, own, true)

    return shown


def splice_scores(run: Path, seed: int, conditions: list[str] | None = None) -> dict[str, float]:
    """Distance accuracy (percent) of seed `seed`'s COOPER model under each of `conditions`
    (default: every one of `CONDITIONS`)."""
    config = Table1Config.from_dict(json.loads((run / "config.json").read_text()))
    model = load_trained_folder(run / f"seed-{seed}" / "cooper" / "train" / "grpo" / "final").eval()
    benchmark = held_out_benchmark(run / "data" / "test" / "records.jsonl")
    items = [item for item in benchmark.items if item.category == "distance_camera"]
    maps = SceneMaps(benchmark, config.depth_display_range[1])
    scores = {}
    for condition in conditions or list(CONDITIONS):
        with torch.no_grad():
            records = answer(
                model,
                benchmark,
                config,
                "adaptive",
                "generated",
                items=items,
                shown=lambda batch, condition=condition: _override(condition, maps, batch),
            )
        scores[condition] = 100 * sum(r["score"] for r in records) / len(records)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "run", type=Path, help="a finished table1 run folder (holds config.json, data/, seed-N/)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds whose COOPER arm is probed")
    parser.add_argument(
        "--conditions",
        nargs="+",
        choices=list(CONDITIONS),
        default=list(CONDITIONS),
        help="the conditions to score (default: all)",
    )
    args = parser.parse_args()
    rows = {seed: splice_scores(args.run, seed, args.conditions) for seed in args.seeds}
    print("| seed | " + " | ".join(CONDITIONS[c] for c in args.conditions) + " |")
    print("| --- " * (len(args.conditions) + 1) + "|")
    for seed, scores in rows.items():
        print(f"| {seed} | " + " | ".join(f"{scores[c]:.1f}" for c in args.conditions) + " |")
    means = {c: sum(r[c] for r in rows.values()) / len(rows) for c in args.conditions}
    print("| mean | " + " | ".join(f"{means[c]:.1f}" for c in args.conditions) + " |")


if __name__ == "__main__":
    main()
