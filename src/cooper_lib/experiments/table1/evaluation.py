"""Scoring an arm: answers under each map condition, the priors of the benchmark, map quality.

Map conditions (``map_override`` of `InterleavedReasoner`):

- ``generated``: the maps the model's heads generate (the arm as it is);
- ``other_scene``: every map replaced by the true map of another test scene (the scene of the
  question half the benchmark away), the probe of whether answers depend on the map at all;
- ``true``: every map replaced by the scene's true map.

`map_elasticity` asks the finer question the swap cannot: do the metres of an answer follow the
map? The true depth map is shown with its depths times s, over the whole map or over the asked
objects alone, and the answers to the questions read in metres off a depth map are compared with
those given the unscaled map. A reader that takes the map's overall scale follows the first; only
one that finds the asked object in the map follows the second.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cooper_lib.config import SpatialConfig
from cooper_lib.data.answers import mean_relative_accuracy
from cooper_lib.data.synthetic import shown_depth
from cooper_lib.data.synthetic.loader import SceneDataset
from cooper_lib.data.synthetic.scene import SpatialScene
from cooper_lib.eval.benchmarks import BenchmarkItem
from cooper_lib.eval.runner import prediction_text, tools_called
from cooper_lib.eval.synthetic_bench import SyntheticBenchmark, load_synthetic
from cooper_lib.experiments.table1.config import Table1Config
from cooper_lib.modalities import get_modality
from cooper_lib.modalities.depth import DISPLAY_RANGE
from cooper_lib.modalities.depth_metrics import depth_metrics
from cooper_lib.model import SpatialModel
from cooper_lib.reasoning.reasoner import InterleavedReasoner
from cooper_lib.training.collators import resize_map

CONDITIONS = ("generated", "other_scene", "true")

#: The factors the true depth map is scaled by in `map_elasticity`: objects stand 2-5.5 m away
#: in the experiment's scenes, so 1.25 keeps them short of the display's far end (7 m).
ELASTICITY_SCALES = (0.8, 1.25)

#: What `map_elasticity` scales: every depth of the map, or the asked objects' pixels alone.
ELASTICITY_REGIONS = ("map", "object")

_SCENE_MAPS = {"depth": "depth", "segmentation": "semantic"}


def held_out_benchmark(test_set: Path) -> SyntheticBenchmark:
    """The held-out benchmark: the ``test`` set `prepare_data` wrote (test-split scenes, short
    answers, the configured categories)."""
    return load_synthetic(Path(test_set).parent)


class SceneMaps:
    """The true maps of a benchmark's scenes, read from its dataset folder's own files (the
    scenes its images show, whatever `SceneConfig` drew them), each scene read once. `far`: the
    far end of the depth display range, where background pixels are shown (`shown`)."""

    def __init__(self, benchmark: SyntheticBenchmark, far: float = DISPLAY_RANGE[1]) -> None:
        source = Path(benchmark.meta["source"])
        if not (source / "scenes.jsonl").is_file():
            raise ValueError(
                f"benchmark: expected one read from a dataset folder with scenes.jsonl (write_dataset), "
                f"got source {benchmark.meta['source']!r}"
            )
        self.scenes = SceneDataset(source)
        self.far = far
        self._read: dict[int, SpatialScene] = {}

    def scene(self, item: BenchmarkItem) -> SpatialScene:
        """The scene `item` asks about (ValueError when the file's seed is not the question's)."""
        index = int(item.extra["scene"])
        if index not in self._read:
            scene = self.scenes[index]
            if scene.seed != int(item.extra["scene_seed"]):
                raise ValueError(
                    f"item {item.id!r}: scene {index} of {self.scenes.root} has seed {scene.seed}, "
                    f"the question names {item.extra['scene_seed']}"
                )
            self._read[index] = scene
        return self._read[index]

    def true_map(self, item: BenchmarkItem, modality: str) -> torch.Tensor:
        """The true map of `item`'s scene (depth in metres, 0 where nothing is; class ids)."""
        return getattr(self.scene(item), _SCENE_MAPS[modality])

    def shown(self, item: BenchmarkItem, modality: str) -> torch.Tensor:
        """The true map as the SFT traces showed it: background depth at the far end of the
        display range (`cooper_lib.data.synthetic.shown_depth`), not at 0 m."""
        if modality != "depth":
            return self.true_map(item, modality)
        return shown_depth(self.scene(item), self.far)


