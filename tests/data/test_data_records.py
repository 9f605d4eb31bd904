import json

import numpy as np
import pytest
import torch
from PIL import Image

from cooper_lib.data.records import (
    Item,
    QARecord,
    SFTRecord,
    Stage1Record,
    load_sft_records,
    load_stage1_records,
    parse_sft,
    read_jsonl,
    write_jsonl,
)
from cooper_lib.data.turns import tool_call
from cooper_lib.images import to_pil
from cooper_lib.modalities import SegmentationCodec


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


# ------------------------------------------------------------------ reading
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


def test_images_from_paths_base64_arrays_and_tensors(files):
    import base64

    raw = base64.b64encode((files / "rgb.png").read_bytes()).decode()
    for value in (
        "rgb.png",
        raw,
        "data:image/png;base64," + raw,
        np.full((6, 8, 3), 100, np.uint8),
        torch.full((3, 6, 8), 100 / 255),
    ):
        image = to_pil(value, base_dir=files)
        assert image.size == (8, 6) and image.getpixel((0, 0)) == (100, 100, 100)
    with pytest.raises(FileNotFoundError, match="no image file at"):
        to_pil("missing.png", base_dir=files)
    with pytest.raises(ValueError, match="RGB array"):
        to_pil(np.zeros((4, 4)), base_dir=files)


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
    maps_only = {
        "id": "m1",
        "items": [
            {"type": "text", "value": "<depth-estimation>go</depth-estimation>", "role": "assistant"},
            {"type": "image", "value": "d.png", "role": "tool", "modality": "depth", "target": "t.png"},
        ],
    }
    a, b, m = load_sft_records([write(tmp_path / "s.jsonl", [ours, cooper, maps_only])])
    assert a.id == "r1" and a.roles() == ["user", "assistant"] == b.roles()
    # a record with a map's target and no text loss trains the heads alone
    assert m.items[1].target == "t.png" and not any(item.need_loss for item in m.items)
    for row, message in [
        ({"interleaved_reason": [{"type": "text", "value": "x", "need_loss": "yes"}]}, "need_loss"),
        ({"interleaved_reason": [{"type": "video", "value": "x"}]}, "type"),
        ({"interleaved_reason": [{"type": "image", "value": "x", "need_loss": True}]}, "only text items"),
        (
            {"interleaved_reason": [{"type": "text", "value": "x"}]},
            "no item has need_loss and no map a target",
        ),
        ({"messages": []}, "interleaved_reason"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_sft(row, tmp_path, "row")


def test_unknown_keys_name_the_key_and_the_accepted_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]; expected a subset of \[.*'need_loss'"):
        Item.from_dict({"type": "text", "value": "x", "colour": 1})
    with pytest.raises(ValueError, match=r"unknown keys \['scale'\]"):
        Stage1Record.from_dict(
            {"id": "a", "image": "i", "modality": "depth", "target": "t", "instruction": "", "scale": 1}
        )
    with pytest.raises(ValueError, match="unknown modality 'sonar'"):
        load_stage1_records(
            [write(tmp_path / "s.jsonl", [{"image": "a", "modality": "sonar", "target": "b"}])]
        )


def _write_rows(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("escape", ["../secret.png", "rgb/../../secret.png", "ABSOLUTE"])
def test_record_paths_stay_inside_the_dataset_folder(tmp_path, escape):
    from cooper_lib.data.records import load_sft_records, load_stage1_records

    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(secret)
    name = str(secret) if escape == "ABSOLUTE" else escape
    stage1 = _write_rows(
        tmp_path / "data" / "s1.jsonl",
        [{"image": name, "modality": "depth", "target": "depth/0.png", "depth_scale": 1000}],
    )
    with pytest.raises(ValueError, match=r"s1.jsonl:1: image: .*outside the dataset folder"):
        load_stage1_records([stage1])
    example = load_stage1_records([stage1], allow_outside_root=True)[0]
    assert example.image.resolve() == secret.resolve()
    sft = _write_rows(
        tmp_path / "data" / "sft.jsonl",
        [
            {
                "interleaved_reason": [
                    {"type": "image", "value": name},
                    {"type": "text", "value": "a", "need_loss": "true"},
                ]
            }
        ],
    )
    with pytest.raises(ValueError, match=r"sft.jsonl:1: item 0: value: .*outside the dataset folder"):
        load_sft_records([sft])
    assert load_sft_records([sft], allow_outside_root=True)[0].items[0].value == name


def test_inside_paths_and_base64_images_are_not_confined(tmp_path):
    from cooper_lib.data.records import confine, confine_image

    root = tmp_path / "data"
    assert confine("rgb/../rgb/0.png", root, "x") == root / "rgb/../rgb/0.png"
    assert confine(str(root / "rgb" / "0.png"), root, "x") == root / "rgb" / "0.png"
    confine_image("/9j/4AAQSkZJRgABAQ==", root, "x")  # base64 of a JPEG starts with a slash
    confine_image("../missing.png", root, "x")  # no such file: left to the image reader's error


def test_a_non_utf8_jsonl_line_is_named(tmp_path):
    from cooper_lib.data.records import read_jsonl

    (tmp_path / "rows.jsonl").write_bytes(b'{"a": 1}\n{"b": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"rows.jsonl:2: not UTF-8 text"):
        list(read_jsonl(tmp_path / "rows.jsonl"))
