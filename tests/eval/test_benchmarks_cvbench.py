import json

import pytest

from cooper_lib.eval.benchmarks.cvbench import CVBenchBenchmark, load_cvbench


def _record(idx, task, source, answer, kind="2D"):
    filename = f"img/{kind}/{task.lower()}/{source.lower()}_{idx}.png"
    return {"idx": idx, "type": kind, "task": task, "question": "q?", "choices": ["one", "two", "three"],
            "answer": answer, "prompt": "q? Select from the following choices.\n(A) one\n(B) two\n(C) three",
            "filename": filename, "source": source}  # fmt: skip


def _write(root, name, records, write_image):
    with (root / name).open("w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
            write_image(root / record["filename"])


def test_loads_split_files_and_reports_the_combined_figure(tmp_path, write_image):
    _write(tmp_path, "test_2d.jsonl", [
        _record(0, "Count", "ADE20K", "(A)"), _record(1, "Count", "ADE20K", "(B)"),
        _record(2, "Relation", "COCO", "(C)"),
    ], write_image)  # fmt: skip
    _write(tmp_path, "test_3d.jsonl", [
        _record(0, "Depth", "Omni3D", "(A)", "3D"), _record(1, "Distance", "Omni3D", "(B)", "3D"),
        _record(2, "Distance", "Omni3D", "(C)", "3D"), _record(3, "Depth", "Omni3D", "(A)", "3D"),
    ], write_image)  # fmt: skip
    bench = load_cvbench(tmp_path)
    assert isinstance(bench, CVBenchBenchmark) and len(bench) == 7
    first = bench[0]
    assert (first.id, first.answer, first.category, first.extra["source"]) == (
        "test_2d/0",
        "A",
        "Count",
        "ADE20K",
    )
    assert first.question.endswith("(C) three") and first.image == tmp_path / "img/2D/count/ade20k_0.png"
    answers = ["A", "A", "C", "A", "B", "A", "A"]  # ADE20K 1/2, COCO 1/1, Omni3D 3/4
    scores = [bench.score(item, text) for item, text in zip(bench, answers, strict=True)]
    result = bench.aggregate(scores)
    assert result["accuracy"] == pytest.approx(100 * 5 / 7)
    assert result["accuracy_2d"] == pytest.approx((50.0 + 100.0) / 2)
    assert result["accuracy_3d"] == pytest.approx(75.0)
    assert result["overall"] == pytest.approx((75.0 + 75.0) / 2)
    assert result["per_source"]["omni3d"]["n"] == 4
    partial = bench.aggregate(scores[:3])
    assert "accuracy_2d" not in partial and partial["overall"] == partial["accuracy"]


def test_reports_missing_layout_images_and_bad_answers(tmp_path, write_image):
    with pytest.raises(FileNotFoundError, match="test.jsonl or test_2d.jsonl \\+ test_3d.jsonl"):
        load_cvbench(tmp_path)
    _write(tmp_path, "test.jsonl", [_record(0, "Count", "COCO", "(A)")], write_image)
    (tmp_path / "img/2D/count/coco_0.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 images .* missing: .*coco_0\.png"):
        load_cvbench(tmp_path)
    _write(tmp_path, "test.jsonl", [_record(0, "Count", "COCO", "(D)")], write_image)
    with pytest.raises(ValueError, match="answer must be one of"):
        load_cvbench(tmp_path)
    record = _record(0, "Count", "COCO", "(A)")
    del record["prompt"]
    _write(tmp_path, "test.jsonl", [record], write_image)
    with pytest.raises(ValueError, match=r"lacks columns \['prompt'\]"):
        load_cvbench(tmp_path)


def test_corrupt_jsonl_names_the_file_and_line(tmp_path, write_image):
    _write(tmp_path, "test.jsonl", [_record(0, "Count", "ADE20K", "(A)")], write_image)
    with (tmp_path / "test.jsonl").open("a") as handle:
        handle.write('{"idx": 1, "type": "2D", "task"\n')
    with pytest.raises(ValueError, match=r"test\.jsonl:2 is not valid JSON"):
        load_cvbench(tmp_path)
    (tmp_path / "test.jsonl").write_bytes(b'{"idx": 0, "question": "\xff"}\n')
    with pytest.raises(ValueError, match=r"test\.jsonl: not UTF-8 text \(byte 24"):
        load_cvbench(tmp_path)
