"""The scripts in examples/ run as documented (the pipeline, minutes long, is a slow test)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(*args: str, cwd: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_quickstart_trains_saves_and_reloads(tmp_path):
    out = _run(sys.executable, str(EXAMPLES / "quickstart.py"), "--steps", "30", "--out", "out", cwd=tmp_path)
    before, after = (float(x) for x in out.split("AbsRel: ")[1].split(" after")[0].split(" before, "))
    assert after < before
    assert (tmp_path / "out" / "heads" / "spatial_heads.safetensors").is_file()
    assert (tmp_path / "out" / "depth.png").stat().st_size > 0


@pytest.mark.slow
def test_hf_trainer_example_trains_saves_and_reloads(tmp_path):
    """examples/hf_trainer.py as documented in docs/trainer.md (the in-process twin is tests/test_model_trainer.py)."""
    out = _run(sys.executable, str(EXAMPLES / "hf_trainer.py"), "--steps", "10", "--out", "out", cwd=tmp_path)
    first, last = (float(x.split(" at")[0]) for x in out.split("loss: ")[1].split(", "))
    assert last < first
    assert "reloaded depth identical: True" in out
    assert (tmp_path / "out" / "final" / "model.safetensors").is_file()


def test_interleaved_reasoning_writes_a_trace(tmp_path):
    out = _run(sys.executable, str(EXAMPLES / "interleaved_reasoning.py"), "--out", "t.html", cwd=tmp_path)
    assert "tool_call: Estimate the depth." in out and "answer: 'A' (answer)" in out
    assert "<img" in (tmp_path / "t.html").read_text()


@pytest.mark.slow
def test_two_stage_pipeline_runs_end_to_end(tmp_path):
    cli = Path(sys.executable).with_name("cooper-lib")
    env_cli = str(cli) if cli.exists() else "cooper-lib"
    done = subprocess.run(
        ["bash", str(EXAMPLES / "two_stage_pipeline.sh"), str(tmp_path / "work")],
        env={**os.environ, "COOPER_LIB": env_cli, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "items done now" in done.stdout
    assert (tmp_path / "work" / "runs" / "tiny" / "grpo" / "final").is_dir()


def _png_base64(rng, size: int = 64) -> str:
    import base64
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def write_cooper_rows(folder: Path) -> tuple[Path, Path, Path]:
    """SFT and RL rows exactly as COOPER's files hold them: ``interleaved_reason`` lists of
    {type, value (base64 image or text), need_loss "true"/"false"} (upstream
    data/interleave_datasets/interleave_reason.py) and RL_data.jsonl objects {question, answer,
    image (relative to --image_root), data_id, flag} (train/grpo/grpo_data_module.py:22-33)."""
    import json

    import numpy as np
    from cooper_prompts import COOPER_REFLECTION_PROMPT
    from PIL import Image

    rng = np.random.default_rng(0)
    question = "Which object is closer to the camera? (A) the red box (B) the blue ball"
    call = "<think>I need the depth.</think><depth-estimation>Estimate the depth of the image and generate the depth map.</depth-estimation>"
    sft = []
    for n in range(8):
        answer = f"<think>The map shows it.</think><answer>The {'red box' if n % 2 else 'blue ball'}. \\boxed{{{'A' if n % 2 else 'B'}}}</answer>"
        head = [
            {"type": "image", "value": _png_base64(rng), "need_loss": "false"},
            {"type": "text", "value": question, "need_loss": "false"},
        ]
        tool = [
            {"type": "text", "value": call, "need_loss": "true"},
            {"type": "image", "value": _png_base64(rng), "need_loss": "false"},
            {"type": "text", "value": COOPER_REFLECTION_PROMPT, "need_loss": "false"},
        ]
        tail = [{"type": "text", "value": answer, "need_loss": "true"}]
        sft.append({"interleaved_reason": head + (tool if n < 6 else []) + tail})
    images = folder / "images"
    images.mkdir(parents=True)
    answers = ["(A) the red box", "(B) the blue ball", "Yes", "No", "3", "2.5 m", "(A)", "blue"]
    flags = ["positive", "negative", "boundary", None, "positive", "negative", None, "boundary"]
    rl = []
    for n, (answer, flag) in enumerate(zip(answers, flags, strict=True)):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(images / f"{n}.png")
        row = {"question": question, "answer": answer, "image": f"{n}.png", "data_id": 100 + n}
        rl.append(row if flag is None else {**row, "flag": flag})
    sft_path, rl_path = folder / "interleaved_reason.jsonl", folder / "RL_data.jsonl"
    sft_path.write_text("".join(json.dumps(r) + "\n" for r in sft))
    rl_path.write_text("".join(json.dumps(r) + "\n" for r in rl))
    return sft_path, rl_path, images


@pytest.mark.slow
def test_two_stage_pipeline_runs_on_coopers_own_rows(tmp_path):
    sft, rl, images = write_cooper_rows(tmp_path / "cooper")
    cli = Path(sys.executable).with_name("cooper-lib")
    env_cli = str(cli) if cli.exists() else "cooper-lib"
    done = subprocess.run(
        ["bash", str(EXAMPLES / "two_stage_pipeline.sh"), str(tmp_path / "work")],
        env={
            **os.environ,
            "COOPER_LIB": env_cli,
            "OMP_NUM_THREADS": "1",
            "SFT_DATA": str(sft),
            "RL_DATA": str(rl),
            "RL_IMAGE_ROOT": str(images),
        },
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = tmp_path / "work" / "runs" / "tiny"
    assert (runs / "sft" / "final").is_dir() and (runs / "grpo" / "final").is_dir()
    # the stages trained on COOPER's files, not on the synthetic records
    assert str(sft) in (runs / "sft" / "config.yaml").read_text()
    grpo = (runs / "grpo" / "config.yaml").read_text()
    assert str(rl) in grpo and str(images) in grpo
