import json

import numpy as np
import pytest
import torch
from PIL import Image

from cooper_lib.data.synthetic import SceneConfig, render_scenes, write_dataset
from cooper_lib.data.synthetic.files import load_depth, load_ids
from cooper_lib.data.synthetic.traces import default_codecs, shown_depth
from cooper_lib.data.turns import REFLECTION_PROMPT

CONFIG = SceneConfig(width=32, height=24, min_objects=2, max_objects=4)


def test_layout_and_manifest(tmp_path):
    root = write_dataset(
        tmp_path / "ds", 3, seed=9, stage="sft", config=CONFIG, questions_per_scene=3, tool_ratio=1.0
    )
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["stage"] == "sft" and manifest["n"] == 3 and manifest["depth_scale"] == 1000.0
    assert SceneConfig.from_dict(manifest["config"]) == CONFIG
    for folder in ("images", "depth", "semantic", "instance", "normals"):
        assert sorted(p.name for p in (root / folder).iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert len(list((root / "maps").iterdir())) == 6
    lines = (root / "records.jsonl").read_text().splitlines()
    assert len(lines) == manifest["records"] == 9
    record = json.loads(lines[0])
    for item in record["items"]:
        if item["type"] == "image":
            assert (root / item["value"]).exists()
        if item["target"] is not None:
            assert (root / item["target"]).exists()
    texts = [i["value"] for r in map(json.loads, lines) for i in r["items"] if i["type"] == "text"]
    reflections = {REFLECTION_PROMPT.format(name=m) for m in ("depth", "segmentation")}
    assert any(t in reflections for t in texts)


def test_written_scenes_match_the_renderer(tmp_path):
    root = write_dataset(tmp_path / "ds", 2, seed=9, stage="stage1", config=CONFIG)
    scenes = render_scenes(2, seed=9, config=CONFIG)
    lines = [json.loads(line) for line in (root / "scenes.jsonl").read_text().splitlines()]
    assert [line["seed"] for line in lines] == [s.seed for s in scenes]
    assert lines[0]["objects"] == [o.to_dict() for o in scenes[0].objects]


@pytest.mark.parametrize("stage", ["stage1", "grpo", "eval"])
def test_record_kinds(tmp_path, stage):
    root = write_dataset(tmp_path / stage, 2, stage=stage, config=CONFIG, questions_per_scene=2)
    records = [json.loads(line) for line in (root / "records.jsonl").read_text().splitlines()]
    if stage == "stage1":
        assert [r["modality"] for r in records] == ["depth", "segmentation"] * 2
        assert records[0]["instruction"].startswith("<depth-estimation>")
    else:
        assert len(records) == 4
        assert {"question", "answer", "answer_type", "cpr", "category"} <= set(records[0])
    assert not (root / "maps").exists()


def test_refuses_to_overwrite_unless_asked(tmp_path):
    write_dataset(tmp_path, 1, config=CONFIG, stage="grpo")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_dataset(tmp_path, 1, config=CONFIG, stage="grpo")
    write_dataset(tmp_path, 1, seed=1, config=CONFIG, stage="eval", overwrite=True)
    assert json.loads((tmp_path / "manifest.json").read_text())["stage"] == "eval"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"stage": "rl"}, "stage"),
        ({"n": 0}, "n"),
        ({"questions_per_scene": 0}, "questions"),
        ({"per_category": 0}, "per_category"),
        ({"answer_types": {"colour": ["number", "odd"]}}, "answer_types"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, field):
    args = {"n": 1, "config": CONFIG, **kwargs}
    with pytest.raises(ValueError, match=field):
        write_dataset(tmp_path, **args)


def test_maps_are_stored_losslessly_enough(tmp_path):
    root = write_dataset(tmp_path, 1, seed=3, stage="eval", config=CONFIG)
    scene = render_scenes(1, seed=3, config=CONFIG, split="test")[0]  # eval sets hold test scenes
    assert (load_depth(root / "depth/000000.png") - scene.depth).abs().max() <= 0.0005 + 1e-5
    assert torch.equal(load_ids(root / "semantic/000000.png"), scene.semantic)


