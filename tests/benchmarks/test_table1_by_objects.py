"""`benchmarks/table1_by_objects.py`: distance scores split by the scene's object count."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "table1_by_objects.py"


def _run(out):
    return subprocess.run([sys.executable, str(SCRIPT), str(out)], capture_output=True, text=True)


def test_scores_split_by_object_count(tmp_path):
    (tmp_path / "data" / "test").mkdir(parents=True)
    scenes = [{"name": "000000", "objects": [{}]}, {"name": "000001", "objects": [{}, {}, {}]}]
    (tmp_path / "data" / "test" / "scenes.jsonl").write_text("\n".join(map(json.dumps, scenes)) + "\n")
    rows = [
        {"id": "000000-0", "category": "distance_camera", "score": 1.0},
        {"id": "000000-1", "category": "distance_camera", "score": 0.5},
        {"id": "000000-2", "category": "colour", "score": 0.0},
        {"id": "000001-0", "category": "distance_camera", "score": 0.2},
    ]
    arm = tmp_path / "seed-0" / "cooper"
    arm.mkdir(parents=True)
    result = {"arm": "cooper", "seed": 0, "conditions": {"main": rows, "true": rows[:1]}}
    (arm / "results.json").write_text(json.dumps(result))
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "| seed | arm | condition | 1 object | 3 objects |"
    assert lines[2] == "| 0 | cooper | main | 75.0 (2) | 20.0 (1) |"
    assert lines[3] == "| 0 | cooper | true | 100.0 (1) |  |"


def test_a_folder_without_finished_arms_is_named(tmp_path):
    (tmp_path / "data" / "test").mkdir(parents=True)
    (tmp_path / "data" / "test" / "scenes.jsonl").write_text(
        json.dumps({"name": "000000", "objects": []}) + "\n"
    )
    done = _run(tmp_path)
    assert done.returncode != 0 and "expected finished arms" in done.stderr
