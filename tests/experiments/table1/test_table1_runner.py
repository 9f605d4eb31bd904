"""`run_table1` on the micro preset: every arm's folder, the report, and resuming without retraining."""

import json
import math
import os
import sys
import time
from pathlib import Path

import pytest

from cooper_lib.experiments.table1 import Table1Config, run_table1, runner
from cooper_lib.experiments.table1 import arms as arms_module
from cooper_lib.experiments.table1.evaluation import held_out_benchmark


def _refuse(*args, **kwargs):
    raise AssertionError("trained again although the result was on disk")


def test_run_writes_report_and_resumes_without_retraining(tmp_path, monkeypatch):
    # jobs=1: everything in this process, where the monkeypatches below reach
    config = Table1Config.micro()
    config = config.with_(
        stage1_scenes=config.train_scenes + 2,
        caption_distances=False,
        caption_maps=True,
        base_map_scenes=3,
        trace_maps="own",
        sft_stage1_maps=True,
    )
    starts = []  # (stage output folder, init_from) of every model the arms build
    model_config = arms_module._model_config
    monkeypatch.setattr(
        arms_module,
        "_model_config",
        lambda config, seed, init_from, *weight: (
            starts.append(init_from) or model_config(config, seed, init_from, *weight)
        ),
    )
    report = run_table1(tmp_path, seeds=1, config=config, arms=["qa_only", "bagel_pe"], device="cpu", jobs=1)
    monkeypatch.undo()
    assert report.read_text().startswith("# Table 1 (synthetic)")
    # one base model, trained once on captions; both arms' first stages start from it
    base = tmp_path / "seed-0" / "base" / "final"
    assert starts[0] is None and starts.count(None) == 1 and base in starts
    assert starts.count(base) == 2  # qa_only's SFT and bagel_pe's stage 1
    assert (
        "base model: 1 caption steps on 2 other training scenes (objects named, no distances) and as "
        "many map captions (the distances read off the scene's true depth map), and 3 map readings "
        "(one-object scenes' true depth maps alone, asked the object's distance)" in report.read_text()
    )
    assert "stage 1 on the maps of those scenes and 2 more (no questions asked of them)" in report.read_text()
    captions = [json.loads(line) for line in (tmp_path / "data" / "base" / "records.jsonl").open()]
    photo = [row for row in captions if row["meta"]["category"] == "caption"]
    maps = [row for row in captions if row["meta"]["category"] == "map_caption"]
    assert len(photo) == len(maps) == config.base_scenes
    assert not any(ch.isdigit() for row in photo for ch in row["items"][-1]["value"])  # no metres
    # metres only where a depth map is shown, with the empty text after it the traces have
    assert any(ch.isdigit() for row in maps for ch in row["items"][-1]["value"])
    # the base model trained on the captions and the map readings
    (state,) = (tmp_path / "seed-0" / "base" / "checkpoints").glob("*/state.json")
    assert json.loads(state.read_text())["config"]["data"] == [
        str(tmp_path / "data" / name / "records.jsonl") for name in ("base", "base_maps")
    ]
    assert all(
        [i["value"] for i in row["items"] if i["role"] == "tool" and i["type"] == "text"] == [""]
        for row in maps
    )

    # the perceive-first traces showed the maps bagel_pe's stage-1 model drew; QA-only's set is its own
    def trained_on(arm):
        (state,) = (tmp_path / "seed-0" / arm / "train" / "sft" / "checkpoints").glob("*/state.json")
        return json.loads(state.read_text())["config"]["data"]

    assert trained_on("bagel_pe") == [
        str(tmp_path / "data" / name / "own-seed-0-bagel_pe.jsonl") for name in ("qa", "stage1_maps")
    ]
    assert trained_on("qa_only") == [str(tmp_path / "data" / "qa" / "records.jsonl")]
    assert (
        "trace maps: the perceiving arms' SFT traces show the maps their own stage-1 model"
        in report.read_text()
    )
    assert (
        "stage-1 maps in SFT: the perceiving arms' SFT after stage 1 also draws 2 map records"
        in report.read_text()
    )
    assert (tmp_path / "table1.png").stat().st_size > 0
    pe = json.loads((tmp_path / "seed-0" / "bagel_pe" / "results.json").read_text())
    qa = json.loads((tmp_path / "seed-0" / "qa_only" / "results.json").read_text())
    assert set(pe["conditions"]) == {"main", "other_scene", "true"} and set(qa["conditions"]) == {"main"}
    assert qa["map_elasticity"] is None
    assert {region: set(by_scale) for region, by_scale in pe["map_elasticity"].items()} == {
        "map": {"0.8", "1.25"},
        "object": {"0.8", "1.25"},
    }
    assert all(v is None or math.isfinite(v) for by in pe["map_elasticity"].values() for v in by.values())
    # every arm answered every question of the held-out benchmark
    questions = {item.id for item in held_out_benchmark(tmp_path / "data" / "test" / "records.jsonl").items}
    for result in json.loads((tmp_path / "results.json").read_text())["results"]:
        assert {r["id"] for r in result["conditions"]["main"]} == questions
    # every question of the perceive-first arm called both tools; the QA arm none
    assert all(r["tools"] == ["depth", "segmentation"] for r in pe["conditions"]["main"])
    assert all(isinstance(r["prediction"], str) for r in qa["conditions"]["main"])
    assert not any(r["tools"] for r in qa["conditions"]["main"])
    assert set(pe["map_quality"]) == {
        "depth_abs_rel",
        "depth_delta1",
        "depth_abs_rel_objects",
        "depth_object_mra",
        "segmentation_miou",
    }
    fixed = json.loads((tmp_path / "results.json").read_text())["fixed_map"]
    assert set(fixed) == {
        "depth_abs_rel",
        "depth_delta1",
        "depth_abs_rel_objects",
        "depth_object_mra",
        "true_map_object_mra",
    }
    assert "| fixed map | " in report.read_text()
    # the perceiving model is shown depth over the range its SFT traces were drawn with
    saved = json.loads(
        (tmp_path / "seed-0" / "bagel_pe" / "train" / "sft" / "final" / "cooper_config.json").read_text()
    )
    assert tuple(saved["depth_display_range"]) == config.depth_display_range
    # no system prompt by default: neither in the SFT records nor in what the reasoner sends
    for name in ("qa", "interleaved"):
        rows = [json.loads(line) for line in (tmp_path / "data" / name / "records.jsonl").open()]
        assert rows and not any(item["role"] == "system" for row in rows for item in row["items"])

    # a rerun skips finished arms entirely
    monkeypatch.setattr(runner, "train_arm", _refuse)
    monkeypatch.setattr(runner, "answer", _refuse)
    run_table1(tmp_path, seeds=1, config=config, arms=["qa_only", "bagel_pe"], device="cpu", jobs=1)
    monkeypatch.undo()

    # an arm whose marker is gone is scored again from its trained model, not retrained; the
    # upper bound reuses the perceive-first model
    (tmp_path / "seed-0" / "qa_only" / "DONE").unlink()
    for name in ("Stage1Trainer", "InterleavedSFTTrainer", "SpatialGRPOTrainer"):
        monkeypatch.setattr(arms_module, name, _refuse)
    run_table1(tmp_path, seeds=1, config=config, arms=["qa_only", "true_maps"], device="cpu", jobs=1)
    assert (tmp_path / "seed-0" / "qa_only" / "DONE").exists()
    upper = json.loads((tmp_path / "seed-0" / "true_maps" / "results.json").read_text())
    assert upper["model"].endswith("bagel_pe/train/sft/final")


