"""The report's maths: seed means and t-intervals, per-category rates, the priors, the markdown."""

import math
from pathlib import Path

import pytest

from cooper_lib.eval.benchmarks import BenchmarkItem
from cooper_lib.eval.synthetic_bench import SyntheticBenchmark
from cooper_lib.experiments.table1 import ARMS
from cooper_lib.experiments.table1.evaluation import _other_scene_items, priors
from cooper_lib.experiments.table1.report import (
    accuracy_by_category,
    markdown,
    mean_interval,
    paired_differences,
    t_quantile_975,
    tool_rate_by_category,
)


def test_mean_interval_is_the_t_interval_and_none_for_one_seed():
    mean, half = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    mean, half = mean_interval([10.0, 14.0])
    assert mean == 12.0 and half == pytest.approx(12.706 * math.sqrt(8) / math.sqrt(2))
    assert mean_interval([42.0]) == (42.0, None)
    assert t_quantile_975(30) == 2.042 and t_quantile_975(100) == 1.96
    with pytest.raises(ValueError, match="values"):
        mean_interval([])
    with pytest.raises(ValueError, match="df"):
        t_quantile_975(0)


def test_rates_per_category():
    records = [
        {"category": "a", "score": 1.0, "tools": ["depth"]},
        {"category": "a", "score": 0.0, "tools": []},
        {"category": "b", "score": 0.5, "tools": []},
        {"category": "b", "score": 1.0, "tools": ["segmentation", "depth"]},
    ]
    assert accuracy_by_category(records) == {"a": 50.0, "b": 75.0, "overall": 62.5}
    assert tool_rate_by_category(records) == {"a": 50.0, "b": 50.0, "overall": 50.0}


def _item(i, category, answer, kind, choices=(), scene=0):
    return BenchmarkItem(
        id=str(i),
        image=Path("x.png"),
        question="q",
        answer=answer,
        answer_type=kind,
        choices=choices,
        category=category,
        extra={"cpr": "positive", "modality": None, "unit": None, "scene_seed": scene},
    )


def test_priors_chance_and_best_fixed_answer():
    items = [
        _item(0, "occ", "yes", "yes_no"),
        _item(1, "occ", "yes", "yes_no"),
        _item(2, "occ", "yes", "yes_no"),
        _item(3, "occ", "no", "yes_no"),
        _item(4, "pick", "A", "choice", ("x", "y")),
        _item(5, "pick", "D", "choice", ("x", "y", "z", "w")),
        _item(6, "mixed", "B", "choice", ("x", "y")),
        _item(7, "mixed", "no", "yes_no"),
    ]
    table = priors(SyntheticBenchmark("synthetic", items))
    assert table["occ"] == {"n": 4, "chance": 50.0, "best_fixed": 75.0}
    # chance: 1/2 and 1/4 per question; the best single letter (A or D) gets one of two
    assert table["pick"] == {"n": 2, "chance": pytest.approx(37.5), "best_fixed": 50.0}
    # a category mixing kinds gets one fixed answer per kind ("B" and "no"), each a valid answer
    assert table["mixed"] == {"n": 2, "chance": 50.0, "best_fixed": 100.0}
    assert table["overall"]["best_fixed"] == pytest.approx(100 * (3 + 1 + 2) / 8)


def test_best_fixed_answer_may_be_an_option_text():
    """Option texts recur at different letters: always answering "red" beats every letter here."""
    items = [
        _item(0, "colour", "A", "choice", ("red", "blue")),
        _item(1, "colour", "B", "choice", ("blue", "red")),
        _item(2, "colour", "C", "choice", ("green", "blue", "red")),
        _item(3, "colour", "A", "choice", ("green", "red")),
    ]
    table = priors(SyntheticBenchmark("synthetic", items))
    assert table["colour"]["best_fixed"] == 75.0  # "red"; the best letter (A) gets two of four
    # chance stays one over the options: a question's letters and texts are equally valid draws
    assert table["colour"]["chance"] == pytest.approx(100 * (1 / 2 + 1 / 2 + 1 / 3 + 1 / 2) / 4)