def _override(
    condition: str,
    maps: SceneMaps,
    batch: Sequence[BenchmarkItem],
    others: Sequence[BenchmarkItem],
    depth_scale: float = 1.0,
    region: str = "map",
) -> Callable | None:
    if condition == "generated":
        return None
    source = batch if condition == "true" else others

    def shown(modality: str, row: int, generated: torch.Tensor) -> torch.Tensor:
        item = source[row]
        picture = maps.shown(item, modality)
        if modality != "depth" or depth_scale == 1.0:
            return picture
        if region == "object":
            asked = torch.isin(maps.scene(item).instance, torch.tensor(item.extra["objects"]))
            return torch.where(asked, picture * depth_scale, picture).clamp(max=maps.far)
        return (picture * depth_scale).clamp(max=maps.far)

    return shown


def answer(
    model: SpatialModel,
    benchmark: SyntheticBenchmark,
    config: Table1Config,
    policy: str,
    condition: str,
    *,
    items: Sequence[BenchmarkItem] | None = None,
    depth_scale: float = 1.0,
    region: str = "map",
    shown: Callable[[Sequence[BenchmarkItem]], Callable | None] | None = None,
) -> list[dict[str, Any]]:
    """Per-item records (id, category, prediction, score, tools) of the model answering every
    question, or `items` only; `depth_scale` multiplies the depths of the maps a condition shows,
    over the whole map or, `region` ``"object"``, over the pixels of the objects each item asks about.
    `shown`, for probes of other maps: given a batch of items, the reasoner's ``map_override`` for
    it, in place of the condition's (`condition` ``"generated"`` with it)."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition: expected one of {CONDITIONS}, got {condition!r}")
    if region not in ELASTICITY_REGIONS:
        raise ValueError(f"region: expected one of {ELASTICITY_REGIONS}, got {region!r}")
    if depth_scale != 1.0 and condition == "generated":
        raise ValueError("depth_scale: scales the maps a condition shows; 'generated' shows none")
    if shown is not None and condition != "generated":
        raise ValueError(f"shown: replaces the maps of condition 'generated' only, got {condition!r}")
    items = list(benchmark.items if items is None else items)
    half = len(items) // 2
    other = _other_scene_items(items, half)
    maps = SceneMaps(benchmark, config.depth_display_range[1])
    reasoner = InterleavedReasoner(
        model, policy=policy, max_new_tokens_per_turn=config.max_new_tokens, **config.reasoner_prompts()
    )
    records = []
    for start in range(0, len(items), config.eval_batch_size):
        batch = items[start : start + config.eval_batch_size]
        reasoner.map_override = (
            shown(batch)
            if shown is not None
            else _override(condition, maps, batch, other[start : start + len(batch)], depth_scale, region)
        )
        traces = reasoner.run_batch([item.load_image() for item in batch], [item.question for item in batch])
        for item, trace in zip(batch, traces, strict=True):
            score = benchmark.score(item, prediction_text(trace))
            records.append(
                {
                    "id": item.id,
                    "category": item.category,
                    "prediction": prediction_text(trace),
                    "score": float(score["score"]),
                    "tools": tools_called(trace),
                }
            )
    return records


def metric_items(benchmark: SyntheticBenchmark) -> list[BenchmarkItem]:
    """The questions answered in metres off a depth map (``number`` answers, depth their tool)."""
    return [i for i in benchmark.items if i.answer_type == "number" and i.extra.get("modality") == "depth"]


def elasticity(
    benchmark: SyntheticBenchmark,
    unscaled: Sequence[Mapping[str, Any]],
    scaled: Sequence[Mapping[str, Any]],
    scale: float,
) -> float | None:
    """Mean of ``log(answer_scaled / answer_unscaled) / log(scale)`` over the questions both record
    lists answer with a positive number: 1 when the metres are read off the map, 0 when the map's
    metres are ignored. None when no question has two such answers."""
    if scale <= 0 or scale == 1.0:
        raise ValueError(f"scale: expected a positive factor other than 1, got {scale!r}")
    before = {r["id"]: r["prediction"] for r in unscaled}
    slopes = []
    for record in scaled:
        if record["id"] not in before:
            continue
        item = benchmark.item(record["id"])
        a = benchmark.score(item, record["prediction"])["extracted"]
        b = benchmark.score(item, before[record["id"]])["extracted"]
        if isinstance(a, float) and isinstance(b, float) and a > 0 and b > 0:
            slopes.append(math.log(a / b) / math.log(scale))
    return sum(slopes) / len(slopes) if slopes else None


def map_elasticity(
    model: SpatialModel,
    benchmark: SyntheticBenchmark,
    config: Table1Config,
    policy: str,
    true_records: Sequence[Mapping[str, Any]],
    scales: Sequence[float] = ELASTICITY_SCALES,
) -> dict[str, dict[str, float | None]]:
    """`elasticity` per region (`ELASTICITY_REGIONS`) and scale of the true depth map, against
    `true_records` (the ``true`` condition's answers), over `metric_items` (for ``"object"``, those
    that name their objects); keys are the regions, then the scales as text (JSON keys)."""
    out: dict[str, dict[str, float | None]] = {}
    for region in ELASTICITY_REGIONS:
        items = [i for i in metric_items(benchmark) if region == "map" or i.extra.get("objects")]
        out[region] = {
            str(s): elasticity(
                benchmark,
                true_records,
                answer(model, benchmark, config, policy, "true", items=items, depth_scale=s, region=region),
                s,
            )
            if items
            else None
            for s in scales
        }
    return out


def _other_scene_items(items: list[BenchmarkItem], shift: int) -> list[BenchmarkItem]:
    """For item i, the first item from `shift` on (cyclically) whose scene differs from i's."""
    out = []
    for i, item in enumerate(items):
        for k in range(len(items)):
            candidate = items[(i + max(shift, 1) + k) % len(items)]
            if candidate.extra["scene_seed"] != item.extra["scene_seed"]:
                break
        out.append(candidate)
    return out


