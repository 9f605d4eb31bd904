"""`cooper-lib experiment table1`: the flags reach `run_table1` (the runs themselves are tested in
tests/experiments/table1)."""

import argparse
import json

import pytest
import yaml

import cooper_lib.experiments.table1 as table1
from cooper_lib.cli import main
from cooper_lib.training.config import config_arguments


@pytest.fixture
def calls(monkeypatch, tmp_path):
    seen = []

    def fake_run(out, **kwargs):
        seen.append((out, kwargs))
        return tmp_path / "report.md"

    monkeypatch.setattr(table1, "run_table1", fake_run)
    return seen


def test_defaults_are_three_seeds_of_the_full_preset(calls, capsys):
    assert main(["experiment", "table1", "--out", "t1"]) == 0
    ((out, kwargs),) = calls
    assert out == "t1" and kwargs["seeds"] == 3 and kwargs["jobs"] is None and kwargs["device"] is None
    assert kwargs["config"] == table1.Table1Config.full()
    assert "report: " in capsys.readouterr().out


def test_quick_jobs_device_and_arms_are_passed_on(calls):
    main(["experiment", "table1", "--quick", "--jobs", "2", "--device", "cpu", "--arms", "qa_only", "cooper"])
    ((_, kwargs),) = calls
    assert kwargs["seeds"] == 1 and kwargs["jobs"] == 2 and kwargs["device"] == "cpu"
    assert kwargs["arms"] == ["qa_only", "cooper"] and kwargs["config"] == table1.Table1Config.quick()


def test_seed_ids_name_the_seeds_and_exclude_a_count(calls):
    main(["experiment", "table1", "--seed-ids", "2", "3"])
    ((_, kwargs),) = calls
    assert kwargs["seeds"] == [2, 3]
    with pytest.raises(SystemExit, match="--seed-ids names the seeds, --seeds counts them"):
        main(["experiment", "table1", "--seed-ids", "2", "--seeds", "3"])
    with pytest.raises(SystemExit, match="--seed-ids names the seeds, --seeds counts them"):
        main(["experiment", "table1", "--seed-ids", "2", "--seeds", "3", "--print-config"])
    assert len(calls) == 1


def test_jobs_must_be_a_number(calls, capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "table1", "--jobs", "two"])
    assert "--jobs" in capsys.readouterr().err and not calls


def test_preset_names_a_table1config_preset(calls):
    main(["experiment", "table1", "--preset", "tokens64", "--device", "cuda"])
    main(["experiment", "table1", "--preset", "quick"])
    (_, tokens64), (_, quick) = calls
    assert tokens64["config"] == table1.Table1Config.tokens64() and tokens64["seeds"] == 3
    assert quick["config"] == table1.Table1Config.quick() and quick["seeds"] == 1
    config = tokens64["config"]
    assert "patch_size=4" in config.backbone and "visual_positions=sincos" in config.backbone
    assert (config.stage1_steps, config.sft_steps, config.test_scenes) == (1000, 3000, 1200)
    assert (config.spatial["query_grid"], config.spatial["head_width"]) == ([8, 8], 128)


def test_the_cooper_data_preset_is_tokens64_on_scarce_questions_and_plentiful_maps(calls):
    main(["experiment", "table1", "--preset", "cooper_data", "--arms", "qa_only", "cooper"])
    ((_, kwargs),) = calls
    config = kwargs["config"]
    assert config == table1.Table1Config.cooper_data() and kwargs["seeds"] == 3
    assert config.backbone == table1.Table1Config.tokens64().backbone
    # the recipe of benchmarks/RESULTS.md's "COOPER's data on the maps-read recipe"
    assert (config.train_scenes, config.map_scene_count, config.stage1_llm) == (1000, 4000, "frozen")
    assert (config.stage1_steps, config.stage1_batch) == (1000, 128)
    assert (config.sft_steps, config.batch_size) == (6000, 16)
    assert (config.map_loss_weight, config.tool_ratio, config.trace_maps) == (0.25, 1.0, "true")


def test_quick_with_another_preset_is_refused(calls):
    with pytest.raises(SystemExit, match="--quick is --preset quick; got --preset full"):
        main(["experiment", "table1", "--quick", "--preset", "full"])
    assert not calls


def test_field_flags_change_the_preset(calls):
    main(
        ["experiment", "table1", "--preset", "tokens64", "--sft_steps", "6000", "--train_scenes", "4000"]
        + ["--categories", "distance_camera", "--no-supervise_maps"]
    )
    ((_, kwargs),) = calls
    expected = table1.Table1Config.tokens64().with_(
        sft_steps=6000, train_scenes=4000, categories=("distance_camera",), supervise_maps=False
    )
    assert kwargs["config"] == expected


def test_a_run_folders_config_json_is_a_config_and_flags_win_over_it(calls, tmp_path):
    made = table1.Table1Config.tokens64().with_(backbone="tiny:qwen2_vl?hidden_size=64", lr=5e-4)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(made.to_dict()))
    main(["experiment", "table1", "--config", str(path), "--out", str(tmp_path)])
    main(["experiment", "table1", "--config", str(path), "--lr", "2e-4"])
    (_, resumed), (_, changed) = calls
    assert resumed["config"] == made
    assert changed["config"] == made.with_(lr=2e-4)


def test_a_config_file_names_fields_over_the_preset(calls, tmp_path):
    path = tmp_path / "lever.yaml"
    path.write_text("sft_steps: 7\nscene: {max_objects: 2}\n")
    main(["experiment", "table1", "--quick", "--config", str(path)])
    ((_, kwargs),) = calls
    assert kwargs["config"] == table1.Table1Config.quick().with_(sft_steps=7, scene={"max_objects": 2})
    assert kwargs["seeds"] == 1


def test_print_config_prints_the_resolved_settings_and_runs_nothing(calls, capsys):
    assert (
        main(["experiment", "table1", "--preset", "tokens64", "--sft_steps", "6000", "--print-config"]) == 0
    )
    printed = yaml.safe_load(capsys.readouterr().out)
    assert not calls
    assert table1.Table1Config.from_dict(printed) == table1.Table1Config.tokens64().with_(sft_steps=6000)


def test_a_bad_field_value_or_file_is_an_error_naming_it(calls, capsys, tmp_path):
    assert main(["experiment", "table1", "--sft_steps", "0"]) == 2
    assert "sft_steps: expected a positive int, got 0" in capsys.readouterr().err
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"sft_step": 5}))
    assert main(["experiment", "table1", "--config", str(path)]) == 2
    assert "sft_step" in capsys.readouterr().err
    assert main(["experiment", "table1", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: config file not found" in capsys.readouterr().err
    assert not calls


def test_every_field_flag_says_what_it_sets(capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "table1", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--train_per_category INT questions drawn per category on each training scene" in text
    assert "--num_generations INT GRPO's rollouts per prompt. (default: 4)" in text
    parser = argparse.ArgumentParser()
    config_arguments(parser, table1.Table1Config)
    helps = {a.dest: a.help for a in parser._actions if a.dest != "help"}
    assert set(helps) == set(table1.Table1Config.__dataclass_fields__)
    assert not [name for name, help in helps.items() if help.startswith(" (default")]
