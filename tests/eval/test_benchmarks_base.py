from pathlib import Path

import pytest

from cooper_lib.eval.benchmarks import BENCHMARK_LOADERS, load_benchmark
from cooper_lib.eval.benchmarks.base import Benchmark, rate, score_answer
from cooper_lib.eval.benchmarks.items import BenchmarkItem


def _item(id, answer, kind, category="", choices=()):
    return BenchmarkItem(
        id=id,
        image=Path("x.png"),
        question="q",
        answer=answer,
        answer_type=kind,
        category=category,
        choices=choices,
    )


def test_score_answer_per_type():
    assert score_answer(_item("a", "B", "choice"), "The answer is B.")["score"] == 1.0
    wrong = score_answer(_item("a", "B", "choice"), "(C)")
    assert wrong["score"] == 0.0 and wrong["extracted"] == "C" and not wrong["failed"]
    failed = score_answer(_item("a", "B", "choice"), "no idea")
    assert failed["score"] == 0.0 and failed["failed"] and failed["extracted"] is None
    assert score_answer(_item("y", "no", "yes_no"), "No, it is not.")["score"] == 1.0
    assert score_answer(_item("n", 10.0, "number"), "about 12")["score"] == pytest.approx(0.6)
    assert score_answer(_item("i", 3.0, "integer"), "three")["score"] == 1.0
    assert score_answer(_item("i", 3.0, "integer"), "3.5")["score"] == 0.0
    q = score_answer(_item("q", 96.0, "quantity"), r"\scalar{1} \distance_unit{meter}")
    assert (q["score"], q["success_1_5"], q["pred_cm"]) == (1.0, 1.0, 100.0)
    assert q["ratio"] == pytest.approx(100 / 96) and q["extracted"] == {"value": 1.0, "unit": "m"}
    q = score_answer(_item("q", 100.0, "quantity"), "0 cm")
    assert q["score"] == 0.0 and q["ratio"] == pytest.approx(1e10) and not q["failed"]  # (100 + 1e-8) / 1e-8
    with pytest.raises(TypeError, match="prediction must be str"):
        score_answer(_item("a", "B", "choice"), 3)


def test_aggregate_overall_categories_and_failures():
    items = [
        _item("1", "A", "choice", "count"),
        _item("2", "B", "choice", "count"),
        _item("3", 10.0, "number", "size"),
        _item("4", "yes", "yes_no", "size"),
    ]
    bench = Benchmark("toy", items)
    answers = {"1": "A", "2": "garbage", "3": "12", "4": "yes"}
    scores = [bench.score(bench.item(i), answers[i]) for i in answers]
    result = bench.aggregate(scores)
    assert result["n"] == result["n_items"] == 4
    assert result["overall"] == pytest.approx(100 * (1 + 0 + 0.6 + 1) / 4)
    assert result["extraction_failures"] == 1
    assert result["per_category"]["count"] == {"n": 2, "score": pytest.approx(50.0), "failed": 1}
    assert result["per_category"]["size"]["score"] == pytest.approx(80.0)
    assert result["category_mean"] == pytest.approx(65.0)
    partial = bench.aggregate(scores[:2])
    assert partial["n"] == 2 and partial["n_items"] == 4


def test_benchmark_validation():
    with pytest.raises(ValueError, match="at least one item"):
        Benchmark("toy", [])
    with pytest.raises(ValueError, match="more than once"):
        Benchmark("toy", [_item("1", "A", "choice"), _item("1", "B", "choice")])
    bench = Benchmark("toy", [_item("1", "A", "choice")])
    score = bench.score(bench[0], "A")
    with pytest.raises(ValueError, match="unknown item ids"):
        bench.aggregate([{**score, "id": "9"}])
    with pytest.raises(ValueError, match="more than once"):
        bench.aggregate([score, score])
    with pytest.raises(ValueError, match="at least one score"):
        bench.aggregate([])
    with pytest.raises(KeyError, match="no item"):
        bench.item("9")
    assert len(bench) == 1 and list(bench) == bench.items and rate([score]) == 100.0


def test_load_benchmark_by_name(tmp_path):
    assert set(BENCHMARK_LOADERS) == {
        "qspatial",
        "sibench",
        "mmvp",
        "mmbench",
        "cvbench",
        "nyuv2",
        "synthetic",
    }
    with pytest.raises(ValueError, match="name must be one of"):
        load_benchmark("mmlu", tmp_path)
    with pytest.raises(FileNotFoundError, match="Questions.csv"):
        load_benchmark("mmvp", tmp_path)
