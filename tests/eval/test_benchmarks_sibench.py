import pytest
from benchmark_files import SIBENCH_HEADER, write_tsv

from cooper_lib.eval.benchmarks.sibench import SINGLE_IMAGE_SETTINGS, load_sibench

HEADER = SIBENCH_HEADER


def _tsv(path, rows, header=HEADER):
    write_tsv(path, header, rows)


def _fixture(root, write_image):
    write_image(root / "BLINK" / "1.jpg")
    write_image(root / "SpatialBench" / "2.jpg")
    write_image(root / "SpatialBench" / "3.jpg")
    _tsv(root / "relative_distance.tsv", [
        [0, "Which is closer?\nA. cup\nB. lamp", "B", "MCQ", "BLINK/1.jpg", "image", "BLINK"],
        [1, "Is the cup left of the lamp?", "Yes", "YN", "SpatialBench/2.jpg", "image", "SpatialBench"],
        [2, "Which view shows ...?", "A", "MCQ", "SpatialBench/2.jpg, SpatialBench/3.jpg", "multi-view", "MMSI-Bench"],
    ])  # fmt: skip
    _tsv(root / "Height.tsv", [
        [0, "How tall is the door in metres?", "2.0", "Number", "SpatialBench/3.jpg", "image", "SpatialBench"],
        [1, "How many chairs?", "4", "Number_Int", " SpatialBench/2.jpg ", "image", "SpatialBench"],
    ])  # fmt: skip


def test_loads_setting_tsvs_drops_other_input_types_and_scores_each_type(tmp_path, write_image):
    _fixture(tmp_path, write_image)
    bench = load_sibench(tmp_path, settings=("relative_distance", "Height"))
    assert [item.id for item in bench] == [
        "relative_distance/0",
        "relative_distance/1",
        "Height/0",
        "Height/1",
    ]
    assert bench.meta["dropped"] == {"relative_distance": 1}
    mcq, yn, number, integer = bench.items
    assert (mcq.answer_type, mcq.answer, mcq.category) == ("choice", "B", "relative_distance")
    assert mcq.question.endswith("\nSelect from the given options, answer with letters only.")  # BLINK source
    assert (yn.answer_type, yn.answer) == ("yes_no", "yes") and yn.question == "Is the cup left of the lamp?"
    assert (number.answer_type, number.answer) == ("number", 2.0)
    assert (integer.answer_type, integer.answer, integer.image) == (
        "integer",
        4.0,
        tmp_path / "SpatialBench/2.jpg",
    )
    answers = ["B", "no", "about 2.4 m", "4"]  # 1, 0, MRA(2.4, 2.0) = 0.6, 1
    scores = [bench.score(item, text) for item, text in zip(bench, answers, strict=True)]
    result = bench.aggregate(scores)
    assert result["overall"] == pytest.approx(100 * 2.6 / 4)
    assert result["per_category"]["relative_distance"]["score"] == pytest.approx(50.0)
    assert result["per_category"]["Height"]["score"] == pytest.approx(80.0)
    assert result["category_mean"] == pytest.approx(65.0)


def test_single_tsv_needs_a_category_column(tmp_path, write_image):
    write_image(tmp_path / "a.jpg")
    table = tmp_path / "SIBench_Single_Image.tsv"
    _tsv(table, [[0, "q", "No", "YN", "a.jpg", "image", "x"]])
    with pytest.raises(ValueError, match=r"lacks columns \['category'\]"):
        load_sibench(table)
    _tsv(table, [[0, "q", "No", "YN", "a.jpg", "image", "x", "Occlusion"]], HEADER + ["category"])
    bench = load_sibench(table)
    assert bench[0].category == "Occlusion" and bench[0].answer == "no"


def test_reports_missing_settings_images_and_bad_rows(tmp_path, write_image):
    assert len(SINGLE_IMAGE_SETTINGS) == 13
    with pytest.raises(FileNotFoundError, match="13 setting TSV files missing: .*relative_distance.tsv"):
        load_sibench(tmp_path)
    _tsv(tmp_path / "Height.tsv", [[0, "q", "2", "Number", "gone.jpg", "image", "x"]])
    with pytest.raises(FileNotFoundError, match=r"1 images .* missing: .*gone\.jpg"):
        load_sibench(tmp_path, settings=("Height",))
    write_image(tmp_path / "gone.jpg")
    _tsv(tmp_path / "Height.tsv", [[0, "q", "2", "Free", "gone.jpg", "image", "x"]])
    with pytest.raises(ValueError, match="Height.tsv row 0 .*type must be one of"):
        load_sibench(tmp_path, settings=("Height",))
    _tsv(tmp_path / "Height.tsv", [[0, "q", "maybe", "YN", "gone.jpg", "image", "x"]])
    with pytest.raises(ValueError, match="YN answer must be Yes or No"):
        load_sibench(tmp_path, settings=("Height",))
    _tsv(tmp_path / "Height.tsv", [[0, "q", "0", "Number", "gone.jpg", "image", "x"]])
    with pytest.raises(ValueError, match="no relative accuracy"):
        load_sibench(tmp_path, settings=("Height",))


@pytest.mark.parametrize("escape", ["../outside.jpg", "BLINK/../../outside.jpg", "ABSOLUTE"])
def test_image_paths_outside_the_folder_need_an_opt_in(tmp_path, write_image, escape):
    root = tmp_path / "sibench"
    write_image(root / "BLINK" / "1.jpg")
    write_image(tmp_path / "outside.jpg")
    name = str(tmp_path / "outside.jpg") if escape == "ABSOLUTE" else escape
    _tsv(root / "Height.tsv", [[0, "How tall?", "2.0", "Number", name, "image", "SpatialBench"]])
    with pytest.raises(ValueError, match=r"Height.tsv row 0.*outside the dataset folder.*allow_outside_root"):
        load_sibench(root, settings=("Height",))
    bench = load_sibench(root, settings=("Height",), allow_outside_root=True)
    assert bench.items[0].image.resolve() == (tmp_path / "outside.jpg").resolve()
