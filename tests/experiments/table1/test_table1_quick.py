"""The `--quick` experiment end to end (slow: about 10 minutes on an idle 2-core CPU)."""

import json

import pytest

from cooper_lib.cli import main


@pytest.mark.slow
def test_quick_run_writes_the_report_and_qa_only_beats_the_best_fixed_answer(tmp_path):
    assert (
        main(["experiment", "table1", "--quick", "--seeds", "1", "--out", str(tmp_path), "--device", "cpu"])
        == 0
    )
    report = (tmp_path / "report.md").read_text()
    assert "## Perception use" in report and (tmp_path / "table1.png").exists()
    data = json.loads((tmp_path / "results.json").read_text())
    (qa,) = [r for r in data["results"] if r["arm"] == "qa_only"]
    records = qa["conditions"]["main"]
    accuracy = 100 * sum(r["score"] for r in records) / len(records)
    assert accuracy > data["priors"]["overall"]["best_fixed"], (accuracy, data["priors"]["overall"])
