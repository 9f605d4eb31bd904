"""Writing synthetic datasets to disk: PNG maps, scene metadata and the records of one stage.

Layout of a dataset folder (all paths in records are relative to it):

    manifest.json          stage, n, seed, split, answer style, SceneConfig, class names, depth scale, record count
    scenes.jsonl           one line per scene: metadata (camera, light, room, objects) and its files
    records.jsonl          the stage's records (`cooper_lib.data.records`)
    images/000000.png      RGB, 8 bit
    depth/000000.png       z-depth, 16 bit, millimetres (0: no depth)
    semantic/000000.png    class ids, 8 bit (`SEMANTIC_CLASSES`)
    instance/000000.png    instance ids, 8 bit (0: no object)
    normals/000000.png     camera-frame normals as (n + 1) / 2, 8 bit
    maps/000000_depth.png, maps/000000_segmentation.png   pseudo-images (SFT; caption: depth, with caption_maps)

The manifest is written last, so a folder without one is an interrupted write.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from cooper_lib.data.records import Stage1Record, write_jsonl
from cooper_lib.data.turns import modality_tags, tool_call

from .captions import caption_record, map_caption_record
from .config import SEMANTIC_CLASSES, SceneConfig
from .files import DEPTH_SCALE, save_depth, save_ids, save_normals, save_rgb
from .qa import AnswerBalance, check_answer_types, make_qa
from .render import SPLITS, iter_scenes
from .scene import SpatialScene
from .traces import SceneFiles, default_codecs, make_traces, pseudo_images

STAGES: tuple[str, ...] = ("stage1", "sft", "grpo", "eval", "caption")
FORMAT = "cooper-lib/synthetic"
FORMAT_VERSION = 1
_FOLDERS = ("images", "depth", "semantic", "instance", "normals")


def _save_scene(root: Path, name: str, scene: SpatialScene) -> dict[str, str]:
    files = {folder: f"{folder}/{name}.png" for folder in _FOLDERS}
    save_rgb(root / files["images"], scene.rgb)
    save_depth(root / files["depth"], scene.depth)
    save_ids(root / files["semantic"], scene.semantic)
    save_ids(root / files["instance"], scene.instance)
    save_normals(root / files["normals"], scene.normals)
    return files


def _stage1_records(name: str, files: dict[str, str]) -> list[Stage1Record]:
    return [
        Stage1Record(
            f"{name}-depth", files["images"], "depth", files["depth"], tool_call("depth"), DEPTH_SCALE
        ),
        Stage1Record(
            f"{name}-segmentation",
            files["images"],
            "segmentation",
            files["semantic"],
            tool_call("segmentation"),
        ),
    ]


def write_dataset(
    root: str | os.PathLike,
    n: int,
    seed: int = 0,
    stage: str = "sft",
    config: SceneConfig | None = None,
    *,
    questions_per_scene: int = 4,
    per_category: int = 1,
    tool_ratio: float = 0.5,
    batch_size: int | None = None,
    progress: bool = False,
    overwrite: bool = False,
    split: str | None = None,
    answer_style: str = "full",
    categories: Sequence[str] | None = None,
    answer_types: Mapping[str, Sequence[str]] | None = None,
    depth_display_range: tuple[float, float] | None = None,
    caption_distances: bool = True,
    caption_maps: bool = False,
) -> Path:
    """Render `n` scenes from `seed` and write them with the records of `stage` under `root`.

    Args:
        root: dataset folder (created; must not hold a dataset unless `overwrite`).
        n: number of scenes.
        seed: dataset seed; scene i has seed `scene_seed(seed, i, split)`.
        stage: "stage1" (a depth and a segmentation record per scene), "sft" (interleaved traces),
            "grpo" or "eval" (questions with exact answers), or "caption" (one caption SFT record
            per scene, `cooper_lib.data.synthetic.captions`: base-model pretraining).
        config: scene configuration (default `SceneConfig()`).
        questions_per_scene: questions per scene for sft, grpo and eval (drawn over categories).
        per_category: questions drawn per category and scene before `questions_per_scene` caps
            them (`make_qa`; fewer where a scene offers fewer, e.g. one distance question an object).
        tool_ratio: share of tool-using traces among questions a map helps with (sft).
        batch_size: scenes rendered per batch (default `default_batch_size`).
        progress: show a tqdm progress bar.
        overwrite: replace the files of an existing dataset in `root`.
        split: "train" or "test" scene seeds (`scene_seed`); default "test" for stage "eval" and
            "train" for the others, so an eval set never shares a scene with a training set.
        answer_style: one of `ANSWER_STYLES`: "full", "short" (`make_qa`: numbers in metres
            with one decimal; `make_traces`: the answer turn is the boxed answer alone) or
            "short_text" (as "short", choice questions answered with the option's text).
        categories: question categories to ask (`make_qa`; default all of `CATEGORIES`).
        answer_types: per category, the answer types to ask (`make_qa`; default all).
        depth_display_range: (near, far) metres the sft traces' depth maps spread over the
            Spectral table (default `DISPLAY_DEPTH_RANGE`, 0-20 m; recorded in the manifest's
            ``codecs``). Train on them a model with the same ``SpatialConfig.depth_display_range``.
        caption_distances: the caption stage states each object's distance in metres
            (`caption`'s ``distances``); off, it names the objects alone.
        caption_maps: the caption stage also writes, per scene, a map caption
            (`map_caption_record`): the photograph, the scene's depth map drawn over
            `depth_display_range` (``maps/``), and the objects with their distances read off it.

    Returns:
        The dataset folder.
    """
    if stage not in STAGES:
        raise ValueError(f"stage: expected one of {STAGES}, got {stage!r}")
    if n < 1:
        raise ValueError(f"n: expected at least one scene, got {n}")
    if questions_per_scene < 1:
        raise ValueError(f"questions_per_scene: expected >= 1, got {questions_per_scene}")
    if per_category < 1:
        raise ValueError(f"per_category: expected >= 1, got {per_category}")
    answer_types = check_answer_types(answer_types)
    split = split or ("test" if stage == "eval" else "train")
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    config = config or SceneConfig()
    root = Path(root)
    if (root / "manifest.json").exists():
        if not overwrite:
            raise FileExistsError(f"root: {root} already holds a dataset; pass overwrite=True to replace it")
        for folder in (*_FOLDERS, "maps"):
            shutil.rmtree(root / folder, ignore_errors=True)
    if caption_maps and stage != "caption":
        raise ValueError(f"caption_maps: only the caption stage writes map captions, got stage {stage!r}")
    draws_maps = stage == "sft" or caption_maps
    for folder in _FOLDERS + (("maps",) if draws_maps else ()):
        (root / folder).mkdir(parents=True, exist_ok=True)
    codecs = default_codecs(depth_display_range)
    scene_lines, records = [], []
    scenes = iter_scenes(n, seed, config, batch_size, split)
    balance = AnswerBalance()
    for index, scene in enumerate(tqdm(scenes, total=n, desc=f"synth {stage}", disable=not progress)):
        name = f"{index:06d}"
        files = _save_scene(root, name, scene)
        scene_lines.append({"index": index, "name": name, "files": files, **scene.metadata()})
        if stage == "stage1":
            records += _stage1_records(name, files)
            continue
        if stage == "caption":
            records.append(caption_record(scene, files["images"], name, distances=caption_distances))
            if caption_maps:
                depth_map = f"maps/{name}_depth.png"
                save_rgb(root / depth_map, pseudo_images(scene, codecs)["depth"])
                records.append(map_caption_record(scene, files["images"], depth_map, f"{name}-map"))
            continue
        rng = random.Random(f"qa-{scene.seed}")
        questions = make_qa(
            scene,
            rng,
            categories=categories,
            per_category=per_category,
            max_questions=questions_per_scene,
            balance=balance,
            answer_style=answer_style,
            answer_types=answer_types,
        )
        if stage == "sft":
            drawn = pseudo_images(scene, codecs)
            maps = {m: f"maps/{name}_{m}.png" for m in drawn}
            for modality, image in drawn.items():
                save_rgb(root / maps[modality], image)
            scene_files = SceneFiles(
                files["images"], files["depth"], files["semantic"], maps["depth"], maps["segmentation"]
            )
            records += make_traces(
                scene,
                questions,
                rng,
                tool_ratio=tool_ratio,
                files=scene_files,
                id_prefix=f"{name}-",
                answer_style=answer_style,
            )
        else:
            records += [
                q.record(
                    f"{name}-{k}",
                    files["images"],
                    {
                        "scene": index,
                        "scene_seed": scene.seed,
                        "objects": list(q.objects),
                        "subject": q.subject,
                        "phrase": q.answer_phrase,
                    },
                )
                for k, q in enumerate(questions)
            ]
    write_jsonl(root / "scenes.jsonl", scene_lines)
    count = write_jsonl(root / "records.jsonl", records)
    asks_questions = stage not in ("stage1", "caption")
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "stage": stage,
        "n": n,
        "seed": seed,
        "split": split,
        "answer_style": answer_style,
        "categories": None if categories is None else list(categories),
        "answer_types": {c: list(t) for c, t in answer_types.items()},
        "questions_per_scene": questions_per_scene if asks_questions else None,
        "per_category": per_category if asks_questions else None,
        "records": count,
        "config": config.to_dict(),
        "classes": list(SEMANTIC_CLASSES),
        "depth_scale": DEPTH_SCALE,
        "instructions": {m: modality_tags(m).instruction for m in ("depth", "segmentation")},
        "codecs": {m: c.config for m, c in codecs.items()} if draws_maps else None,
        "tool_ratio": tool_ratio if stage == "sft" else None,
        "caption_distances": caption_distances if stage == "caption" else None,
        "caption_maps": caption_maps if stage == "caption" else None,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root
