"""The experiment's data, written once under ``OUT/data`` and shared by every arm and seed.

- ``base``: a caption per scene of other training scenes (`cooper_lib.data.synthetic.captions`),
  the shared base model's pretraining (written only when ``base_steps`` > 0; each object's distance
  left out when ``Table1Config.caption_distances`` is off; with ``caption_maps``, a second record a
  scene reads the distances off its depth map);
- ``base_maps``: with ``Table1Config.base_map_scenes``, one-object scenes whose depth map alone is
  asked the object's distance, laid out as a COOPER trace without its photograph
  (`write_map_reading`), part of the same base model's pretraining;
- ``stage1``: a depth and a segmentation record per training scene (AMG), over
  ``Table1Config.stage1_scenes`` scenes of the same draw when set;
- ``stage1_maps``: with ``Table1Config.sft_stage1_maps``, a map record per stage-1 scene past
  the question scenes (`write_map_records`), which the perceiving arms' SFT draws among its traces;
- ``qa``: the same training scenes' questions answered directly, ``<answer>\\boxed{X}</answer>``
  (`Table1Config.answer_style`, no tool calls); ``qa/perceive_first.jsonl`` holds the same questions
  with depth, then segmentation, called before the answer (the BAGEL-PE traces);
- ``interleaved``: the same scenes and questions with COOPER's adaptive tool calls (``tool_ratio``);
- ``grpo``: questions on other training scenes for the GRPO arms;
- ``test``: the held-out benchmark's questions (test split).

With ``Table1Config.trace_maps`` ``"own"``, a perceiving arm's traces are copied beside their set
before its SFT, their maps redrawn by the arm's own stage-1 model (`write_own_maps`); with
``"mixed"``, half the photographs' maps.

Every set asks the configured ``categories`` only, about scenes drawn with ``Table1Config.scene``.
Without ``system_prompt`` the SFT records lose their system item, without ``reflection_prompt`` the
text after each map is empty (the reasoner then sends the same, `Table1Config.reasoner_prompts`),
and without ``tool_reasoning`` a tool call's ``<think>`` is empty when it holds the synthetic world's
template reason (`trim_records`; a thought of other text, such as one a study wrote into the records,
is kept).

Every set draws from the train split; the benchmark's scenes come from the test split, so none is
a training scene (`cooper_lib.data.synthetic.scene_seed`).
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from cooper_lib.data.synthetic import TOOL_REASONS, write_dataset
from cooper_lib.data.turns import TurnFormat
from cooper_lib.experiments.table1.config import Table1Config
from cooper_lib.images import to_pil

if TYPE_CHECKING:
    from cooper_lib.model import SpatialModel

#: The question the base model's map readings ask (``base_maps``): an object's distance.
MAP_READING_CATEGORY = "distance_camera"

#: The order BAGEL-PE's fixed plan calls its tools in (`PerceiveFirstPolicy`'s default).
PERCEIVE_ORDER = ("depth", "segmentation")
PE_FILE = "perceive_first.jsonl"

_TARGETS = {"depth": "depth", "segmentation": "semantic"}


def prepare_data(out: Path, config: Table1Config) -> dict[str, Path]:
    """Write (or reuse) the datasets under ``out / "data"``; returns the JSONL file of each set."""
    root = Path(out) / "data"
    train_questions = {
        "per_category": config.train_per_category,
        "questions_per_scene": config.questions_per_scene * config.train_per_category,
    }
    sets: dict[str, dict[str, Any]] = {
        "stage1": {"n": config.map_scene_count, "seed": 0, "stage": "stage1"},
        "qa": {"n": config.train_scenes, "seed": 0, "stage": "sft", "tool_ratio": 0.0, **train_questions},
        "interleaved": {
            "n": config.train_scenes,
            "seed": 0,
            "stage": "sft",
            "tool_ratio": config.tool_ratio,
            **train_questions,
        },
        "grpo": {"n": config.grpo_scenes, "seed": 1, "stage": "grpo"},
        "test": {"n": config.test_scenes, "seed": 0, "stage": "eval"},
    }
    if config.base_steps:
        sets["base"] = {
            "n": config.base_scenes,
            "seed": 2,
            "stage": "caption",
            "caption_distances": config.caption_distances,
            "caption_maps": config.caption_maps,
        }
    if config.sft_stage1_maps:
        sets["stage1_maps"] = {"n": config.map_scene_count, "seed": 0, "stage": "sft", "tool_ratio": 1.0}
    if config.base_steps and config.base_map_scenes:
        sets["base_maps"] = {
            "n": config.base_map_scenes,
            "seed": 3,
            "stage": "sft",
            "tool_ratio": 1.0,
            "categories": [MAP_READING_CATEGORY],
            "config": replace(config.scene_config(), min_objects=1, max_objects=1),
        }
    files = {}
    for name, options in sets.items():
        folder = root / name
        if not (folder / "manifest.json").exists():
            write_dataset(
                folder,
                **{
                    "questions_per_scene": config.questions_per_scene,
                    "answer_style": config.answer_style,
                    "overwrite": folder.exists(),
                    "categories": config.categories,
                    "answer_types": config.answer_types,
                    "config": config.scene_config(),
                    "depth_display_range": config.depth_display_range,
                    **options,
                },
            )
        if name == "base_maps":
            write_map_reading(folder / "records.jsonl")
        if name == "stage1_maps":
            write_map_records(folder, first=config.train_scenes, reflection=config.reflection_prompt)
        if options["stage"] in ("sft", "caption"):
            trim_records(folder / "records.jsonl", config)
        files[name] = folder / "records.jsonl"
    pe = root / "qa" / PE_FILE
    if not pe.exists():
        write_perceive_first(files["qa"], pe)
    trim_records(pe, config)
    files["perceive_first"] = pe
    return files


def trim_records(path: Path, config: Table1Config) -> int:
    """Rewrite the SFT records of `path` in place to what the experiment trains on: no system
    item unless ``system_prompt``, an empty text after each map unless ``reflection_prompt`` (the
    reasoner sends the same, `Table1Config.reasoner_prompts`), and ``<think></think>`` before each
    tool call unless ``tool_reasoning``. Only a thought that is one of the synthetic world's template
    reasons (`TOOL_REASONS`) is emptied: the records are rewritten on every run, and a thought a study
    wrote into them must survive it. Returns the count of records."""
    fmt = TurnFormat.default()
    think = re.compile(re.escape(fmt.think[0]) + "(.*?)" + re.escape(fmt.think[1]), re.DOTALL)

    def drop_template_reason(match: re.Match[str]) -> str:
        return fmt.think_block("") if match.group(1).strip() in TOOL_REASONS else match.group(0)

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        if not config.system_prompt:
            row["items"] = [item for item in row["items"] if item.get("role") != "system"]
        for item in row["items"]:
            if item.get("type", "text") != "text":
                continue
            if item.get("role") == "tool" and not config.reflection_prompt:
                item["value"] = ""
            if (
                item.get("role") == "assistant"
                and not config.tool_reasoning
                and fmt.called_tool(item["value"])
            ):
                item["value"] = think.sub(drop_template_reason, item["value"], count=1)
    _write_lines(path, [json.dumps(row) for row in rows])
    return len(rows)


def write_map_reading(path: Path) -> int:
    """Rewrite the COOPER traces of `path` in place as map readings: each trace without its
    photograph (the user's image), its depth call untrained (the base model learns to read a map,
    not to call for one) and its map without a target (the heads draw from a photograph, and there
    is none). What is left is the question, the call, the true depth map and the answer in metres
    read off it. Rewriting a rewritten file changes nothing. Returns the count of records."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        row["items"] = [
            item for item in row["items"] if not (item.get("type") == "image" and item.get("role") == "user")
        ]
        *_, answer = row["items"]
        for item in row["items"]:
            if item.get("role") == "assistant" and item is not answer:
                item["need_loss"] = False
            if item.get("type") == "image":
                item.pop("target", None)
    _write_lines(path, [json.dumps(row) for row in rows])
    return len(rows)


