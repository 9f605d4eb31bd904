import argparse
import json

import pytest
import torch

from cooper_lib.cli import main
from cooper_lib.eval.cli import model_label, register
from cooper_lib.eval.runner import read_cache


def _run(*argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


FAST = ("--n", "1", "--limit", "2", "--max-new-tokens", "4", "--batch-size", "2")


def test_eval_run_resumes_and_report_compares_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output goes to the working folder
    adaptive, text = tmp_path / "adaptive.jsonl", tmp_path / "synthetic-text_only-tiny-qwen2_vl.jsonl"
    assert _run("eval", "run", "--benchmark", "synthetic", "--family", "qwen2_vl", "--output", str(adaptive),
                "--json", str(tmp_path / "m.json"), *FAST) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "| all | 2 |" in out and "2 items done now" in out
    assert json.loads((tmp_path / "m.json").read_text())["metrics"]["n"] == 2
    _run("eval", "run", "--benchmark", "synthetic", "--family", "qwen2_vl", "--output", str(adaptive), *FAST)
    assert "0 items done now" in capsys.readouterr().out
    _run("eval", "run", "--benchmark", "synthetic", "--family", "qwen2_vl", "--policy", "text_only", *FAST)
    assert _run("eval", "report", str(adaptive), str(text), "--out", str(tmp_path / "report")) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert (
        "| adaptive | synthetic | adaptive | 2 |" in report
        and f"| {text.stem} | synthetic | text_only | 2 |" in report
    )
    assert (tmp_path / "report" / "scores.png").is_file()


def test_eval_run_loads_a_trained_model_folder(tmp_path, capsys):
    from cooper_lib.eval import evaluate, load_synthetic
    from cooper_lib.training.config import ModelConfig
    from cooper_lib.training.trainable import configure_trainable
    from cooper_lib.training.weights import build_model, gather_trainable_state, save_model

    torch.manual_seed(0)
    config = ModelConfig(llm="frozen")
    model = build_model(config)
    masked = configure_trainable(model, config).row_masked  # only the added tokens' rows are saved
    ids = model.added_token_ids
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in masked:
                param[ids] += torch.randn_like(param[ids])
            elif param.requires_grad:
                param.add_(torch.randn_like(param) * 0.05)
    save_model(tmp_path / "model", model, gather_trainable_state(model, model), config)
    out = tmp_path / "run.jsonl"
    _run(
        "eval",
        "run",
        "--benchmark",
        "synthetic",
        "--model",
        str(tmp_path / "model"),
        "--output",
        str(out),
        *FAST,
    )
    bench = load_synthetic(n=1)
    expected = evaluate(model, bench, limit=2, max_new_tokens=4, progress=False)
    assert [r["prediction"] for r in read_cache(out)[1]] == [r["prediction"] for r in expected.records]
    untrained = evaluate(build_model(config), bench, limit=2, max_new_tokens=4, progress=False)
    assert [r["prediction"] for r in untrained.records] != [r["prediction"] for r in expected.records]


def test_eval_run_needs_data_for_file_benchmarks(tmp_path):
    with pytest.raises(ValueError, match="--data is required"):
        _run("eval", "run", "--benchmark", "cvbench", "--family", "qwen2_vl")
    with pytest.raises(FileNotFoundError, match="--model: no model folder at .*missing"):
        _run("eval", "run", "--benchmark", "synthetic", "--model", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="holds neither trainable.json .* nor cooper_config.json"):
        _run("eval", "run", "--benchmark", "synthetic", "--model", str(tmp_path))


def test_eval_run_loads_a_save_pretrained_folder_with_its_backbone(tmp_path, capsys):
    from cooper_lib import add_spatial_heads
    from cooper_lib.backbones.tiny import build_tiny_backbone

    backbone, processor = build_tiny_backbone("qwen2_vl")
    add_spatial_heads(backbone, processor).save_pretrained(tmp_path / "heads")
    args = ("eval", "run", "--benchmark", "synthetic", "--model", str(tmp_path / "heads"), "--n", "1",
            "--limit", "1", "--max-new-tokens", "2", "--output", str(tmp_path / "run.jsonl"))  # fmt: skip
    with pytest.raises(ValueError, match="--backbone is required"):
        _run(*args)
    assert _run(*args, "--backbone", "tiny:qwen2_vl") == 0
    assert "1 items done now" in capsys.readouterr().out


def test_the_default_output_names_the_model(tmp_path):
    first, second = tmp_path / "run1" / "final", tmp_path / "run2" / "final"
    labels = {model_label(argparse.Namespace(model=folder, family=None)) for folder in (first, second)}
    assert len(labels) == 2 and all(label.startswith("final-") for label in labels)
    assert model_label(argparse.Namespace(model=None, family="llava")) == "tiny-llava"


def test_user_errors_are_one_line_with_status_2_and_a_traceback_with_debug(tmp_path, capsys):
    argv = ["eval", "run", "--benchmark", "synthetic", "--model", str(tmp_path / "missing")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"error: --model: no model folder at {tmp_path / 'missing'}\n"
    with pytest.raises(FileNotFoundError, match="--model: no model folder"):
        main(["--debug", *argv])


def test_allow_outside_root_lets_image_paths_leave_the_data_folder(tmp_path, write_image, capsys):
    data = tmp_path / "cvbench"
    data.mkdir()
    write_image(tmp_path / "outside.png")
    record = {"idx": 0, "type": "2D", "task": "Count", "question": "q?", "choices": ["one", "two"],
              "answer": "(A)", "prompt": "q?\n(A) one\n(B) two", "filename": "../outside.png", "source": "COCO"}  # fmt: skip
    (data / "test.jsonl").write_text(json.dumps(record) + "\n")
    argv = ("eval", "run", "--benchmark", "cvbench", "--data", str(data), "--family", "qwen2_vl",
            "--output", str(tmp_path / "out.jsonl"), *FAST)  # fmt: skip
    with pytest.raises(ValueError, match=r"'\.\./outside\.png' names a file outside .*--allow-outside-root"):
        _run(*argv)
    assert _run(*argv, "--allow-outside-root") == 0
    assert "1 items done now" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--allow-outside-root: applies to --benchmark cvbench"):
        _run("eval", "run", "--benchmark", "mmvp", "--data", str(data), "--family", "qwen2_vl",
             "--allow-outside-root")  # fmt: skip
