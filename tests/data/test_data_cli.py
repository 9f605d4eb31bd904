import argparse
import json

import pytest

from cooper_lib.data.cli import register


def test_data_synth_writes_a_dataset(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "ds"
    args = parser.parse_args(
        [
            "data",
            "synth",
            "--out",
            str(out),
            "--n",
            "3",
            "--stage",
            "grpo",
            "--size",
            "32",
            "--questions",
            "2",
        ]
    )
    assert args.func(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["stage"], manifest["n"], manifest["config"]["width"]) == ("grpo", 3, 32)
    assert "wrote 3 train scenes" in capsys.readouterr().out


def test_an_existing_dataset_is_one_error_line_naming_the_flag(tmp_path, capsys):
    from cooper_lib.cli import main

    argv = ["data", "synth", "--out", str(tmp_path / "ds"), "--n", "1", "--size", "16", "--questions", "1"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert (
        len(err) == 1 and err[0].startswith("error: ") and err[0].endswith("pass --overwrite to replace it")
    )
    assert main([*argv, "--overwrite"]) == 0


def test_data_synth_asks_the_named_categories_and_draws_depth_over_the_given_range(tmp_path):
    from cooper_lib.cli import main

    argv = ["data", "synth", "--n", "2", "--size", "32", "--questions", "2"]
    assert main([*argv, "--out", str(tmp_path / "sft"), "--depth-display-range", "0.5", "6"]) == 0
    depth = json.loads((tmp_path / "sft" / "manifest.json").read_text())["codecs"]["depth"]
    assert (depth["min_depth"], depth["max_depth"]) == (0.5, 6.0)
    assert (
        main(
            [*argv, "--out", str(tmp_path / "qa"), "--stage", "grpo", "--categories", "colour", "count_shape"]
        )
        == 0
    )
    assert json.loads((tmp_path / "qa" / "manifest.json").read_text())["categories"] == [
        "colour",
        "count_shape",
    ]
    rows = [json.loads(line) for line in (tmp_path / "qa" / "records.jsonl").read_text().splitlines()]
    assert rows and {row["category"] for row in rows} <= {"colour", "count_shape"}


def test_data_synth_asks_the_named_answer_types(tmp_path, capsys):
    from cooper_lib.cli import main

    argv = ["data", "synth", "--n", "6", "--size", "32", "--questions", "3", "--stage", "grpo"]
    argv += ["--categories", "relative_depth", "colour"]
    assert main([*argv, "--out", str(tmp_path / "yn"), "--answer-types", "relative_depth=yes_no"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "yn" / "records.jsonl").read_text().splitlines()]
    depth = [row for row in rows if row["category"] == "relative_depth"]
    assert depth and {row["answer_type"] for row in depth} == {"yes_no"}
    assert main([*argv, "--out", str(tmp_path / "bad"), "--answer-types", "relative_depth=maybe"]) == 2
    assert "answer_types['relative_depth']: expected a non-empty list from" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--out", str(tmp_path / "bad"), "--answer-types", "relative_depth"])
    assert "--answer-types: expected CATEGORY=TYPE[,TYPE]" in capsys.readouterr().err


def test_data_synth_asks_per_category_questions_of_each_scene(tmp_path):
    from cooper_lib.cli import main

    argv = ["data", "synth", "--n", "4", "--size", "32", "--stage", "grpo", "--categories", "distance_camera"]
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    assert main([*argv, "--out", str(tmp_path / "every"), "--per-category", "6", "--questions", "6"]) == 0
    manifests = [json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("one", "every")]
    assert [m["per_category"] for m in manifests] == [1, 6]
    assert manifests[0]["records"] == 4 < manifests[1]["records"]


def test_data_synth_writes_captions_without_distances_or_with_maps_when_asked(tmp_path):
    from cooper_lib.cli import main

    argv = ["data", "synth", "--n", "4", "--size", "32", "--stage", "caption"]
    assert main([*argv, "--out", str(tmp_path / "plain"), "--no-caption-distances"]) == 0
    assert main([*argv, "--out", str(tmp_path / "metres")]) == 0

    def answers(name):
        rows = (tmp_path / name / "records.jsonl").read_text().splitlines()
        return [json.loads(line)["items"][-1]["value"] for line in rows]

    assert not any(ch.isdigit() for answer in answers("plain") for ch in answer)
    assert any(ch.isdigit() for answer in answers("metres") for ch in answer)
    assert main([*argv, "--out", str(tmp_path / "maps"), "--no-caption-distances", "--caption-maps"]) == 0
    assert len(answers("maps")) == 8 and len(list((tmp_path / "maps" / "maps").glob("*_depth.png"))) == 4
    assert [any(ch.isdigit() for ch in answer) for answer in answers("maps")] == [False, True] * 4
