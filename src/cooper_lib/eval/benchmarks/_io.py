"""File checks and table readers shared by the benchmark loaders.

Each check raises with the benchmark's name, the exact path expected and what it should hold,
so a user with an incomplete local copy learns what to fetch. Tables are read with the standard
library (csv, json); parquet needs pyarrow, imported only when a parquet file is read.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cooper_lib.data.records import confine

_MAX_LISTED = 5


def require_dir(path: Path, benchmark: str, what: str) -> Path:
    """``path`` if it is a directory, else ``FileNotFoundError`` naming what it should hold."""
    if not path.is_dir():
        raise FileNotFoundError(f"{benchmark}: expected a directory {path} holding {what}; it does not exist")
    return path


def require_file(path: Path, benchmark: str, what: str) -> Path:
    """``path`` if it is a file, else ``FileNotFoundError`` naming what it should hold."""
    if not path.is_file():
        raise FileNotFoundError(f"{benchmark}: expected {what} at {path}; no such file")
    return path


def require_files(paths: Iterable[Path], benchmark: str, what: str) -> None:
    """Raise ``FileNotFoundError`` listing (the first few of) the given paths that do not exist."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:_MAX_LISTED])
        more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise FileNotFoundError(f"{benchmark}: {len(missing)} {what} missing: {shown}{more}")


def image_path(
    root: Path, name: str, benchmark: str, where: str, *, allow_outside_root: bool = False
) -> Path:
    """The image a table row names, resolved against `root`; ``..`` steps or an absolute path
    leading out of `root` are a ``ValueError`` unless `allow_outside_root`
    (`cooper_lib.data.records.confine`)."""
    return confine(name, root, f"{benchmark}: {where}: image", allow_outside_root=allow_outside_root)


def require_columns(found: Iterable[str], required: Sequence[str], benchmark: str, source: Path) -> None:
    """Raise ``ValueError`` when ``source`` lacks any of the ``required`` columns."""
    found = list(found)
    missing = [c for c in required if c not in found]
    if missing:
        raise ValueError(f"{benchmark}: {source} lacks columns {missing}; found columns {found}")


def read_delimited(path: Path, delimiter: str) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV / TSV file (quoted fields, long base64 cells and a UTF-8 BOM allowed)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        rows = list(reader)
        header = list(reader.fieldnames or [])
    return header, rows


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; ``ValueError`` naming the line when one is not a JSON object."""
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number} is not valid JSON: {err}") from err
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number} must be a JSON object, got {type(record).__name__}")
            records.append(record)
    return records


def read_parquet(path: Path, benchmark: str) -> list[dict[str, Any]]:
    """Rows of a parquet file as dicts (needs pyarrow)."""
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ImportError(
            f"{benchmark}: reading {path} needs pyarrow; install it with `pip install pyarrow`"
        ) from err
    return pq.read_table(path).to_pylist()


def clean(value: Any) -> str:
    """A table cell as stripped text; empty for missing cells (``None``, ``nan``)."""
    if value is None:
        return ""
    text = str(value).strip()
    return "" if text.lower() == "nan" else text
