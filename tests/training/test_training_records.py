import json

import numpy as np
import pytest
import torch
from PIL import Image

from cooper_lib.modalities import SegmentationCodec
from cooper_lib.training.records import (
    load_qa_records,
    load_sft_records,
    load_stage1_records,
    parse_sft,
)


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def files(tmp_path):
    Image.fromarray(np.full((6, 8, 3), 100, np.uint8)).save(tmp_path / "rgb.png")
    Image.fromarray(np.array([[0, 1000], [2500, 65535]], np.uint16)).save(tmp_path / "depth.png")
    ids = np.array([[0, 1], [2, 3]], np.uint8)
    Image.fromarray(ids).save(tmp_path / "ids.png")
    colours = SegmentationCodec(palette="ade20k").encode(torch.tensor([[4, 7], [7, 4]]))
    Image.fromarray((colours.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
        tmp_path / "seg.png"
    )
    return tmp_path


def test_stage1_formats_decode_targets(files):
    path = write(
        files / "s1.jsonl",
        [
            {"image": "rgb.png", "modality": "depth", "target": "depth.png", "depth_scale": 1000},
            {
                "image": "rgb.png",
                "modality": "depth",
                "target": "depth.png",
                "depth_preset": "vkitti",
                "source": "vkitti",
            },
            {"image": "rgb.png", "modality": "segmentation", "target": "ids.png", "reduce_zero_label": True},
            {
                "image": "rgb.png",
                "modality": "segmentation",
                "target": "seg.png",
                "palette": "ade20k",
                "id": "ade",
            },
        ],
    )
    metric, vkitti, reduced, coloured = load_stage1_records([path])
    assert torch.allclose(metric.load_target(), torch.tensor([[0.0, 1.0], [2.5, 65.535]]))
    assert torch.allclose(vkitti.load_target(), torch.tensor([[0.0, 10.0], [25.0, 655.35]]))
    assert (metric.source, vkitti.source) == ("depth", "vkitti")
    assert torch.equal(reduced.load_target(), torch.tensor([[255, 0], [1, 2]]))
    assert torch.equal(coloured.load_target(), torch.tensor([[4, 7], [7, 4]]))
    assert coloured.id == "ade" and metric.load_image().size == (8, 6)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"image": "a", "modality": "depth", "target": "b"}, "exactly one of depth_scale"),
        (
            {"image": "a", "modality": "depth", "target": "b", "depth_scale": 1, "depth_preset": "nyu"},
            "exactly one",
        ),
        ({"image": "a", "modality": "depth", "target": "b", "depth_preset": "moon"}, "depth_preset"),
        ({"image": "a", "modality": "segmentation", "target": "b", "palette": "cityscapes"}, "palette"),
        ({"image": "a", "modality": "depth"}, "missing"),
        ({"image": "a", "modality": "depth", "target": "b", "depth_scale": 1, "colour": 1}, "unknown keys"),
    ],
)
def test_stage1_validation(tmp_path, row, message):
    with pytest.raises(ValueError, match=message):
        load_stage1_records([write(tmp_path / "bad.jsonl", [row])])


def test_sft_rows_in_both_formats_and_their_errors(tmp_path):
    ours = {
        "id": "r1",
        "items": [
            {"type": "text", "value": "q", "role": "user"},
            {"type": "text", "value": "a", "need_loss": True, "role": "assistant"},
        ],
    }
    cooper = {
        "interleaved_reason": [
            {"type": "text", "value": "q", "need_loss": "false"},
            {"type": "text", "value": "a", "need_loss": "true"},
        ]
    }
    a, b = load_sft_records([write(tmp_path / "s.jsonl", [ours, cooper])])
    assert a.id == "r1" and a.roles() == ["user", "assistant"] == b.roles()
    for row, message in [
        ({"interleaved_reason": [{"type": "text", "value": "x", "need_loss": "yes"}]}, "need_loss"),
        ({"interleaved_reason": [{"type": "video", "value": "x"}]}, "type"),
        ({"interleaved_reason": [{"type": "image", "value": "x", "need_loss": True}]}, "only text items"),
        ({"interleaved_reason": [{"type": "text", "value": "x"}]}, "no item has need_loss"),
        ({"messages": []}, "interleaved_reason"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_sft(row, tmp_path, "row")


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