def _map_items(benchmark: SyntheticBenchmark, config: Table1Config) -> list[BenchmarkItem]:
    """One question of each of the first ``map_scenes`` test scenes."""
    seen: dict[int, BenchmarkItem] = {}
    for item in benchmark.items:
        seen.setdefault(int(item.extra["scene_seed"]), item)
    return list(seen.values())[: config.map_scenes]


def depth_scores(pred: torch.Tensor, true: torch.Tensor, objects: torch.Tensor) -> dict[str, float]:
    """Scores of depth maps `pred` against `true` ([n, h, w] metres, 0 where nothing is): AbsRel
    and delta1 averaged over the maps (`depth_metrics` of each), and ``depth_abs_rel_objects``, the
    AbsRel over the pixels of objects (`objects`, [n, h, w] bool) of all maps together: the pixels
    a distance or relative-depth question asks about, a small part of each map, which a map right
    about the floor and walls alone scores well on overall (nan when no map shows an object)."""
    metrics = [depth_metrics(p, g, g > 0) for p, g in zip(pred, true, strict=True)]
    on_objects = objects & (true > 0)
    errors = (pred - true).abs()[on_objects] / true[on_objects]
    return {
        "depth_abs_rel": sum(m["abs_rel"] for m in metrics) / len(metrics),
        "depth_delta1": sum(m["delta1"] for m in metrics) / len(metrics),
        "depth_abs_rel_objects": errors.mean().item() if errors.numel() else float("nan"),
    }


def object_distance_mra(pred: torch.Tensor, scenes: Sequence[SpatialScene]) -> float:
    """What a reader of depth maps `pred` ([n, h, w] metres, one per scene) could answer to "how far
    is the object from the camera?": for every object the map shows, the median of the map over the
    object's pixels (its instance mask resized, nearest, to the map's size) taken as its distance and
    scored as the benchmark scores a distance answer (mean relative accuracy against the distance to
    the object's centre). Comparable with a distance question's best fixed answer; even the true map
    scores below 1, since it shows the object's near surface. nan when no map shows an object."""
    scores = []
    for depth, scene in zip(pred, scenes, strict=True):
        for obj in scene.objects:
            distance = object_depth(depth, scene, obj.instance_id)
            if distance is not None:
                scores.append(mean_relative_accuracy(distance, obj.distance))
    return sum(scores) / len(scores) if scores else float("nan")


def object_depth(depth: torch.Tensor, scene: SpatialScene, instance_id: int) -> float | None:
    """The distance a depth map [h, w] (metres) shows for one object of `scene`: the median of the
    map over the object's pixels (its instance mask resized, nearest, to the map's size); None when
    the map at that size shows none of them."""
    pixels = depth[resize_map(scene.instance, tuple(depth.shape[-2:])) == instance_id]
    return float(pixels.median()) if pixels.numel() else None


