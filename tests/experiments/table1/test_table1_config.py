"""`Table1Config`: its presets survive the JSON a run writes, and bad fields are refused by name."""

import json

import pytest

from cooper_lib.experiments.table1 import Table1Config


@pytest.mark.parametrize("preset", ["full", "quick", "tokens64", "cooper_data", "micro"])
def test_from_dict_gives_back_what_a_run_wrote(preset):
    config = getattr(Table1Config, preset)()
    written = json.loads(json.dumps(config.to_dict()))
    assert Table1Config.from_dict(written) == config


def test_from_dict_fills_the_fields_left_out_with_the_defaults():
    config = Table1Config.from_dict({"sft_steps": 6000, "categories": ["distance_camera"]})
    assert config == Table1Config(sft_steps=6000, categories=("distance_camera",))


def test_from_dict_refuses_an_unknown_field_and_a_wrong_type_by_name():
    with pytest.raises(ValueError, match="sft_step"):
        Table1Config.from_dict({"sft_step": 10})
    with pytest.raises(TypeError, match="sft_steps"):
        Table1Config.from_dict({"sft_steps": "many"})


def test_scene_lists_read_as_the_tuples_the_defaults_hold():
    config = Table1Config(scene={"max_objects": 2, "placement_distance": [1.0, 4.0]})
    assert config.scene == {"max_objects": 2, "placement_distance": (1.0, 4.0)}
    assert config.scene_config().placement_distance == (1.0, 4.0)
    with pytest.raises(ValueError, match="scene: expected a dict"):
        Table1Config(scene=[("max_objects", 2)])


def test_stage1_scenes_default_to_the_qa_scenes_and_must_be_positive():
    assert Table1Config(train_scenes=7).map_scene_count == 7
    assert Table1Config(train_scenes=7, stage1_scenes=20).map_scene_count == 20
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="stage1_scenes: expected a positive int or None"):
            Table1Config(stage1_scenes=bad)


def test_train_per_category_defaults_to_one_and_must_be_positive():
    assert Table1Config().train_per_category == 1
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="train_per_category: expected a positive int"):
            Table1Config(train_per_category=bad)


def test_base_map_scenes_default_to_zero_and_must_be_non_negative():
    assert Table1Config().base_map_scenes == 0
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match="base_map_scenes: expected a non-negative int"):
            Table1Config(base_map_scenes=bad)


def test_stage1_maps_in_sft_need_scenes_past_the_question_scenes_and_supervised_maps():
    assert not Table1Config().sft_stage1_maps
    assert Table1Config(train_scenes=7, stage1_scenes=20, sft_stage1_maps=True).sft_stage1_maps
    for changes, got in [
        ({"train_scenes": 7}, "stage1_scenes None, train_scenes 7"),
        ({"train_scenes": 7, "stage1_scenes": 7}, "stage1_scenes 7, train_scenes 7"),
        ({"train_scenes": 7, "stage1_scenes": 20, "supervise_maps": False}, "supervise_maps False"),
    ]:
        with pytest.raises(
            ValueError, match=f"sft_stage1_maps: expected stage1_scenes above train_scenes.*{got}"
        ):
            Table1Config(sft_stage1_maps=True, **changes)


def test_trace_maps_are_true_by_default_the_arms_own_or_mixed():
    assert Table1Config().trace_maps == "true" and Table1Config(trace_maps="own").trace_maps == "own"
    assert Table1Config(trace_maps="mixed").trace_maps == "mixed"
    with pytest.raises(
        ValueError, match=r"trace_maps: expected one of \['true', 'own', 'mixed'\], got 'generated'"
    ):
        Table1Config(trace_maps="generated")


def test_stage1_batch_size_defaults_to_the_batch_size_and_must_be_positive():
    assert Table1Config(batch_size=8).stage1_batch == 8
    assert Table1Config(batch_size=8, stage1_batch_size=128).stage1_batch == 128
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="stage1_batch_size: expected a positive int or None"):
            Table1Config(stage1_batch_size=bad)
