"""`benchmarks/table1_power.py`: the seeds' spread pooled from the lever table, and what it lets a run show."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "table1_power.py"

TABLE = """# Results

| lever (its section below) | QA-only | COOPER, own maps | COOPER - QA-only | swap | object |
| --- | --- | --- | --- | --- | --- |
| none | 70.0 / 68.0 | 60.0 / 64.0 | . | . | . |
| a second lever, the same QA-only runs | 70.0 / 68.0 | 61.0 / 61.0 | . | . | . |
| one seed of COOPER kept | 66.0 / 66.0 | . / 64.8 | . | . | . |

Text after the table: 10.0 / 20.0
"""


def test_pooled_spread_half_widths_and_clearing_chances(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(TABLE)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--results", str(results), "--draws", "4000"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # QA-only: (70, 68) once and (66, 66): variances 2 and 0; COOPER: (60, 64) and (61, 61): 8 and 0
    assert "QA-only 2 (distinct), COOPER 2" in out
    assert "QA-only 1.00, COOPER 2.00" in out
    # three seeds: t = 4.303, half-widths 4.303 / sqrt(3) and twice that
    assert "| 3 | 4.303 | 2.5 | 5.0 | 7.5 |" in out
    rows = {
        line.split(" | ")[0]: line.split(" | ")[1:] for line in out.splitlines() if line.startswith("| +")
    }
    assert [cell.strip(" |") for cell in rows["| +0.0"]] == ["0", "0", "0", "0", "0"]
    assert rows["| +12.5"][-1].strip(" |") == "100"  # ten seeds of a 12.5-point effect always clear it
