import pytest
import torch

from cooper_lib.data.records import (
    Item,
    QARecord,
    SFTRecord,
    Stage1Record,
    read_jsonl,
    write_jsonl,
)
from cooper_lib.data.turns import tool_call


def test_items_validate():
    with pytest.raises(ValueError, match="type"):
        Item("audio", "x")
    with pytest.raises(TypeError, match="value"):
        Item("text", torch.zeros(3))
    with pytest.raises(ValueError, match="need_loss"):
        Item("image", "a.png", need_loss=True)
    with pytest.raises(TypeError, match="tensor"):
        Item("image", torch.zeros(3, 2, 2)).to_dict()


def test_jsonl_round_trip(tmp_path):
    sft = SFTRecord(
        "a",
        [
            Item("text", "hi", role="system"),
            Item("image", "x.png", modality="depth", target="d.png", role="tool"),
        ],
        {"k": 1},
    )
    stage1 = Stage1Record("b", "x.png", "depth", "d.png", tool_call("depth"), 1000.0)
    qa = QARecord(
        "c", "x.png", "How far?", "1.50", "number", "distance_camera", "positive", "depth", "m", value=1.5
    )
    path = tmp_path / "r.jsonl"
    assert write_jsonl(path, [sft, stage1, qa]) == 3
    rows = list(read_jsonl(path))
    assert SFTRecord.from_dict(rows[0]) == sft
    assert Stage1Record.from_dict(rows[1]) == stage1
    assert QARecord.from_dict(rows[2]) == qa
    assert sft.text() == "hi\n<image>"


def test_bad_jsonl_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:3"):
        list(read_jsonl(path))
