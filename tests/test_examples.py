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
