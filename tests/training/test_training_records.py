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


def test_coopers_rl_rows_load_unchanged(tmp_path):
    # rows exactly as COOPER's RL_data.jsonl holds them (train/grpo/grpo_data_module.py:22-33):
    # question, answer, image (relative to --image_root), data_id, optional flag
    from PIL import Image

    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (20, 10), (200, 0, 0)).save(root / "a.png")
    rows = [
        {
            "question": "Which is closer? (A) the box (B) the ball",
            "answer": "(B) the ball",
            "image": "a.png",
            "data_id": 7,
            "flag": "positive",
        },
        {"question": "Is the ball left of the box?", "answer": "Yes.", "image": "a.png", "data_id": "q8"},
        {"question": "How many chairs?", "answer": "3", "image": "a.png", "data_id": 9, "flag": "negative"},
        {
            "question": "How far is the chair?",
            "answer": "2.5 m",
            "image": "a.png",
            "data_id": 10,
            "flag": "boundary",
        },
        {"question": "What colour is the ball?", "answer": "dark red", "image": "a.png", "data_id": 11},
        {"question": "Which option?", "answer": "C", "image": "a.png", "data_id": 12},
    ]
    path = write(tmp_path / "RL_data.jsonl", rows)
    questions = load_qa_records([path], image_root=root)
    # by hand: flag default "boundary"; "(B) ..." -> B (upstream's rule reads ground_truth[1])
    assert [q.id for q in questions] == ["7", "q8", "9", "10", "11", "12"]
    assert [q.flag for q in questions] == [
        "positive",
        "boundary",
        "negative",
        "boundary",
        "boundary",
        "boundary",
    ]
    refs = [q.reference for q in questions]
    assert [(r.answer, r.answer_type, r.unit) for r in refs] == [
        ("B", "choice", None),
        ("yes", "yes_no", None),
        ("3", "integer", None),
        ("2.5", "number", "m"),
        ("dark red", "text", None),
        ("C", "choice", None),
    ]
    assert questions[0].question == rows[0]["question"] and questions[0].load_image().size == (20, 10)
    from cooper_lib.training.judges import RuleJudge

    judge = RuleJudge()
    assert judge("\\boxed{B}", refs[0]) and not judge("\\boxed{A}", refs[0])
    assert judge("\\boxed{250 cm}", refs[3]) and judge("\\boxed{yes}", refs[1])


def test_cooper_rl_row_errors(tmp_path):
    with pytest.raises(ValueError, match=r"missing \['data_id'\] \(a COOPER RL_data.jsonl row"):
        load_qa_records([write(tmp_path / "a.jsonl", [{"question": "q", "answer": "A", "image": "x.png"}])])
    with pytest.raises(ValueError, match="flag: expected one of"):
        load_qa_records(
            [
                write(
                    tmp_path / "b.jsonl",
                    [{"question": "q", "answer": "A", "image": "x.png", "data_id": 1, "flag": "maybe"}],
                )
            ]
        )
    with pytest.raises(FileNotFoundError, match="image_root"):
        load_qa_records([tmp_path / "b.jsonl"], image_root=tmp_path / "nowhere")

    blank = {"image": "a", "question": "q", "answer": "  ", "answer_type": "yes_no", "cpr": "positive"}
    with pytest.raises(ValueError, match=r"q2.jsonl:1: answer: expected a non-empty reference answer"):
        load_qa_records([write(tmp_path / "q2.jsonl", [blank])])
