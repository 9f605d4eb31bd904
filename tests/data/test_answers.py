import json

import pytest

from cooper_lib.data.answers import (
    ANSWER_TYPE_ALIASES,
    ANSWER_TYPES,
    AnswerKey,
    answer_type,
    grade,
    option_letters,
)
from cooper_lib.data.records import QARecord, read_jsonl
from cooper_lib.eval.benchmarks.items import BenchmarkItem
from cooper_lib.training.judges import Reference, RuleJudge


def test_old_spellings_are_aliases_of_the_one_vocabulary():
    assert ANSWER_TYPE_ALIASES == {"yes-no": "yes_no", "count": "integer"}
    assert set(ANSWER_TYPE_ALIASES.values()) <= set(ANSWER_TYPES)
    assert answer_type("yes-no") == "yes_no" and answer_type("count") == "integer"
    assert [answer_type(t) for t in ANSWER_TYPES] == list(ANSWER_TYPES)
    for bad in ("essay", "yes no", None, 3):
        with pytest.raises(ValueError, match="answer_type"):
            answer_type(bad)


def test_every_entry_point_reads_the_old_spelling(tmp_path):
    assert AnswerKey("3", "count").answer_type == "integer"
    assert Reference("yes", "yes-no").answer_type == "yes_no"
    item = BenchmarkItem(id="1", image=tmp_path / "x.png", question="q", answer="no", answer_type="yes-no")
    assert item.answer_type == "yes_no"


def test_a_jsonl_record_written_with_the_old_spelling_still_grades(tmp_path):
    path = tmp_path / "old.jsonl"
    row = {
        "id": "1", "image": "i.png", "question": "How many?", "answer": "3", "answer_type": "count",
        "category": "count_shape", "cpr": "positive", "value": 3.0,
    }  # fmt: skip
    path.write_text(json.dumps(row) + "\n")
    (data,) = read_jsonl(path)
    reference = Reference.from_record(QARecord.from_dict(data))
    assert reference.answer_type == "integer"
    assert RuleJudge()("<answer>\\boxed{3}</answer>", reference)
    assert not RuleJudge()("<answer>\\boxed{4}</answer>", reference)


@pytest.mark.parametrize(
    ("text", "key", "extracted", "score", "correct"),
    [
        ("\\boxed{B}", AnswerKey("B", "choice", ("x", "y")), "B", 1.0, True),
        ("\\boxed{C}", AnswerKey("B", "choice", ("x", "y")), None, 0.0, False),  # not an option
        ("Yes, it is.", AnswerKey("yes", "yes_no"), "yes", 1.0, True),
        ("\\boxed{three}", AnswerKey(3, "integer"), 3.0, 1.0, True),
        ("\\boxed{4}", AnswerKey("3", "integer"), 4.0, 0.0, False),
        ("\\boxed{1.08}", AnswerKey(1.0, "number"), 1.08, 0.9, True),  # MRA 0.9, within 10 %
        ("\\boxed{1.2}", AnswerKey(1.0, "number"), 1.2, 0.6, False),
        ("\\boxed{150 cm}", AnswerKey(1.5, "number", unit="m"), 1.5, 1.0, True),
        ("\\boxed{The Red Sphere.}", AnswerKey("the red sphere", "text"), "the red sphere", 1.0, True),
        ("no number here", AnswerKey(2.0, "number"), None, 0.0, False),
    ],
)
def test_grade_rules(text, key, extracted, score, correct):
    graded = grade(text, key)
    assert (
        graded.extracted == pytest.approx(extracted)
        if isinstance(extracted, float)
        else graded.extracted == extracted
    )
    assert graded.score == pytest.approx(score) and graded.correct is correct
    assert graded.failed is (extracted is None)


def test_quantity_grade_reports_the_qspatial_fields():
    graded = grade("about 2 m", AnswerKey(150.0, "quantity"))
    assert graded.correct and graded.score == 1.0 and graded.extracted == {"value": 2.0, "unit": "m"}
    assert graded.fields["pred_cm"] == pytest.approx(200.0) and graded.fields["success_1_5"] == 1.0
    failed = grade("far away", AnswerKey(150.0, "quantity"))
    assert failed.failed and failed.fields == {"pred_cm": None, "ratio": None, "success_1_5": 0.0}


def test_keys_validate():
    with pytest.raises(ValueError, match="numeric"):
        AnswerKey("many", "integer")
    with pytest.raises(ValueError, match="unit"):
        AnswerKey(1.0, "number", unit="parsecs")
    with pytest.raises(TypeError, match="text"):
        grade(None, AnswerKey("A", "choice"))
    for blank in ("", "  "):
        with pytest.raises(
            ValueError, match="answer: expected a non-empty reference answer for a 'choice' key"
        ):
            AnswerKey(blank, "choice")
    assert option_letters(()) == "ABCDEF" and option_letters(("a", "b", "c")) == "ABC"
