"""Property-based tests of the benchmark table readers (`cooper_lib.eval.benchmarks._io`): any
cell text written to a TSV / CSV or JSONL reads back unchanged, and image paths are confined."""

import csv
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cooper_lib.eval.benchmarks._io import clean, image_path, read_delimited, read_jsonl

PROPERTY = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
cell = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00"), max_size=40)
columns = st.lists(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), min_size=1, max_size=5, unique=True)


@PROPERTY
@given(header=columns, data=st.data(), delimiter=st.sampled_from(["\t", ","]))
def test_delimited_tables_read_back_cell_for_cell(header, data, delimiter, tmp_path):
    rows = data.draw(st.lists(st.lists(cell, min_size=len(header), max_size=len(header)), max_size=5))
    path = tmp_path / "table.tsv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, delimiter=delimiter).writerows([header, *rows])
    found_header, found = read_delimited(path, delimiter)
    assert found_header == header
    assert [[row[c] for c in header] for row in found] == rows


@PROPERTY
@given(records=st.lists(st.dictionaries(cell, cell | st.integers() | st.none(), max_size=4), max_size=5))
def test_jsonl_records_read_back(records, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n\n" for r in records), encoding="utf-8")
    assert read_jsonl(path) == records


@PROPERTY
@given(cell)
def test_clean_strips_and_blanks_missing_cells(value):
    assert clean(value) == ("" if value.strip().lower() == "nan" else value.strip())
    assert clean(None) == ""


@PROPERTY
@given(parts=st.lists(st.sampled_from(["img", "..", ".", "1.jpg"]), min_size=1, max_size=5))
def test_image_paths_outside_the_root_are_refused(parts, tmp_path):
    name = os.path.join(*parts)
    inside = os.path.commonpath([os.path.abspath(tmp_path / name), str(tmp_path)]) == str(tmp_path)
    if inside:
        assert image_path(tmp_path, name, "Bench", "row 0") == tmp_path / name
    else:
        with pytest.raises(ValueError, match="Bench: row 0: image"):
            image_path(tmp_path, name, "Bench", "row 0")