def _true_depth(
    maps: SceneMaps, items: Sequence[BenchmarkItem], size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """True depth [n, h, w] of the items' scenes and where their objects are, resized (nearest) to `size`."""
    depth = torch.stack([resize_map(maps.true_map(item, "depth"), size) for item in items]).float()
    objects = torch.stack([resize_map(maps.scene(item).instance, size) for item in items]) > 0
    return depth, objects


def map_quality(model: SpatialModel, benchmark: SyntheticBenchmark, config: Table1Config) -> dict[str, float]:
    """`depth_scores`, `object_distance_mra` and segmentation mIoU of the maps the heads generate
    for the first ``map_scenes`` test scenes (targets resized, nearest, to the heads' output size)."""
    items = _map_items(benchmark, config)
    maps = SceneMaps(benchmark)
    images = [item.load_image() for item in items]
    with torch.no_grad():
        depth = model.perceive(images, "depth").float().cpu()
        out = depth_scores(depth, *_true_depth(maps, items, tuple(depth.shape[-2:])))
        out["depth_object_mra"] = object_distance_mra(depth, [maps.scene(item) for item in items])
        seg = model.perceive(images, "segmentation").cpu()
        gts = torch.stack(
            [resize_map(maps.true_map(item, "segmentation"), tuple(seg.shape[-2:])) for item in items]
        )
        num_classes = model.config.num_classes
        out["segmentation_miou"] = get_modality("segmentation").map_metrics(
            seg, gts, num_classes=num_classes
        )["segmentation/miou"]
    return out


def fixed_map_quality(
    train_set: Path, benchmark: SyntheticBenchmark, config: Table1Config
) -> dict[str, float]:
    """`depth_scores` of one fixed depth map, the per-pixel median of the true depth maps of the
    training scenes in dataset folder `train_set` (at the heads' output size), given for every
    test scene `map_quality` scores: the maps' analogue of the best fixed answer. A head that has
    learned the room's layout and not the objects in it scores about as well. Also
    ``true_map_object_mra``: `object_distance_mra` of the scenes' true maps at that size, the most
    a reader of such maps could answer."""
    size = tuple(config.spatial.get("output_size", SpatialConfig().output_size))
    scenes = SceneDataset(train_set)
    train = torch.stack([resize_map(scenes[i].depth, size) for i in range(len(scenes))]).float()
    median = train.masked_fill(train <= 0, float("nan")).nanmedian(dim=0).values.nan_to_num(0.0)
    items = _map_items(benchmark, config)
    maps = SceneMaps(benchmark)
    true, objects = _true_depth(maps, items, size)
    test_scenes = [maps.scene(item) for item in items]
    return {
        **depth_scores(median.expand_as(true), true, objects),
        "depth_object_mra": object_distance_mra(median.expand_as(true), test_scenes),
        "true_map_object_mra": object_distance_mra(true, test_scenes),
    }


def priors(benchmark: SyntheticBenchmark) -> dict[str, dict[str, float]]:
    """Per category (and ``overall``), in percent: ``chance``, the mean score of an answer drawn
    uniformly from the answers of its kind (a choice question's own letters and option texts;
    yes / no; the counts or numbers the category's questions have), and ``best_fixed``, the best
    score one answer per answer kind reaches on the category (a category mixing yes / no and
    choice questions gets one of each; for choice questions the best letter or the best option
    text, e.g. always "red"), chosen on the test items themselves, so no fixed answer does better."""
    groups: dict[str, dict[str, list[BenchmarkItem]]] = {}
    for item in benchmark.items:
        groups.setdefault(item.category, {}).setdefault(item.answer_type, []).append(item)
    out, totals = {}, {"chance": 0.0, "best_fixed": 0.0}
    for category, kinds in sorted(groups.items()):
        chance = best = 0.0
        for items in kinds.values():
            candidates = _candidates(items)
            table = [
                [float(benchmark.score(item, f"\\boxed{{{c}}}")["score"]) for c in candidates]
                for item in items
            ]
            for row, mask in zip(table, [_valid(item, candidates) for item in items], strict=True):
                chance += sum(r for r, ok in zip(row, mask, strict=True) if ok) / sum(mask)
            best += max(sum(row[j] for row in table) for j in range(len(candidates)))
        n = sum(len(items) for items in kinds.values())
        out[category] = {"n": n, "chance": 100 * chance / n, "best_fixed": 100 * best / n}
        totals["chance"] += chance
        totals["best_fixed"] += best
    n = len(benchmark.items)
    out["overall"] = {
        "n": n,
        "chance": 100 * totals["chance"] / n,
        "best_fixed": 100 * totals["best_fixed"] / n,
    }
    return out


def _valid(item: BenchmarkItem, candidates: Sequence[str]) -> list[bool]:
    """Which candidates a question offers (a choice question's own letters and option texts; any
    other answer)."""
    if item.choices:
        letters = [chr(ord("A") + k) for k in range(len(item.choices))]
        return [c in letters or c in item.choices for c in candidates]
    return [True] * len(candidates)


def _candidates(items: Sequence[BenchmarkItem]) -> list[str]:
    letters = sorted({chr(ord("A") + k) for item in items for k in range(len(item.choices))})
    if letters:
        return letters + sorted({choice for item in items for choice in item.choices} - set(letters))
    if items[0].answer_type == "yes_no":
        return ["yes", "no"]
    values = sorted({item.answer for item in items}, key=str)
    return [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