def test_eval_sets_hold_test_scenes_and_record_split_and_answer_style(tmp_path):
    evaluation = write_dataset(
        tmp_path / "eval", 2, seed=0, stage="eval", config=CONFIG, answer_style="short"
    )
    training = write_dataset(tmp_path / "grpo", 2, seed=0, stage="grpo", config=CONFIG)
    manifests = [json.loads((root / "manifest.json").read_text()) for root in (evaluation, training)]
    assert [(m["split"], m["answer_style"]) for m in manifests] == [("test", "short"), ("train", "full")]
    seeds = [
        {json.loads(line)["seed"] for line in (root / "scenes.jsonl").read_text().splitlines()}
        for root in (evaluation, training)
    ]
    assert not seeds[0] & seeds[1] and min(seeds[0]) >= 2**63 > max(seeds[1])
    records = [json.loads(line) for line in (evaluation / "records.jsonl").read_text().splitlines()]
    assert all(r["unit"] == "m" for r in records if r["answer_type"] == "number")
    with pytest.raises(ValueError, match="split"):
        write_dataset(tmp_path / "bad", 1, config=CONFIG, split="val")


def test_categories_restrict_the_questions(tmp_path):
    root = write_dataset(
        tmp_path / "ds", 4, stage="eval", config=CONFIG, questions_per_scene=4, categories=["existence"]
    )
    rows = [json.loads(line) for line in (root / "records.jsonl").read_text().splitlines()]
    assert rows and {row["category"] for row in rows} == {"existence"}
    assert json.loads((root / "manifest.json").read_text())["categories"] == ["existence"]
    with pytest.raises(ValueError, match="categories"):
        write_dataset(tmp_path / "bad", 1, stage="eval", config=CONFIG, categories=["nope"])


def test_per_category_asks_more_of_each_scene_and_is_recorded(tmp_path):
    def distance_questions(name, per_category):
        root = write_dataset(
            tmp_path / name,
            4,
            stage="eval",
            config=CONFIG,
            questions_per_scene=4,
            per_category=per_category,
            categories=["distance_camera"],
        )
        manifest = json.loads((root / "manifest.json").read_text())
        assert (manifest["questions_per_scene"], manifest["per_category"]) == (4, per_category)
        rows = [json.loads(line) for line in (root / "records.jsonl").read_text().splitlines()]
        return [(row["meta"]["scene"], tuple(row["meta"]["objects"])) for row in rows]

    one, every = distance_questions("one", 1), distance_questions("every", 4)
    assert sorted(scene for scene, _ in one) == [0, 1, 2, 3]
    assert len(every) > len(one) and len(set(every)) == len(every)
    scenes = [json.loads(line) for line in (tmp_path / "every" / "scenes.jsonl").read_text().splitlines()]
    for index, scene in enumerate(scenes):
        assert 1 <= sum(s == index for s, _ in every) <= len(scene["objects"])


def test_answer_types_restrict_the_forms_and_are_recorded(tmp_path):
    root = write_dataset(
        tmp_path / "ds",
        6,
        stage="eval",
        config=CONFIG,
        categories=["relative_depth"],
        answer_types={"relative_depth": ["yes_no"]},
    )
    rows = [json.loads(line) for line in (root / "records.jsonl").read_text().splitlines()]
    assert rows and {row["answer_type"] for row in rows} == {"yes_no"}
    assert json.loads((root / "manifest.json").read_text())["answer_types"] == {"relative_depth": ["yes_no"]}


def test_depth_display_range_draws_the_trace_maps_and_is_recorded(tmp_path):
    root = write_dataset(tmp_path, 1, seed=4, config=CONFIG, depth_display_range=(0.5, 6.0))
    manifest = json.loads((root / "manifest.json").read_text())
    assert (manifest["codecs"]["depth"]["min_depth"], manifest["codecs"]["depth"]["max_depth"]) == (0.5, 6.0)
    scene = render_scenes(1, seed=4, config=CONFIG)[0]
    stored = torch.from_numpy(np.array(Image.open(root / "maps/000000_depth.png").convert("RGB")))
    stored = stored.permute(2, 0, 1).float() / 255
    for codecs, close in ((default_codecs((0.5, 6.0)), True), (default_codecs(), False)):
        drawn = codecs["depth"].encode(shown_depth(scene, codecs["depth"].max_depth))
        assert ((stored - drawn).abs().max() <= 1 / 255 + 1e-6) == close
