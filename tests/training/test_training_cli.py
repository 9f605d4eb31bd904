import argparse

import pytest
import yaml
from training_setup import SPATIAL

from cooper_lib.training import cli
from cooper_lib.training.weights import load_trained_model


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="cooper-lib")
    cli.register(root.add_subparsers(dest="command", required=True))
    return root


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["train", "grpo", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--config",
        "--optim.lr",
        "--run.max_steps",
        "--num_generations",
        "--kl_beta",
        "--model.llm",
    ):
        assert flag in text
    assert "rollouts per prompt" in text and "(default: 8)" in text


@pytest.mark.parametrize(
    ("stage", "flag", "default"),
    [("stage1", "--run.max_steps", "6000"), ("stage1", "--run.ema_decay", "0.995"),
     ("sft", "--run.max_steps", "600"), ("grpo", "--optim.lr", "3e-06"), ("grpo", "--optim.scheduler", "'cosine'")],
)  # fmt: skip
def test_help_shows_each_stages_own_section_defaults(capsys, stage, flag, default):
    with pytest.raises(SystemExit):
        parser().parse_args(["train", stage, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    entry = text.rsplit(flag, 1)[1].split(" --", 1)[0]  # the options list, after the usage line
    assert f"(default: {default})" in entry, entry


def test_flags_override_the_file(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"run": {"max_steps": 7, "batch_size": 2}, "mixture": {"depth": 1.0}}))
    args = parser().parse_args(
        ["train", "stage1", "--config", str(path), "--run.max_steps", "3", "--print-config"]
    )
    assert args.func(args) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (
        printed["run"]["max_steps"] == 3
        and printed["run"]["batch_size"] == 2
        and printed["mixture"] == {"depth": 1.0}
    )
    bad = parser().parse_args(["train", "stage1", "--optim.scheduler", "step"])
    with pytest.raises(ValueError, match="optim.scheduler"):
        args.func(bad)


def test_train_stage1_from_the_command_line(synthetic, tmp_path, capsys):
    config = {
        "model": {"backbone": "tiny:qwen2_vl", "spatial": SPATIAL},
        "run": {"output_dir": str(tmp_path / "run"), "max_steps": 2, "batch_size": 2, "progress_bar": False},
        "data": [str(synthetic["stage1"] / "records.jsonl")],
    }
    path = tmp_path / "stage1.yaml"
    path.write_text(yaml.safe_dump(config))
    args = parser().parse_args(
        ["train", "stage1", "--config", str(path), "--optim.lr", "1e-3", "--run.report_to", "none"]
    )
    assert args.func(args) == 0
    assert "final model:" in capsys.readouterr().out
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 1e-3 and saved["run"]["report_to"] == ["none"]
    assert saved["model"]["backbone"] == "tiny:qwen2_vl?seed=0"  # run.seed, recorded for reloading
    from cooper_lib.backbones.tiny import build_tiny_backbone

    loaded = load_trained_model(tmp_path / "run" / "final", *build_tiny_backbone("qwen2_vl"))
    assert loaded.config.num_classes == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("run:\n  max_steps: [1\n", r"c.yaml: not valid YAML at line 3"),
        ("model:\n  spatial:\n    query_grid: 2x2\n", r"query_grid: expected a list, got '2x2'"),
        ("model:\n  spatial:\n    num_classes: '7'\n", r"num_classes: expected int, got '7'"),
        ("run:\n  max_stepz: 3\n", r"unknown fields \['max_stepz'\]; expected a subset of \[.*'max_steps'"),
        (
            "model:\n  backbone: ./no-such-folder\n  spatial: {}\n",
            r"name: no local folder or file at ./no-such-folder",
        ),
    ],
)
def test_config_file_errors_are_one_line_naming_the_file_or_key(tmp_path, capsys, text, message):
    from cooper_lib.cli import main

    (tmp_path / "c.yaml").write_text(text)
    out = str(tmp_path / "run")
    assert main(["train", "stage1", "--config", str(tmp_path / "c.yaml"), "--run.output_dir", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert __import__("re").search(message, err), err


def test_the_reference_model_trains_in_stages_and_evaluates_from_the_command_line(
    synthetic, tmp_path, capsys
):
    from cooper_lib.cli import main
    from cooper_lib.models.cooper import CooperModel

    run = {"max_steps": 2, "batch_size": 1, "progress_bar": False, "tensorboard": False, "ema_decay": None}
    stage1 = {
        "model": {"cooper": "tiny"},
        "run": {**run, "output_dir": str(tmp_path / "stage1")},
        "data": [str(synthetic["stage1"] / "records.jsonl")],
        "num_workers": 0,
    }
    (tmp_path / "stage1.yaml").write_text(yaml.safe_dump(stage1))
    assert main(["train", "stage1", "--config", str(tmp_path / "stage1.yaml")]) == 0
    final = tmp_path / "stage1" / "final"
    saved = yaml.safe_load((tmp_path / "stage1" / "config.yaml").read_text())
    assert saved["model"]["cooper"] == "tiny" and saved["model"]["backbone"] is None
    sft = {
        "model": {"cooper": str(final)},  # the next stage starts from the stage-1 release folder
        "run": {**run, "max_steps": 1, "output_dir": str(tmp_path / "sft")},
        "data": [str(synthetic["sft"] / "records.jsonl")],
        "system_prompt": "",
        "num_workers": 0,
    }
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(sft))
    assert main(["train", "sft", "--config", str(tmp_path / "sft.yaml")]) == 0
    assert "final model:" in capsys.readouterr().out
    CooperModel.from_pretrained(tmp_path / "sft" / "final")  # key for key
    out = tmp_path / "eval.jsonl"
    assert main(["eval", "run", "--benchmark", "synthetic", "--model", str(tmp_path / "sft" / "final"),
                 "--policy", "text_only", "--n", "1", "--limit", "1", "--max-new-tokens", "4",
                 "--output", str(out)]) == 0  # fmt: skip
    assert "1 items done now" in capsys.readouterr().out and out.is_file()
    both = {**stage1, "model": {"cooper": "tiny", "backbone": "tiny:llava"}}
    (tmp_path / "both.yaml").write_text(yaml.safe_dump(both))
    assert main(["train", "stage1", "--config", str(tmp_path / "both.yaml")]) == 2
    assert "set exactly one" in capsys.readouterr().err
