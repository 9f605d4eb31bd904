import pytest
from benchmark_files import QSPATIAL_SYSTEM_PROMPT, write_qspatial_prompts

from cooper_lib.eval.benchmarks.qspatial import QSpatialBenchmark, load_qspatial

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    schema = pa.schema(
        [("question", pa.string()), ("answer_value", pa.float32()), ("answer_unit", pa.string()),
         ("question_type", pa.string()), ("image_path", pa.string()), ("image", IMAGE)]
    )  # fmt: skip
    pq.write_table(pa.table(columns, schema=schema), path)


def _row(encoded_image, value, unit, kind, color=(10, 20, 30), with_bytes=True, image_path="img.png"):
    image = {"bytes": encoded_image(color) if with_bytes else None, "path": image_path}
    return dict(question=f"How far? ({kind})", answer_value=value, answer_unit=unit, question_type=kind,
                image_path=image_path, image=image)  # fmt: skip


def test_loads_the_published_parquet_and_scores_both_thresholds(tmp_path, encoded_image):
    rows = [_row(encoded_image, 96, "centimeters", "distance", color=(1, 2, 3)),
            _row(encoded_image, 1.2, "meters", "distance"),
            _row(encoded_image, 4, "feet", "width")]  # fmt: skip
    _write(tmp_path / "data" / "QSpatial_plus-00000-of-00001.parquet", rows)
    write_qspatial_prompts(tmp_path / "prompt_templates")
    bench = load_qspatial(tmp_path)
    assert isinstance(bench, QSpatialBenchmark) and len(bench) == 3
    first = bench[0]
    assert first.id == "QSpatial_plus/0" and first.answer_type == "quantity" and first.category == "distance"
    assert first.answer == pytest.approx(96.0) and bench[1].answer == pytest.approx(120.0)
    assert bench[2].answer == pytest.approx(121.92) and bench[2].extra["answer_unit"] == "feet"
    assert first.load_image().getpixel((0, 0)) == (1, 2, 3)
    answers = [
        r"It is about \scalar{1} \distance_unit{meter}",  # 100 / 96: within 1.5 and 2
        "Roughly 2 meters.",  # 200 / 120 = 1.67: within 2 only
        "I cannot tell.",  # extraction failure
    ]
    scores = [bench.score(item, text) for item, text in zip(bench, answers, strict=True)]
    result = bench.aggregate(scores)
    assert result["overall"] == pytest.approx(200 / 3)
    assert result["success_1_5"] == pytest.approx(100 / 3)
    assert result["extraction_failures"] == 1
    assert result["per_category"]["distance"]["score"] == pytest.approx(100.0)
    assert result["per_category"]["distance"]["success_1_5"] == pytest.approx(50.0)
    assert result["per_category"]["width"]["score"] == 0.0


def test_reports_missing_files_and_unknown_units(tmp_path, encoded_image):
    write_qspatial_prompts(tmp_path / "prompt_templates")
    with pytest.raises(FileNotFoundError, match=r"data/QSpatial_plus-00000-of-00001\.parquet"):
        load_qspatial(tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        load_qspatial(tmp_path, split="plus")
    parquet = tmp_path / "data" / "QSpatial_plus-00000-of-00001.parquet"
    _write(parquet, [_row(encoded_image, 3, "yards", "distance")])
    with pytest.raises(ValueError, match="row 0 .*unit must be one of"):
        load_qspatial(parquet)


def test_rows_without_image_bytes_resolve_image_path(tmp_path, encoded_image, write_image):
    write_qspatial_prompts(tmp_path / "prompt_templates")
    parquet = tmp_path / "data" / "QSpatial_scannet-00000-of-00001.parquet"
    _write(parquet, [_row(encoded_image, 50, "cm", "distance", with_bytes=False, image_path="scans/a.png")])
    with pytest.raises(FileNotFoundError, match=r"1 images of QSpatial_scannet .* missing: .*scans/a\.png"):
        load_qspatial(tmp_path, split="QSpatial_scannet")
    write_image(tmp_path / "scans" / "a.png", (7, 7, 7))
    bench = load_qspatial(tmp_path, split="QSpatial_scannet")
    assert bench[0].load_image().getpixel((0, 0)) == (7, 7, 7)


def test_questions_carry_the_benchmarks_system_prompt_and_template(tmp_path, encoded_image):
    _write(tmp_path / "data" / "QSpatial_plus-00000-of-00001.parquet", [_row(encoded_image, 1, "m", "size")])
    write_qspatial_prompts(tmp_path / "prompt_templates")
    bench = load_qspatial(tmp_path)
    # VLMEvalKit: f"{system_prompt}\n{template rendered with the question}"
    assert bench[0].question == (
        QSPATIAL_SYSTEM_PROMPT + "\nQuestion: How far? (size)\nLet's thinkg step by step and start by "
        "finding good reference objects or object parts in the image."
    )
    assert bench[0].extra["raw_question"] == "How far? (size)"
    assert bench.meta["prompt"] == "system prompt + spatial_prompt_single.txt"
    # jinja drops one trailing newline of a template, the system prompt is used as read
    other = write_qspatial_prompts(tmp_path / "mine", "S\n", "Q: {{ question }}!\n")
    assert load_qspatial(tmp_path, prompt_dir=other)[0].question == "S\n\nQ: How far? (size)!"


def test_missing_prompt_files_are_named(tmp_path, encoded_image):
    _write(tmp_path / "data" / "QSpatial_plus-00000-of-00001.parquet", [_row(encoded_image, 1, "m", "size")])
    (tmp_path / "prompt_templates").mkdir()
    (tmp_path / "prompt_templates" / "system_prompt.txt").write_text("S")
    with pytest.warns(UserWarning, match=r"\['.*prompt_templates/spatial_prompt_single\.txt'\] not found"):
        bench = load_qspatial(tmp_path)
    assert bench[0].question == "How far? (size)" and bench.meta["prompt"].startswith("plain question")
    with pytest.raises(FileNotFoundError, match="spatial_prompt_single.txt"):
        load_qspatial(tmp_path, prompt_dir=tmp_path / "prompt_templates")


def test_truncated_parquet_and_non_utf8_prompts_name_the_file(tmp_path, encoded_image):
    write_qspatial_prompts(tmp_path / "prompt_templates")
    parquet = tmp_path / "data" / "QSpatial_plus-00000-of-00001.parquet"
    _write(parquet, [_row(encoded_image, 1, "m", "size")])
    parquet.write_bytes(parquet.read_bytes()[:-40])
    with pytest.raises(
        ValueError, match=r"QSpatial_plus-00000-of-00001\.parquet: not a readable parquet file"
    ):
        load_qspatial(parquet)
