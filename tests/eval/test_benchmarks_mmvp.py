import csv

import pytest

from cooper_lib.eval.benchmarks.mmvp import MMVPBenchmark, load_mmvp, parse_options

HEADER = ["Index", "Question", "Options", "Correct Answer"]


def _fixture(root, write_image, rows):
    with (root / "Questions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    for row in rows:
        write_image(root / "MMVP Images" / f"{row[0]}.jpg")


ROWS = [
    [1, "Is the door open or closed?", "(a) Open (b) Closed", "(a)"],
    [2, "Is the door open or closed?", "(a) Open (b) Closed", "(b)"],
    [3, "Is the dog facing left or right?", "(a) Left (b) Right", "(b)"],
    [4, "Is the dog facing left or right?", "(a) Left (b) Right", "(a)"],
]


def test_loads_questions_csv_with_pairs_and_scores_both_ways(tmp_path, write_image):
    _fixture(tmp_path, write_image, ROWS)
    bench = load_mmvp(tmp_path)
    assert isinstance(bench, MMVPBenchmark) and len(bench) == 4
    first = bench[0]
    assert (first.id, first.answer, first.choices) == ("1", "A", ("Open", "Closed"))
    assert first.question == "Is the door open or closed? (a) Open (b) Closed"
    assert [item.extra["pair_id"] for item in bench] == [0, 0, 1, 1]
    assert first.image == tmp_path / "MMVP Images" / "1.jpg"
    answers = ["(a)", "Closed", "(b) Right", "(b)"]  # right, right, right, wrong
    scores = [bench.score(item, text) for item, text in zip(bench, answers, strict=True)]
    result = bench.aggregate(scores)
    assert result["overall"] == pytest.approx(75.0)
    assert (result["pairs"], result["pair_accuracy"]) == (2, pytest.approx(50.0))
    assert bench.aggregate(scores[:3])["pairs"] == 1  # an incomplete pair is not counted


def test_parse_options():
    assert parse_options("(a) Open (b) Closed") == (("Open", "Closed"), "AB")
    assert parse_options("(a) A (small) dog (b) a cat (c) none") == (
        ("A (small) dog", "a cat", "none"),
        "ABC",
    )
    with pytest.raises(ValueError, match="letters in order"):
        parse_options("(a) Open (c) Closed")


def test_reports_missing_table_images_and_bad_answers(tmp_path, write_image):
    with pytest.raises(FileNotFoundError, match="Questions.csv"):
        load_mmvp(tmp_path)
    _fixture(tmp_path, write_image, ROWS)
    (tmp_path / "MMVP Images" / "3.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 images in 'MMVP Images' missing: .*3\.jpg"):
        load_mmvp(tmp_path)
    _fixture(tmp_path, write_image, [[1, "q", "(a) Open (b) Closed", "(c)"]])
    with pytest.raises(ValueError, match="Correct Answer must be one of"):
        load_mmvp(tmp_path)
