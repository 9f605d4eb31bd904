"""Property-based tests of the record model (`cooper_lib.data.records`): every record written
reads back equal, and path confinement accepts exactly the paths that stay in the folder."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cooper_lib.data.records import (
    Item,
    QARecord,
    SFTRecord,
    confine,
    parse_sft,
    read_jsonl,
    write_jsonl,
)

PROPERTY = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
finite = st.floats(allow_nan=False, allow_infinity=False)
json_scalar = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | finite | text

qa_records = st.builds(
    QARecord,
    id=text,
    image=text,
    question=text,
    answer=text,
    answer_type=st.sampled_from(["choice", "yes_no", "integer", "number", "text"]),
    category=text,
    cpr=st.sampled_from(["positive", "negative", "boundary"]),
    modality=st.none() | st.sampled_from(["depth", "segmentation"]),
    unit=st.none() | st.sampled_from(["m", "cm"]),
    choices=st.lists(text, max_size=4),
    value=st.none() | finite,
    meta=st.dictionaries(text, json_scalar, max_size=3),
)
text_items = st.builds(
    Item,
    type=st.just("text"),
    value=text,
    need_loss=st.booleans(),
    role=st.none() | st.sampled_from(["user", "assistant"]),
)
image_items = st.builds(
    Item, type=st.just("image"), value=st.from_regex(r"[a-z]{1,8}/[a-z0-9]{1,8}\.png", fullmatch=True)
)
sft_records = st.builds(
    SFTRecord,
    id=text,
    items=st.lists(text_items | image_items, min_size=1, max_size=5),
    meta=st.dictionaries(text, json_scalar, max_size=3),
)


@PROPERTY
@given(records=st.lists(qa_records, max_size=4))
def test_qa_records_round_trip_through_jsonl(records, tmp_path):
    path = tmp_path / "qa.jsonl"
    assert write_jsonl(path, records) == len(records)
    assert [QARecord.from_dict(row) for row in read_jsonl(path)] == records


@PROPERTY
@given(record=sft_records)
def test_sft_records_round_trip(record, tmp_path):
    assert SFTRecord.from_dict(record.to_dict()) == record
    if any(item.need_loss for item in record.items):  # a file row reads back through parse_sft
        assert parse_sft(record.to_dict(), tmp_path, "row") == record


segments = st.lists(st.sampled_from(["a", "b", "..", ".", "c.png"]), min_size=1, max_size=6)


@PROPERTY
@given(parts=segments, absolute=st.booleans())
def test_confine_accepts_exactly_the_paths_inside_the_folder(parts, absolute, tmp_path):
    root = tmp_path / "data"
    name = os.path.join(str(root) if absolute else "", *parts)
    inside = os.path.commonpath([os.path.abspath(root / name), str(root)]) == str(root)
    if inside:
        assert Path(os.path.abspath(confine(name, root, "row"))) == Path(os.path.abspath(root / name))
    else:
        with pytest.raises(ValueError, match="outside the dataset folder"):
            confine(name, root, "row")
    assert confine(name, root, "row", allow_outside_root=True) == (root / name)
