import base64

import pytest
from benchmark_files import MMBENCH_HEADER, write_tsv

from cooper_lib.eval.benchmarks.mmbench import MMBenchBenchmark, compose_question, load_mmbench


def _tsv(path, rows):
    return write_tsv(path, MMBENCH_HEADER, rows)


def test_loads_base64_tsv_with_image_references_and_circular_copies(tmp_path, encoded_image):
    red = base64.b64encode(encoded_image((200, 0, 0))).decode()
    green = base64.b64encode(encoded_image((0, 200, 0), fmt="JPEG")).decode()
    rows = [
        [0, "What colour?", "Look closely.", "red", "green", "", "", "A", "color", "perception", "dev", red],
        [1, "Which shape?", "", "circle", "square", "triangle", "", "C", "shape", "perception", "dev", green],
        [1000000, "What colour?", "Look closely.", "green", "red", "", "", "B", "color", "perception", "dev", "0"],
    ]  # fmt: skip
    bench = load_mmbench(_tsv(tmp_path / "MMBench_DEV_EN_V11.tsv", rows))
    assert isinstance(bench, MMBenchBenchmark) and [i.id for i in bench] == ["0", "1", "1000000"]
    first, second, copy = bench.items
    assert first.question == (
        "Hint: Look closely.\nQuestion: What colour?\nOptions:\nA. red\nB. green\n"
        "Please select the correct answer from the options above."
    )
    assert second.choices == ("circle", "square", "triangle") and second.question.startswith(
        "Question: Which"
    )
    assert copy.load_image().getpixel((0, 0)) == (200, 0, 0)  # shares row 0's image
    assert copy.extra["circular_group"] == 0 and first.extra["l2_category"] == "perception"
    scores = [bench.score(item, text) for item, text in zip(bench, ["A", "C", "A"], strict=True)]
    result = bench.aggregate(scores)
    # Rows: 0 right, 1 right, 1000000 (copy of 0) wrong. Circular: question 0 fails, 1 holds.
    assert result["overall"] == result["circular_accuracy"] == pytest.approx(50.0)
    assert result["row_accuracy"] == pytest.approx(200 / 3)
    assert (result["n"], result["n_questions"]) == (3, 2)
    assert result["per_category"]["color"]["score"] == 0.0  # main row 0, its group failed
    assert result["per_l2_category"]["perception"] == {"n": 2, "score": pytest.approx(50.0)}


def _row(index, answer, category, image, options=("x", "y")):
    cells = [*options, "", "", ""][:4]
    return [index, f"q{index % 1_000_000}", "", *cells, answer, category, "l2", "dev", image]


def test_circular_accuracy_by_hand(tmp_path, encoded_image):
    red = base64.b64encode(encoded_image((200, 0, 0))).decode()
    rows = [
        _row(0, "A", "color", red), _row(1, "C", "shape", "0", ("a", "b", "c")), _row(2, "B", "color", "0"),
        _row(1000000, "B", "color", "0"), _row(1000001, "B", "shape", "0", ("c", "a", "b")),
        _row(2000001, "A", "shape", "0", ("b", "c", "a")),
    ]  # fmt: skip
    bench = load_mmbench(_tsv(tmp_path / "MMBench_DEV_EN_V11.tsv", rows))
    answers = {"0": "A", "1": "C", "2": "A", "1000000": "A", "1000001": "B", "2000001": "A"}
    result = bench.aggregate([bench.score(item, answers[item.id]) for item in bench])
    # Question 0: row 0 right, its rotation 1000000 wrong -> 0. Question 1: all three rotations
    # right -> 1. Question 2 (no copies): wrong -> 0. Circular 1/3; rows 4 right of 6.
    assert result["overall"] == pytest.approx(100 / 3)
    assert result["row_accuracy"] == pytest.approx(400 / 6)
    assert result["per_category"] == {
        "color": {"n": 2, "score": 0.0, "failed": 0},
        "shape": {"n": 1, "score": 100.0, "failed": 0},
    }
    assert result["category_mean"] == pytest.approx(50.0)


