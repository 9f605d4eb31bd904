"""`cooper-lib experiment table1`: the flags reach `run_table1` (the runs themselves are tested in
tests/experiments/table1)."""

import pytest

import cooper_lib.experiments.table1 as table1
from cooper_lib.cli import main


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


def test_jobs_must_be_a_number(calls, capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "table1", "--jobs", "two"])
    assert "--jobs" in capsys.readouterr().err and not calls