def write_map_records(folder: Path, first: int, reflection: bool = False) -> int:
    """Rewrite ``folder / "records.jsonl"`` (an SFT set of the synthetic world) as map records of
    its scenes from index `first` on: each shows the scene's photograph, then a depth call and the
    true depth map, then a segmentation call and the true segmentation map, as a COOPER trace shows
    them, with no text loss; after each map COOPER's reflection prompt when `reflection`, else an
    empty text (as `trim_records` leaves the traces). They train the heads alone, in SFT's own
    context (the query block after a tool call in a chat), on scenes no question asks about. Built
    from ``scenes.jsonl``, so rewriting a rewritten set changes nothing; the manifest's record count
    follows. Returns the count of records."""
    fmt = TurnFormat.default()
    folder = Path(folder)
    scenes = [json.loads(line) for line in (folder / "scenes.jsonl").read_text().splitlines() if line.strip()]
    lines = []
    for scene in scenes[first:]:
        name, files = scene["name"], scene["files"]
        items: list[dict[str, Any]] = [
            {"type": "image", "value": files["images"], "need_loss": False, "role": "user"}
        ]
        for modality in PERCEIVE_ORDER:
            items += [
                {
                    "type": "text",
                    "value": fmt.think_block("") + fmt.tool_call(modality),
                    "need_loss": False,
                    "role": "assistant",
                },
                {
                    "type": "image",
                    "value": f"maps/{name}_{modality}.png",
                    "role": "tool",
                    "modality": modality,
                    "target": files[_TARGETS[modality]],
                },
                {"type": "text", "value": fmt.reflection(modality) if reflection else "", "role": "tool"},
            ]
        lines.append(json.dumps({"id": f"{name}-maps", "items": items, "meta": {"scene": scene["index"]}}))
    _write_lines(folder / "records.jsonl", lines)
    manifest = json.loads((folder / "manifest.json").read_text())
    _write_lines(folder / "manifest.json", [json.dumps({**manifest, "records": len(lines)}, indent=2)])
    return len(lines)