def test_g_index_column_overrides_the_index_rule(tmp_path, encoded_image):
    red = base64.b64encode(encoded_image((200, 0, 0))).decode()
    rows = [[*_row(10, "A", "c", red), 10], [*_row(11, "B", "c", "10"), 10], [*_row(12, "A", "c", "10"), 12]]
    bench = load_mmbench(write_tsv(tmp_path / "circular.tsv", [*MMBENCH_HEADER, "g_index"], rows))
    result = bench.aggregate([bench.score(i, a) for i, a in zip(bench, ["A", "A", "A"], strict=True)])
    # 11 belongs to question 10 (by g_index, not by 11 % 1e6) and is wrong: 10 fails, 12 holds.
    assert (result["n_questions"], result["overall"]) == (2, pytest.approx(50.0))


def test_without_copies_circular_equals_per_row(tmp_path, encoded_image):
    red = base64.b64encode(encoded_image((200, 0, 0))).decode()
    bench = load_mmbench(_tsv(tmp_path / "mini.tsv", [_row(5, "B", "c", red), _row(6, "A", "c", "5")]))
    result = bench.aggregate([bench.score(bench[0], "B"), bench.score(bench[1], "B")])
    assert result["overall"] == result["row_accuracy"] == 50.0
    with pytest.raises(ValueError, match="no scored row is a main question"):
        load_mmbench(_tsv(tmp_path / "copies.tsv", [_row(1000005, "B", "c", red)])).aggregate(
            [{"id": "1000005", "category": "c", "answer_type": "choice", "extracted": "B", "failed": False,
              "score": 1.0, "circular_group": 5, "l2_category": "l2"}]
        )  # fmt: skip


def test_reports_bad_rows(tmp_path, encoded_image):
    red = base64.b64encode(encoded_image((200, 0, 0))).decode()
    with pytest.raises(FileNotFoundError, match="MMBench TSV"):
        load_mmbench(tmp_path / "missing.tsv")
    table = _tsv(tmp_path / "t.tsv", [[1, "q", "", "x", "y", "", "", "B", "c", "l", "dev", "7"]])
    with pytest.raises(ValueError, match="refers to index '7', which holds no image"):
        load_mmbench(table)
    _tsv(table, [[1, "q", "", "x", "y", "", "", "", "c", "l", "test", red]])
    with pytest.raises(ValueError, match="use a dev split"):
        load_mmbench(table)
    _tsv(table, [[1, "q", "", "x", "y", "", "", "D", "c", "l", "dev", red]])
    with pytest.raises(ValueError, match=r"answer must be one of \['A', 'B'\]"):
        load_mmbench(table)
    assert compose_question("", "q", {"A": "x"}).splitlines()[0] == "Question: q"


def test_corrupt_tsv_rows_and_images_name_the_file_and_row(tmp_path, encoded_image):
    red = base64.b64encode(encoded_image((200, 0, 0))).decode()
    table = _tsv(
        tmp_path / "t.tsv", [[1, "q", "", "x", "y", "", "", "A", "c", "l", "dev", red], [2, "q", ""]]
    )
    with pytest.raises(
        ValueError, match=r"t\.tsv: line 3: .*missing cells \['A', .*truncated or corrupt row"
    ):
        load_mmbench(table)
    _tsv(table, [[1, "q", "", "x", "y", "", "", "A", "c", "l", "dev", "%%%not base64!" * 20]])
    (item,) = load_mmbench(table).items
    with pytest.raises(ValueError, match=r"t\.tsv row 0 \(index 1\): image: not valid base64"):
        item.load_image()
    table.write_bytes(table.read_bytes().replace(b"dev", b"d\xffv"))
    with pytest.raises(ValueError, match=r"t\.tsv: not UTF-8 text \(byte \d+"):
        load_mmbench(table)
