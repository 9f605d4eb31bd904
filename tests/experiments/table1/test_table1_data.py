"""The experiment's SFT records: trimmed as configured, and exactly the context its reasoner builds."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scripted import Script

from cooper_lib.data.records import load_sft_records
from cooper_lib.data.synthetic import TOOL_REASONS, shown_depth
from cooper_lib.data.synthetic.loader import SceneDataset
from cooper_lib.data.turns import REFLECTION_PROMPT, TurnFormat
from cooper_lib.experiments.table1 import Table1Config
from cooper_lib.experiments.table1.config import EXPERIMENT_DEPTH_RANGE
from cooper_lib.experiments.table1.data import prepare_data, trim_records, write_own_maps
from cooper_lib.reasoning.reasoner import InterleavedReasoner, default_codecs, draw_map
from cooper_lib.training.collators import SFTCollator
from cooper_lib.training.config import ModelConfig
from cooper_lib.training.weights import build_model


def _context_and_collated(config, files, record, policy, turns):
    model = build_model(ModelConfig(backbone=config.backbone, spatial=dict(config.spatial)))
    tokenizer = model.adapter.tokenizer(model.processor)
    image, question = (item.value for item in record.items[:2])
    reasoner = InterleavedReasoner(
        model,
        policy=policy,
        max_new_tokens_per_turn=config.max_new_tokens,
        logits_processors=[Script(tokenizer, turns, tokenizer.eos_token_id)],
        return_inputs=True,
        **config.reasoner_prompts(),
    )
    trace = reasoner.run(Image.open(files["qa"].parent / image).convert("RGB"), question)
    assert trace.answer is not None
    context = trace.model_inputs["input_ids"][0].tolist()
    collated = SFTCollator(model, system_prompt="", supervise_maps=False)([record])["input_ids"][0].tolist()
    return context, collated


@pytest.mark.parametrize("reflection_prompt", [False, True])
def test_a_perceive_first_record_is_the_context_the_reasoner_builds(tmp_path, reflection_prompt):
    config = Table1Config.micro().with_(reflection_prompt=reflection_prompt)
    files = prepare_data(tmp_path, config)
    record = load_sft_records([files["perceive_first"]])[0]
    shown = [item.value for item in record.items if item.role == "tool" and item.type == "text"]
    assert shown == [REFLECTION_PROMPT if reflection_prompt else ""] * 2
    assert all(item.role != "system" for item in record.items)
    context, collated = _context_and_collated(
        config, files, record, "perceive_first", [record.items[-1].value]
    )
    assert context == collated[: len(context)]
    assert len(collated) - len(context) <= 2  # the collator may close the last turn


@pytest.mark.parametrize("tool_reasoning", [False, True])
def test_interleaved_tool_calls_think_only_when_asked(tmp_path, tool_reasoning):
    config = Table1Config.micro().with_(tool_reasoning=tool_reasoning, tool_ratio=1.0, questions_per_scene=4)
    files = prepare_data(tmp_path, config)
    records = load_sft_records([files["interleaved"]])
    calls = [
        item.value
        for record in records
        for item in record.items
        if item.role == "assistant" and "</answer>" not in item.value
    ]
    assert calls
    fmt = TurnFormat.default()
    for call in calls:
        assert fmt.is_tool_turn(call)
        assert call.startswith("<think></think><") is not tool_reasoning
    record = next(r for r in records if len([i for i in r.items if i.role == "assistant"]) == 2)
    turns = [item.value for item in record.items if item.role == "assistant"]
    context, collated = _context_and_collated(config, files, record, "adaptive", turns)
    assert context == collated[: len(context)]
    assert len(collated) - len(context) <= 2


@pytest.mark.parametrize("tool_reasoning", [False, True])
def test_trimming_empties_the_template_reason_and_keeps_a_studys_own_thought(tmp_path, tool_reasoning):
    fmt = TurnFormat.default()
    template = sorted(TOOL_REASONS)[0]
    own = "The blue sphere is in row 4, column 5."
    calls = [fmt.think_block(text) + fmt.tool_call("depth") for text in (template, own, "")]
    path = tmp_path / "records.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"{i}", "items": [{"type": "text", "value": call, "role": "assistant"}]}) + "\n"
            for i, call in enumerate(calls)
        )
    )
    assert trim_records(path, Table1Config.micro().with_(tool_reasoning=tool_reasoning)) == 3
    kept = [json.loads(line)["items"][0]["value"] for line in path.read_text().splitlines()]
    assert kept == [calls[0] if tool_reasoning else fmt.think_block("") + fmt.tool_call("depth"), *calls[1:]]


def test_the_traces_and_the_reasoner_draw_depth_over_the_experiments_range(tmp_path):
    config = Table1Config.micro()
    assert config.depth_display_range == EXPERIMENT_DEPTH_RANGE
    files = prepare_data(tmp_path, config)
    model = build_model(ModelConfig(backbone=config.backbone, spatial=dict(config.spatial)))
    codec = default_codecs(model)["depth"]
    assert (codec.min_depth, codec.max_depth) == EXPERIMENT_DEPTH_RANGE
    scene = SceneDataset(files["qa"].parent)[0]
    stored = torch.from_numpy(
        np.array(Image.open(files["qa"].parent / "maps/000000_depth.png").convert("RGB"))
    )
    stored = stored.permute(2, 0, 1).float() / 255
    # the folder's depth is stored to the millimetre: a pixel may fall one colour of the table apart
    assert (stored - codec.encode(shown_depth(scene, codec.max_depth))).abs().max() < 0.02
    library = InterleavedReasoner(build_model(ModelConfig(backbone=config.backbone))).codecs["depth"]
    assert (stored - library.encode(shown_depth(scene, library.max_depth))).abs().max() > 0.2


def test_resuming_leaves_the_trimmed_records_untouched(tmp_path):
    config = Table1Config.micro()
    files = prepare_data(tmp_path, config)
    trimmed = [files["qa"], files["interleaved"], files["perceive_first"]]
    before = {path: (path.stat().st_mtime_ns, path.read_text()) for path in trimmed}
    assert prepare_data(tmp_path, config) == files
    assert {path: (path.stat().st_mtime_ns, path.read_text()) for path in trimmed} == before
    assert not list((tmp_path / "data").rglob("*.tmp"))


def test_stage1_scenes_give_stage1_the_qa_scenes_and_more(tmp_path):
    config = Table1Config.micro()
    config = config.with_(stage1_scenes=config.train_scenes + 3)
    files = prepare_data(tmp_path, config)
    manifest = json.loads((files["stage1"].parent / "manifest.json").read_text())
    assert manifest["n"] == config.train_scenes + 3
    assert len(files["stage1"].read_text().splitlines()) == 2 * (
        config.train_scenes + 3
    )  # depth, segmentation

    def scenes(name):
        return [
            {k: v for k, v in json.loads(line).items() if k != "files"}
            for line in (files[name].parent / "scenes.jsonl").read_text().splitlines()
        ]

    qa = scenes("qa")
    assert len(qa) == config.train_scenes and scenes("stage1")[: len(qa)] == qa


def test_train_per_category_asks_more_of_the_training_scenes_alone(tmp_path):
    config = Table1Config.micro()
    base = prepare_data(tmp_path / "one", config)
    more = prepare_data(tmp_path / "three", config.with_(train_per_category=3))

    def manifest(files, name):
        return json.loads((files[name].parent / "manifest.json").read_text())

    for name in ("qa", "interleaved"):
        assert manifest(more, name)["per_category"] == 3
        assert manifest(more, name)["questions_per_scene"] == 3 * config.questions_per_scene
        assert manifest(more, name)["records"] > manifest(base, name)["records"]
    for name in ("grpo", "test"):
        assert manifest(more, name)["per_category"] == 1
        assert more[name].read_text() == base[name].read_text()


@pytest.mark.parametrize("reflection_prompt", [False, True])
def test_stage1_map_records_teach_the_heads_alone_on_the_scenes_no_question_asks_about(
    tmp_path, reflection_prompt
):
    config = Table1Config.micro()
    config = config.with_(
        stage1_scenes=config.train_scenes + 3, sft_stage1_maps=True, reflection_prompt=reflection_prompt
    )
    files = prepare_data(tmp_path, config)
    folder = files["stage1_maps"].parent
    scenes = [json.loads(line) for line in (folder / "scenes.jsonl").read_text().splitlines()]
    stage1 = [json.loads(line) for line in (files["stage1"].parent / "scenes.jsonl").read_text().splitlines()]
    assert [s["seed"] for s in scenes] == [s["seed"] for s in stage1]  # the stage-1 scenes
    records = load_sft_records([files["stage1_maps"]])
    assert json.loads((folder / "manifest.json").read_text())["records"] == len(records) == 3
    assert [r.meta["scene"] for r in records] == [
        config.train_scenes,
        config.train_scenes + 1,
        config.train_scenes + 2,
    ]
    fmt = TurnFormat.default()
    for record in records:
        assert [(i.type, i.role, i.need_loss, i.modality) for i in record.items] == [
            ("image", "user", False, None),
            ("text", "assistant", False, None),
            ("image", "tool", False, "depth"),
            ("text", "tool", False, None),
            ("text", "assistant", False, None),
            ("image", "tool", False, "segmentation"),
            ("text", "tool", False, None),
        ]
        assert [fmt.called_tool(record.items[k].value) for k in (1, 4)] == ["depth", "segmentation"]
        assert [record.items[k].value for k in (3, 6)] == [REFLECTION_PROMPT if reflection_prompt else ""] * 2
        name = scenes[record.meta["scene"]]["name"]
        assert record.items[0].value == f"images/{name}.png"
        assert [record.items[k].target for k in (2, 5)] == [f"depth/{name}.png", f"semantic/{name}.png"]
        assert (folder / record.items[2].value).exists() and (folder / record.items[5].value).exists()
    # collated: no text is a target, both maps are
    model = build_model(ModelConfig(backbone=config.backbone, spatial=dict(config.spatial)))
    batch = SFTCollator(model, system_prompt="")(records[:2])
    assert (batch["labels"] == -100).all()
    with pytest.raises(ValueError, match=r"record \d+-maps: no loss-bearing text and no supervised map"):
        SFTCollator(model, system_prompt="", supervise_maps=False)(records[:1])
    assert {name: tuple(t.shape[:1]) for name, t in batch["aux_targets"].items()} == {
        "depth": (2,),
        "segmentation": (2,),
    }
    # resuming rewrites nothing; off, or no scenes past the question scenes, no such set
    before = (files["stage1_maps"].stat().st_mtime_ns, files["stage1_maps"].read_text())
    prepare_data(tmp_path, config)
    assert (files["stage1_maps"].stat().st_mtime_ns, files["stage1_maps"].read_text()) == before
    assert "stage1_maps" not in prepare_data(tmp_path / "off", config.with_(sft_stage1_maps=False))


def test_base_map_readings_ask_a_lone_depth_map_for_its_one_objects_distance(tmp_path):
    config = Table1Config.micro().with_(base_map_scenes=4)
    files = prepare_data(tmp_path, config)
    folder = files["base_maps"].parent
    scenes = [json.loads(line) for line in (folder / "scenes.jsonl").read_text().splitlines()]
    assert len(scenes) == 4 and all(len(scene["objects"]) == 1 for scene in scenes)
    records = load_sft_records([files["base_maps"]])
    assert records and {r.meta["category"] for r in records} == {"distance_camera"}
    fmt = TurnFormat.default()
    for record in records:
        assert [(i.type, i.role, i.need_loss) for i in record.items] == [
            ("text", "user", False),  # the question; no photograph before it
            ("text", "assistant", False),  # the depth call, not trained
            ("image", "tool", False),
            ("text", "tool", False),  # the reflection, empty as in the traces
            ("text", "assistant", True),
        ]
        assert fmt.called_tool(record.items[1].value) == "depth" and record.items[3].value == ""
        assert record.items[2].modality == "depth" and record.items[2].target is None
        scene = next(s for s in scenes if s["seed"] == record.meta["scene_seed"])
        assert (
            record.items[-1].value == f"<answer>\\boxed{{{scene['objects'][0]['distance']:.1f} m}}</answer>"
        )
    # resuming rewrites nothing; no map readings without a base model to teach
    before = files["base_maps"].read_text()
    prepare_data(tmp_path, config)
    assert files["base_maps"].read_text() == before
    assert "base_maps" not in prepare_data(tmp_path / "none", config.with_(base_steps=0))


@pytest.mark.parametrize("name", ["interleaved", "perceive_first"])
def test_own_maps_are_what_the_model_draws_of_each_traces_photograph(tmp_path, name):
    config = Table1Config.micro()
    files = prepare_data(tmp_path, config)
    model = build_model(ModelConfig(backbone=config.backbone, spatial=dict(config.spatial))).eval()
    own = write_own_maps(model, files[name], "own-test")
    assert own == files[name].parent / "own-test.jsonl"
    before = [json.loads(line) for line in files[name].open()]
    after = [json.loads(line) for line in own.open()]
    codecs = default_codecs(model)
    shown = 0
    for old, new in zip(before, after, strict=True):
        drop_value = [{k: v for k, v in item.items() if k != "value"} for item in old["items"]]
        assert drop_value == [{k: v for k, v in item.items() if k != "value"} for item in new["items"]]
        photo = Image.open(own.parent / old["items"][0]["value"]).convert("RGB")
        for was, now in zip(old["items"], new["items"], strict=True):
            if was["type"] != "image" or not was.get("modality"):
                assert now["value"] == was["value"]  # the photograph, the texts
                continue
            shown += 1
            assert now["target"] == was["target"]  # the heads still learn from the true map
            with torch.no_grad():
                value = model.perceive([photo], was["modality"])[0]
            drawn = np.asarray(draw_map(codecs[was["modality"]], value, (photo.height, photo.width)))
            saved = np.asarray(Image.open(own.parent / now["value"]).convert("RGB"))
            assert saved.shape == drawn.shape == (photo.height, photo.width, 3)
            assert (saved != drawn).any(axis=-1).mean() < 0.01  # a batch of one may round a pixel apart
            assert (saved != np.asarray(Image.open(own.parent / was["value"]).convert("RGB"))).any()
    assert shown
    # records that show no photograph cannot have their maps drawn
    traced = next(row for row in before if any(item.get("modality") for item in row["items"]))
    (own.parent / "bad.jsonl").write_text(json.dumps({"id": "x", "items": traced["items"][1:]}) + "\n")
    with pytest.raises(ValueError, match="record 'x' shows a map but no photograph"):
        write_own_maps(model, own.parent / "bad.jsonl", "bad")


def test_a_share_of_own_maps_redraws_that_part_of_the_photographs_all_their_maps_alike(tmp_path):
    config = Table1Config.micro().with_(train_scenes=24, questions_per_scene=3)
    files = prepare_data(tmp_path, config)
    model = build_model(ModelConfig(backbone=config.backbone, spatial=dict(config.spatial))).eval()
    before = [json.loads(line) for line in files["interleaved"].open()]

    def shown(path):
        """Per photograph, whether each map it shows was redrawn (its value moved under own_maps/)."""
        out: dict[str, set[bool]] = {}
        for old, new in zip(before, [json.loads(line) for line in path.open()], strict=True):
            for was, now in zip(old["items"], new["items"], strict=True):
                if was.get("modality"):
                    assert now["target"] == was["target"]
                    out.setdefault(old["items"][0]["value"], set()).add(now["value"] != was["value"])
        return out

    half = shown(write_own_maps(model, files["interleaved"], "half", share=0.5, seed=3))
    assert all(len(redrawn) == 1 for redrawn in half.values())  # every map of a photograph alike
    own = sum(True in redrawn for redrawn in half.values())
    assert 0 < own < len(half)
    assert shown(write_own_maps(model, files["interleaved"], "again", share=0.5, seed=3)) == half
    assert shown(write_own_maps(model, files["interleaved"], "other", share=0.5, seed=4)) != half
    assert all(
        True in redrawn for redrawn in shown(write_own_maps(model, files["interleaved"], "all")).values()
    )
    with pytest.raises(ValueError, match=r"share: expected a fraction in \(0, 1\], got 0.0"):
        write_own_maps(model, files["interleaved"], "none", share=0.0)


def test_by_default_every_question_a_map_helps_calls_its_tool(tmp_path):
    files = prepare_data(tmp_path, Table1Config.micro().with_(questions_per_scene=4))
    metas = [record.meta for record in load_sft_records([files["interleaved"]])]
    helped = [meta for meta in metas if meta["modality"] is not None]
    assert helped and len(helped) < len(metas)
    assert all(meta["tool"] == meta["modality"] for meta in helped)
    assert all(meta["tool"] is None for meta in metas if meta["modality"] is None)
