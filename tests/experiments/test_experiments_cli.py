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


def test_preset_names_a_table1config_preset(calls):
    main(["experiment", "table1", "--preset", "tokens64", "--device", "cuda"])
    main(["experiment", "table1", "--preset", "quick"])
    (_, tokens64), (_, quick) = calls
    assert tokens64["config"] == table1.Table1Config.tokens64() and tokens64["seeds"] == 3
    assert quick["config"] == table1.Table1Config.quick() and quick["seeds"] == 1
    config = tokens64["config"]
    assert "patch_size=4" in config.backbone and "visual_positions=sincos" in config.backbone
    assert (config.stage1_steps, config.sft_steps, config.test_scenes) == (1000, 3000, 300)


def test_quick_with_another_preset_is_refused(calls):
    with pytest.raises(SystemExit, match="--quick is --preset quick; got --preset full"):
        main(["experiment", "table1", "--quick", "--preset", "full"])
    assert not calls