def test_seeds_trained_in_two_folders_come_together_without_retraining(tmp_path, monkeypatch):
    """docs/experiment-table1.md: seeds trained apart (`--seed-ids`) merge by copying their
    ``seed-<s>/`` folders into one run folder; a rerun with every seed reports them all."""
    import shutil

    config = Table1Config.micro()
    first, second = tmp_path / "first", tmp_path / "second"
    run_table1(first, seeds=[0], config=config, arms=["qa_only"], device="cpu", jobs=1)
    run_table1(second, seeds=[1], config=config, arms=["qa_only"], device="cpu", jobs=1)
    assert not (second / "seed-0").exists()
    shutil.copytree(second / "seed-1", first / "seed-1")
    monkeypatch.setattr(runner, "train_arm", _refuse)
    monkeypatch.setattr(runner, "answer", _refuse)
    monkeypatch.setattr(runner, "train_base", _refuse)
    run_table1(first, seeds=2, config=config, arms=["qa_only"], device="cpu", jobs=1)
    results = json.loads((first / "results.json").read_text())["results"]
    assert [(r["seed"], r["arm"]) for r in results] == [(0, "qa_only"), (1, "qa_only")]
    assert "Seeds: [0, 1]." in (first / "report.md").read_text()


def test_a_script_without_the_main_guard_is_told_what_it_lacks(tmp_path):
    """Spawned processes re-run a script's top level: without ``if __name__ == "__main__":`` they die
    as they start, and the error says so instead of only "BrokenProcessPool"."""
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(
        "from cooper_lib.experiments.table1 import Table1Config, run_table1\n"
        f"run_table1({str(tmp_path / 'out')!r}, seeds=2, config=Table1Config.micro(), arms=['qa_only'], "
        "device='cpu', jobs=2)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "seed(s) [0, 1] failed" in done.stderr and "BrokenProcessPool" in done.stderr
    assert 'must call it under `if __name__ == "__main__":`' in done.stderr


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (an orphan's init may not reap it at once)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_run_leaves_no_process_training(tmp_path):
    """SIGKILL (or SIGTERM) to the run does not reach its worker processes; they end on their own
    once it has gone instead of training on as orphans."""
    import signal
    import subprocess

    pid_file = tmp_path / "worker.pid"
    script = tmp_path / "run.py"
    script.write_text(
        "import multiprocessing, os, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from cooper_lib.experiments.table1.runner import _stop_with_parent\n"
        "def work(path):\n"
        "    open(path, 'w').write(str(os.getpid()))\n"
        "    time.sleep(300)\n"
        "if __name__ == '__main__':\n"
        "    context = multiprocessing.get_context('spawn')\n"
        "    with ProcessPoolExecutor(1, mp_context=context, initializer=_stop_with_parent) as pool:\n"
        f"        pool.submit(work, {str(pid_file)!r}).result()\n"
    )
    run = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        worker = int(pid_file.read_text())
        assert _running(worker)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    deadline = time.monotonic() + 20
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = _running(worker)
    if alive:
        os.kill(worker, signal.SIGKILL)
    assert not alive, "the worker trained on after its run was killed"


def test_resuming_with_other_settings_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(Table1Config.micro().with_(sft_steps=3).to_dict()))
    with pytest.raises(
        ValueError, match=r"other settings \(sft_steps differ\); resume it .*--config .*config.json"
    ):
        run_table1(tmp_path, seeds=1, config=Table1Config.micro(), device="cpu")
    assert not (tmp_path / "data").exists()


def test_a_run_from_before_a_field_existed_resumes_with_its_default(tmp_path):
    """A run's config.json written before `stage1_llm` existed resumes with the default, the
    behaviour it had, and not with another value."""
    from cooper_lib.experiments.table1.runner import _check_same_config

    saved = Table1Config.micro().to_dict()
    del saved["stage1_llm"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    _check_same_config(tmp_path / "config.json", Table1Config.from_dict(saved))
    with pytest.raises(ValueError, match=r"other settings \(stage1_llm differ\)"):
        _check_same_config(tmp_path / "config.json", Table1Config.micro().with_(stage1_llm="frozen"))


def test_run_rejects_unknown_arms_and_empty_seeds(tmp_path):
    with pytest.raises(ValueError, match="arms"):
        run_table1(tmp_path, seeds=1, config=Table1Config.micro(), arms=["nope"], device="cpu")
    with pytest.raises(ValueError, match="seeds"):
        run_table1(tmp_path, seeds=[], config=Table1Config.micro(), device="cpu")
    with pytest.raises(ValueError, match="sft_steps"):
        Table1Config(sft_steps=0)


def test_categories_restrict_every_set(tmp_path):
    from cooper_lib.experiments.table1.data import prepare_data

    config = Table1Config.micro().with_(categories=("existence", "count_colour"), test_scenes=6)
    files = prepare_data(tmp_path, config)
    for name in ("qa", "grpo", "test"):
        rows = [json.loads(line) for line in files[name].open()]
        categories = {row.get("category") or row["meta"]["category"] for row in rows}
        assert rows and categories <= {"existence", "count_colour"}
    assert {item.category for item in held_out_benchmark(files["test"]).items} <= {
        "existence",
        "count_colour",
    }
    with pytest.raises(ValueError, match="categories"):
        Table1Config(categories=("nope",))


def test_relative_depth_is_asked_yes_no_only_in_every_set(tmp_path):
    from cooper_lib.experiments.table1.data import prepare_data

    config = Table1Config.micro().with_(categories=("relative_depth",), train_scenes=8, test_scenes=8)
    files = prepare_data(tmp_path, config)
    for name in ("grpo", "test"):
        rows = [json.loads(line) for line in files[name].open()]
        assert rows and {row["answer_type"] for row in rows} == {"yes_no"}
    answers = [json.loads(line)["items"][-1]["value"] for line in files["qa"].open()]
    assert answers and all(a.endswith(("{yes}</answer>", "{no}</answer>")) for a in answers)
    with pytest.raises(ValueError, match=r"answer_types\['relative_depth'\]"):
        Table1Config(answer_types={"relative_depth": ("maybe",)})


def test_a_turn_budget_that_cuts_trained_turns_is_refused(tmp_path):
    """The COOPER arm's tool-call turns run to about 110 tokens: a 40-token budget cut every one
    of them at evaluation, so the arm never called a tool (benchmarks/RESULTS.md)."""
    from cooper_lib.experiments.table1.arms import longest_trained_turn

    config = Table1Config.micro().with_(max_new_tokens=16)
    with pytest.raises(
        ValueError, match=r"max_new_tokens: 16 tokens a turn would cut the longest trained turn"
    ):
        run_table1(tmp_path, seeds=1, config=config, arms=["cooper"], device="cpu")
    rows = (tmp_path / "data" / "interleaved" / "records.jsonl").read_text()
    assert "<think>" in rows  # the set holds tool-call turns
    assert not (tmp_path / "seed-0").exists()  # refused before anything trained

    class Words:
        def __call__(self, texts, add_special_tokens):
            return {"input_ids": [text.split() for text in texts]}

    path = tmp_path / "rows.jsonl"
    path.write_text(
        json.dumps(
            {
                "items": [
                    {"type": "text", "role": "assistant", "value": "a b c d e", "need_loss": False},
                    {"type": "text", "role": "assistant", "value": "a b c", "need_loss": True},
                    {"type": "text", "role": "user", "value": "a b c d e f g"},
                ]
            }
        )
        + "\n"
    )
    assert longest_trained_turn(path, Words()) == 3  # loss-bearing assistant text only


def _losses(folder):
    return [json.loads(line)["loss"] for line in (folder / "log.jsonl").open()]


def test_seeds_and_arms_trained_at_once_match_them_trained_in_turn(tmp_path, monkeypatch):
    config = Table1Config.micro().with_(base_steps=3, sft_steps=3)
    arms = ["qa_only", "amg_qa"]
    run_table1(tmp_path / "in_turn", seeds=2, config=config, arms=arms, device="cpu", jobs=1)
    # seeds and arms must train in their own processes: this one refuses to train any arm
    monkeypatch.setattr(runner, "run_arm", _refuse)
    report = run_table1(tmp_path / "at_once", seeds=2, config=config, arms=arms, device="cpu", jobs=3)
    assert "3 processes at once" in report.read_text()
    results = json.loads((tmp_path / "at_once" / "results.json").read_text())["results"]
    assert [(r["arm"], r["seed"]) for r in results] == [(a, s) for s in (0, 1) for a in arms]
    for seed in (0, 1):
        for stage in ("base", "qa_only/train/sft", "amg_qa/train/stage1", "amg_qa/train/sft"):
            in_turn = _losses(tmp_path / "in_turn" / f"seed-{seed}" / stage)
            at_once = _losses(tmp_path / "at_once" / f"seed-{seed}" / stage)
            assert at_once == pytest.approx(in_turn, rel=1e-4)
    # the two seeds differ, so the comparison above is not of one run with itself
    assert _losses(tmp_path / "at_once" / "seed-0" / "base") != _losses(
        tmp_path / "at_once" / "seed-1" / "base"
    )


def test_arm_groups_keep_an_arm_with_the_arms_that_score_its_model():
    names = ["qa_only", "true_maps", "bagel_pe", "cooper"]
    assert runner.arm_groups(names) == [["qa_only"], ["true_maps", "bagel_pe"], ["cooper"]]
    assert runner.arm_groups(list(runner.ARMS)) == [
        ["qa_only"], ["amg_qa"], ["bagel_re"], ["bagel_pe", "true_maps"], ["cooper"]
    ]  # fmt: skip


def test_a_failed_seed_is_named_and_the_others_are_kept(tmp_path):
    final = tmp_path / "seed-1" / "base" / "final"
    final.mkdir(parents=True)
    (final / arms_module.TRAINABLE_NAME).write_bytes(b"not a safetensors file")
    with pytest.raises(RuntimeError, match=r"seed\(s\) \[1\] failed.*rerun to resume"):
        run_table1(tmp_path, seeds=2, config=Table1Config.micro(), arms=["qa_only"], device="cpu", jobs=2)
    assert (tmp_path / "seed-0" / "qa_only" / runner.DONE).exists()
    assert not (tmp_path / "seed-1" / "qa_only" / runner.DONE).exists()


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True])
def test_jobs_must_be_a_positive_int(tmp_path, jobs):
    with pytest.raises(ValueError, match="jobs: expected a positive int"):
        run_table1(tmp_path, seeds=2, config=Table1Config.micro(), device="cpu", jobs=jobs)


