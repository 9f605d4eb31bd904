"""The supported-backbones table in docs/backbones.md is generated from the registry and up to date."""

from pathlib import Path

import pytest

from cooper_lib.backbones.registry import supported_families
from cooper_lib.backbones.table import END, START, main, render_table, update_page

PAGE = Path(__file__).parents[2] / "docs" / "backbones.md"


@pytest.fixture(scope="module")
def table() -> str:
    return render_table()


def test_docs_page_is_up_to_date(table):
    text = PAGE.read_text(encoding="utf-8")
    assert f"{START}\n{table}\n{END}" in text, (
        "docs/backbones.md is stale: run `python -m cooper_lib.backbones.table`"
    )


def test_table_has_a_row_per_registered_family(table):
    lines = table.splitlines()
    assert len(lines) == 2 + len(supported_families())
    for (family, _), line in zip(supported_families(), lines[2:], strict=True):
        assert line.startswith(f"| {family} | ")
    assert "| qwen2_vl | `qwen2_vl` | `Qwen2VLForConditionalGeneration` |" in table
    assert "`image_grid_thw`, `mm_token_type_ids` | no |" in table


def test_update_page_replaces_only_between_the_markers(table):
    page = f"# Title\n\nintro\n\n{START}\nold rows\n{END}\n\nafter\n"
    assert update_page(page) == f"# Title\n\nintro\n\n{START}\n{table}\n{END}\n\nafter\n"
    with pytest.raises(ValueError, match="expected one"):
        update_page("# no markers\n")


def test_check_mode_reports_a_stale_page_without_writing(tmp_path, monkeypatch, table):
    monkeypatch.setattr("cooper_lib.backbones.table.render_table", lambda: table)
    page = tmp_path / "backbones.md"
    page.write_text(f"{START}\nold rows\n{END}\n", encoding="utf-8")
    assert main([str(page), "--check"]) == 1
    assert "old rows" in page.read_text(encoding="utf-8")
    assert main([str(page)]) == 0
    assert main([str(page), "--check"]) == 0
    assert page.read_text(encoding="utf-8") == f"{START}\n{table}\n{END}\n"
