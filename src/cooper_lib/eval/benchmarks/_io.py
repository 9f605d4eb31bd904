"""File checks and table readers shared by the benchmark loaders.

Each check raises with the benchmark's name, the exact path expected and what it should hold,
so a user with an incomplete local copy learns what to fetch. Tables are read with the standard
library (csv, json); parquet needs pyarrow, imported only when a parquet file is read.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cooper_lib.data.records import confine
from cooper_lib.serialization import read_text

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
    """Header and rows of a CSV / TSV file (quoted fields, long base64 cells and a UTF-8 BOM allowed).

    ``ValueError`` naming the file and line when it is not UTF-8 or a row has fewer or more cells
    than the header (a truncated or corrupt file)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    text = read_text(path, "table").removeprefix("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = list(reader.fieldnames or [])
    rows = []
    try:
        for row in reader:
            missing = [name for name, value in row.items() if value is None]
            if missing or None in row:
                cause = f"missing cells {missing}" if missing else f"{len(row[None])} cells past the header"
                raise ValueError(
                    f"{path}: line {reader.line_num}: expected {len(header)} cells like the header, "
                    f"got {cause} (truncated or corrupt row)"
                )
            rows.append(row)
    except csv.Error as err:
        raise ValueError(f"{path}: line {reader.line_num}: not a valid table ({err})") from err
    return header, rows


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; ``ValueError`` naming the line when one is not a JSON object."""
    records = []
    for number, line in enumerate(read_text(path, "JSON-lines file").splitlines(), start=1):
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
    """Rows of a parquet file as dicts (needs pyarrow); ``ValueError`` naming the file when it is
    truncated or not parquet."""
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ImportError(
            f"{benchmark}: reading {path} needs pyarrow; install it with `pip install pyarrow`"
        ) from err
    import pyarrow

    try:
        return pq.read_table(path).to_pylist()
    except (pyarrow.ArrowException, OSError) as err:
        raise ValueError(
            f"{benchmark}: {path}: not a readable parquet file, truncated or corrupt ({err})"
        ) from err


def clean(value: Any) -> str:
    """A table cell as stripped text; empty for missing cells (``None``, ``nan``)."""
    if value is None:
        return ""
    text = str(value).strip()
    return "" if text.lower() == "nan" else text