def write_perceive_first(source: Path, dest: Path) -> int:
    """Rewrite direct-answer SFT rows as BAGEL-PE traces: the same question and answer, preceded by
    a depth call, its map and the reflection prompt, then the same for segmentation.

    The calls are what `PerceiveFirstPolicy` writes itself at inference, so they carry no loss;
    the answer turn and the heads (on the true maps) are trained."""
    fmt = TurnFormat.default()
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    lines = []
    for row in rows:
        name = row["id"].split("-")[0]
        *head, answer = row["items"]
        body = []
        for modality in PERCEIVE_ORDER:
            body += [
                {"type": "text", "value": fmt.tool_call(modality), "need_loss": False, "role": "assistant"},
                {
                    "type": "image",
                    "value": f"maps/{name}_{modality}.png",
                    "role": "tool",
                    "modality": modality,
                    "target": f"{_TARGETS[modality]}/{name}.png",
                },
                {"type": "text", "value": fmt.reflection(modality), "role": "tool"},
            ]
        lines.append(json.dumps({**row, "items": [*head, *body, answer]}))
    _write_lines(dest, lines)
    return len(lines)


def write_own_maps(
    model: SpatialModel, source: Path, name: str, batch_size: int = 64, share: float = 1.0, seed: int = 0
) -> Path:
    """Copy the SFT traces of `source` to ``<its folder>/<name>.jsonl`` with every map a tool
    shows replaced by the one `model` draws of the trace's photograph: `SpatialModel.perceive`
    (the stage-1 prompt), shown as the reasoner shows a generated map (`draw_map`, at the
    photograph's size), saved once per photograph and modality under ``own_maps/<name>/``. The
    maps' targets stay the true maps, so the heads still learn from them. The traces then show
    the reader what its own heads will show it at inference, where the true map shows what no
    head draws. With `share` below 1 only that part of the photographs get their own maps (each
    photograph drawn by `seed` and its path, so every record and modality of it agrees and a rerun
    draws the same); the rest keep the true maps. Rewritten on every call (the model may be new);
    returns the new file."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share: expected a fraction in (0, 1], got {share!r}")
    from cooper_lib.reasoning.reasoner import default_codecs, draw_map

    source = Path(source)
    root = source.parent
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    wanted: dict[tuple[str, str], str] = {}
    for row in rows:
        photo = next(
            (i["value"] for i in row["items"] if i.get("type") == "image" and i.get("role") == "user"), None
        )
        for item in row["items"]:
            if item.get("type") != "image" or not item.get("modality"):
                continue
            if photo is None:
                raise ValueError(
                    f"{source}: record {row.get('id')!r} shows a map but no photograph to draw it from"
                )
            if share < 1.0 and random.Random(f"{seed}:{photo}").random() >= share:
                continue
            key = (photo, item["modality"])
            flat = Path(photo).with_suffix("").as_posix().replace("/", "-")  # unique per photograph
            wanted.setdefault(key, f"own_maps/{name}/{flat}_{item['modality']}.png")
            item["value"] = wanted[key]
    (root / "own_maps" / name).mkdir(parents=True, exist_ok=True)
    codecs = default_codecs(model)
    keys = list(wanted)
    with tqdm(total=len(keys), desc=f"own maps {name}", unit="map") as bar:
        for modality in sorted({m for _, m in keys}):
            todo = [k for k in keys if k[1] == modality]
            for start in range(0, len(todo), batch_size):
                part = todo[start : start + batch_size]
                photos = [to_pil(photo, f"{source}: {photo}", base_dir=root) for photo, _ in part]
                with torch.no_grad():
                    maps = model.perceive(photos, modality).cpu()
                for (photo, _), image, value in zip(part, photos, maps, strict=True):
                    draw_map(codecs[modality], value, (image.height, image.width)).save(
                        root / wanted[(photo, modality)]
                    )
                bar.update(len(part))
    dest = root / f"{name}.jsonl"
    _write_lines(dest, [json.dumps(row) for row in rows])
    return dest


def _write_lines(dest: Path, lines: list[str]) -> None:
    """Replace `dest` atomically, and only when its text changes: two runs resuming the same
    folder at once (one per seed) then neither rewrite nor race over the trimmed records."""
    text = "\n".join(lines) + "\n"
    if dest.exists() and dest.read_text() == text:
        return
    tmp = dest.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(dest)