def test_other_scene_items_never_share_the_scene():
    items = [_item(i, "c", "yes", "yes_no", scene=i // 2) for i in range(6)]
    others = _other_scene_items(items, 3)
    assert all(o.extra["scene_seed"] != i.extra["scene_seed"] for i, o in zip(items, others, strict=True))


def test_markdown_states_one_seed_and_lists_arms_and_probes():
    records = [{"id": "0", "category": "occ", "score": 1.0, "tools": ["depth"]}]
    results = [
        {
            "arm": "qa_only",
            "seed": 0,
            "conditions": {"main": records},
            "wall_seconds": {"total": 3.0},
            "map_quality": {"depth_abs_rel": 0.5},
        },
        {
            "arm": "bagel_pe",
            "seed": 0,
            "wall_seconds": {"total": 4.0},
            "map_quality": {},
            "conditions": {"main": records, "other_scene": [{**records[0], "score": 0.0}], "true": records},
            "map_elasticity": {"map": {"0.8": 0.25, "1.25": None}, "object": {"0.8": 0.0, "1.25": 0.1}},
        },
    ]
    table = {
        "occ": {"n": 1, "chance": 50.0, "best_fixed": 100.0},
        "overall": {"n": 1, "chance": 50.0, "best_fixed": 100.0},
    }
    fixed = {
        "depth_abs_rel": 0.3,
        "depth_delta1": 0.5,
        "depth_abs_rel_objects": 0.6,
        "depth_object_mra": 0.64,
        "true_map_object_mra": 0.78,
    }
    text = markdown(
        results, table, {n: ARMS[n] for n in ("qa_only", "bagel_pe")}, {"budget": "2 steps"}, fixed
    )
    assert "one seed: no interval" in text and "- budget: 2 steps" in text
    assert "| occ | 1 | 50.0 | 100.0 | 100.0 | 100.0 |" in text
    assert "| bagel_pe | occ | 100.0 | 0.0 | 100.0 |" in text
    # elasticity: the perceiving arm's, a scale with no readable answers left empty
    header = (
        "| arm | whole map, s = 0.8 | whole map, s = 1.25 | asked object, s = 0.8 | asked object, s = 1.25 |"
    )
    assert header in text and "| bagel_pe | 0.25 | - | 0.00 | 0.10 |" in text
    assert "| qa_only | 0.25" not in text
    assert "| qa_only | 0.500 | - |" in text
    assert "| fixed map | 0.300 | 0.600 | 64.0 | 0.500 | | |" in text
    assert "| true map | | | 78.0 | | | |" in text


def _run(arm, seed, scores):
    records = [{"id": str(i), "category": "dist", "score": v, "tools": []} for i, v in enumerate(scores)]
    return {"arm": arm, "seed": seed, "conditions": {"main": records}, "wall_seconds": {"total": 1.0}}


def test_paired_differences_match_seeds_and_the_section_says_when_intervals_part():
    # seeds listed out of order and one seed run by one arm only: pairs are made by seed
    results = [
        _run("cooper", 1, [1.0, 1.0, 0.0, 1.0]),
        _run("qa_only", 0, [1.0, 0.0, 0.0, 0.0]),
        _run("qa_only", 1, [1.0, 0.0, 0.0, 1.0]),
        _run("cooper", 0, [1.0, 1.0, 1.0, 1.0]),
        _run("cooper", 2, [0.0, 0.0, 0.0, 0.0]),
    ]
    assert paired_differences(results, "cooper") == {"dist": [75.0, 25.0], "overall": [75.0, 25.0]}
    assert paired_differences(results, "cooper", baseline="bagel_pe") == {}
    table = {
        "dist": {"n": 4, "chance": 50.0, "best_fixed": 50.0},
        "overall": {"n": 4, "chance": 50.0, "best_fixed": 50.0},
    }
    text = markdown(results, table, {n: ARMS[n] for n in ("qa_only", "cooper")}, {})
    half = 12.706 * math.sqrt(1250.0) / math.sqrt(2)  # the paired differences 75 and 25
    assert f"| cooper | dist | 50.0 ± {half:.1f} | 2 / 2 |" in text
    # the arms' own intervals: cooper 100, 75, 0 (three seeds), qa_only 25, 50
    h_cooper = 4.303 * math.sqrt(2708.0 + 1 / 3) / math.sqrt(3)
    h_qa = 12.706 * math.sqrt(312.5) / math.sqrt(2)
    assert f"| 2 / 2 | {h_cooper + h_qa:.1f} |" in text
    assert "## Against `qa_only` (points)" in text
    alone = markdown(results[3:], table, {"cooper": ARMS["cooper"]}, {})
    assert "## Against" not in alone
