import subprocess
import sys

import numpy as np
import pytest

from cooper_lib.data.synthetic import write_dataset
from cooper_lib.eval import BENCHMARK_LOADERS, SyntheticBenchmark, load_benchmark, load_synthetic


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("eval"), 2, seed=3, stage="eval")


def test_rendered_split_equals_the_written_eval_split(written):
    rendered, loaded = load_synthetic(n=2, seed=3), load_benchmark("synthetic", written)
    assert isinstance(loaded, SyntheticBenchmark)
    assert isinstance(BENCHMARK_LOADERS["synthetic"](written), SyntheticBenchmark)
    assert len(rendered) == len(loaded) == 8
    for a, b in zip(rendered, loaded, strict=True):
        assert (a.id, a.question, a.answer, a.answer_type, a.choices, a.category) == (
            b.id, b.question, b.answer, b.answer_type, b.choices, b.category
        )  # fmt: skip
        assert a.extra["cpr"] == b.extra["cpr"] and a.extra["unit"] == b.extra["unit"]
        assert np.array_equal(np.asarray(a.load_image()), np.asarray(b.load_image()))


def test_the_module_imports_first_in_a_fresh_interpreter():
    code = "from cooper_lib.eval.synthetic_bench import load_synthetic; print(load_synthetic.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "load_synthetic"


def test_each_answer_type_is_scored_by_its_rule(written):
    bench = load_synthetic(written)
    by_type = {item.answer_type: item for item in bench}
    assert set(by_type) <= {"choice", "yes_no", "integer", "number"}
    choice = next(item for item in bench if item.answer_type == "choice")
    assert bench.score(choice, f"The answer is \\boxed{{{choice.answer}}}")["score"] == 1.0
    number = next(item for item in bench if item.answer_type == "number")
    assert isinstance(number.answer, float) and number.extra["unit"] in ("m", "cm")
    off = bench.score(number, f"\\boxed{{{number.answer * 1.08:.6g} {number.extra['unit']}}}")
    assert off["score"] == pytest.approx(0.9)  # 8 % off passes thresholds 0.50 ... 0.90 of ten
    assert bench.score(number, "hm")["failed"]


def test_count_and_yes_no_records_map_to_integer_and_yes_no(tmp_path):
    from cooper_lib.data.records import QARecord
    from cooper_lib.eval.synthetic_bench import _item

    def record(answer_type, answer, value=None):
        return QARecord("r", "i.png", "q", answer, answer_type, "count_shape", "positive", value=value)

    count = _item(record("count", "3", 3.0), tmp_path / "i.png")
    assert (count.answer_type, count.answer) == ("integer", 3.0)
    yes = _item(record("yes-no", "no"), tmp_path / "i.png")
    assert (yes.answer_type, yes.answer) == ("yes_no", "no")
    with pytest.raises(ValueError, match="answer_type: expected one of"):
        _item(record("essay", "x"), tmp_path / "i.png")


def test_aggregate_adds_per_cpr_figures():
    bench = load_synthetic(n=1, seed=0)
    scores = [bench.score(item, f"\\boxed{{{item.answer}}}") for item in bench]
    result = bench.aggregate(scores)
    assert result["overall"] == pytest.approx(100.0)
    assert sum(g["n"] for g in result["per_cpr"].values()) == 4
    assert set(result["per_cpr"]) <= {"positive", "negative", "boundary"}


def test_rejects_other_stages_and_bad_sizes(tmp_path):
    root = write_dataset(tmp_path / "s1", 1, stage="stage1")
    with pytest.raises(ValueError, match="reads an 'eval'"):
        load_synthetic(root)
    with pytest.raises(ValueError, match="n: expected a positive int"):
        load_synthetic(n=0)


def test_rendered_benchmark_uses_test_scenes_and_answer_style():
    from cooper_lib.data.synthetic import scene_seed

    bench = load_synthetic(n=3, seed=0, answer_style="short")
    assert bench.meta["split"] == "test"
    assert {item.extra["scene_seed"] for item in bench} == {scene_seed(0, i, "test") for i in range(3)}
    assert all(item.extra["unit"] == "m" for item in bench if item.answer_type == "number")