def test_the_report_says_which_scenes_stage1_read():
    config = Table1Config.micro().with_(train_scenes=10)
    assert runner._stage1_data(config) == ""
    assert runner._stage1_data(config.with_(stage1_scenes=10)) == ""
    assert "and 5 more (no questions asked of them)" in runner._stage1_data(config.with_(stage1_scenes=15))
    assert "the first 4 of them" in runner._stage1_data(config.with_(stage1_scenes=4))


def test_the_report_names_the_maps_the_traces_show_and_the_extra_map_records(tmp_path):
    config = Table1Config.micro().with_(train_scenes=10, stage1_scenes=15)

    def setup(**changes):
        return runner.report_setup(config.with_(**changes), tmp_path, [0, 1], 7, "cpu", 2)

    plain = setup()
    assert "trace maps" not in plain and "stage-1 maps in SFT" not in plain
    assert plain["device"] == "cpu, 2 processes at once (wall times overlap)"
    assert plain["data"].endswith("3 held-out test scenes (7 questions)")
    assert plain["data"].startswith("10 training scenes x 2 questions (short answers); ")
    assert setup(train_per_category=3)["data"].startswith(
        "10 training scenes x up to 6 questions (3 a category, short answers); "
    )
    assert setup(trace_maps="own")["trace maps"].startswith(
        "the perceiving arms' SFT traces show the maps their own stage-1 model draws"
    )
    mixed = setup(trace_maps="mixed")["trace maps"]
    assert mixed.startswith("half the photographs of the perceiving arms' SFT traces (drawn by the seed)")
    assert mixed.endswith("(the heads still learn from the true maps)")
    assert setup(sft_stage1_maps=True)["stage-1 maps in SFT"].startswith(
        "the perceiving arms' SFT after stage 1 also draws 5 map records"
    )
    assert "weight decay" not in plain["budget"]
    decayed = setup(sft_weight_decay=0.5)["budget"]
    assert ", AdamW lr 0.001 cosine, weight decay 0.5 in the arms' SFT; GRPO arms add" in decayed
    # the base model's wall time: the mean over the seeds whose folder holds it
    for seed, seconds in ((0, 10.0), (1, 30.0)):
        (tmp_path / f"seed-{seed}" / "base").mkdir(parents=True)
        (tmp_path / f"seed-{seed}" / "base" / "seconds.json").write_text(json.dumps({"base": seconds}))
    assert setup()["base model"].endswith("not in the arms' budget); 20 s a seed")
