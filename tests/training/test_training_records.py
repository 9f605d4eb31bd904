import json

import pytest

from cooper_lib.data.records import load_sft_records
from cooper_lib.training.records import load_qa_records


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_depth_target_scale_comes_from_the_manifest(synthetic):
    records = load_sft_records([synthetic["sft"] / "records.jsonl"])
    item = next(i for r in records for i in r.items if i.modality == "depth" and i.target is not None)
    assert item.target_scale == 1000.0


def test_qa_records(synthetic, tmp_path):
    questions = load_qa_records([synthetic["grpo"] / "records.jsonl"])
    assert len(questions) == 16 and {q.flag for q in questions} <= {"positive", "negative", "boundary"}
    assert questions[0].load_image().size == (48, 48)
    with pytest.raises(ValueError, match="cpr"):
        load_qa_records(
            [
                write(
                    tmp_path / "q.jsonl",
                    [{"image": "a", "question": "q", "answer": "A", "answer_type": "choice", "cpr": "maybe"}],
                )
            ]
        )
    blank = {"image": "a", "question": "q", "answer": "  ", "answer_type": "yes_no", "cpr": "positive"}
    with pytest.raises(ValueError, match=r"q2.jsonl:1: answer: expected a non-empty reference answer"):
        load_qa_records([write(tmp_path / "q2.jsonl", [blank])])
