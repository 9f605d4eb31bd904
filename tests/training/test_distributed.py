"""Two CPU processes (torchrun, gloo) against one process accumulating the same two micro-batches."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ddp_worker.py")


def run_worker(stage: str, data: Path, out: Path, *, processes: int, grad_accum: int) -> list[dict]:
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
    ]
    command = [
        *(launcher if processes > 1 else [sys.executable]),
        str(WORKER),
        stage,
        str(data),
        str(out),
        str(grad_accum),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "history.json").read_text())


def assert_same_history(two: list[dict], one: list[dict]) -> None:
    assert [h["step"] for h in two] == [h["step"] for h in one]
    for a, b in zip(two, one, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if math.isnan(b[key]):
                assert math.isnan(a[key]), key
            else:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize(
    "stage",
    ["stage1", pytest.param("sft", marks=pytest.mark.slow), pytest.param("grpo", marks=pytest.mark.slow)],
)
def test_two_processes_match_one_process_on_the_same_global_batch(stage, synthetic, tmp_path):
    data = synthetic[stage] / "records.jsonl"
    two = run_worker(stage, data, tmp_path / "two", processes=2, grad_accum=1)
    one = run_worker(stage, data, tmp_path / "one", processes=1, grad_accum=2)
    assert len(two) == 3
    assert_same_history(two, one)  # losses, per-modality losses and gradient norms, step by step
