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
    assert result["overall"] == pytest.approx(200 / 3)
    assert (result["circular_groups"], result["circular_accuracy"]) == (2, pytest.approx(50.0))
    assert result["per_category"]["color"]["score"] == pytest.approx(50.0)
    assert result["per_l2_category"]["perception"]["n"] == 3


def test_no_circular_figure_without_copies(tmp_path, encoded_image):
    red = base64.b64encode(encoded_image((200, 0, 0))).decode()
    bench = load_mmbench(
        _tsv(tmp_path / "mini.tsv", [[5, "q", "", "x", "y", "", "", "B", "c", "l", "dev", red]])
    )
    result = bench.aggregate([bench.score(bench[0], "B")])
    assert result["overall"] == 100.0 and "circular_accuracy" not in result


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
