"""Hugging Face `datasets` as record sources: a `datasets.Dataset`, a folder written by
``Dataset.save_to_disk``, a parquet file or a hub dataset id (``hf://org/name`` or
``hf://org/name:split``) reads as the same rows as a JSONL file.

Image columns come back as ``datasets`` stores them (``{"bytes": ..., "path": ...}``, or PIL
images when decoded). Embedded bytes are written once, by content hash, under `cache_dir`
(default ``~/.cache/cooper_lib/datasets``) and the row names that file, so every reader
(images, stage-1 and SFT target maps of any modality) and every `DataLoader` worker sees a
plain path; images stored by path stay paths (relative ones are read from the dataset folder).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

#: Prefix of a hub dataset id in a list of data files (``hf://org/name[:split]``).
HUB_PREFIX = "hf://"


def _datasets():
    try:
        import datasets
    except ImportError as err:
        raise ImportError(
            "reading a datasets.Dataset, a saved dataset folder or a hub dataset needs the optional "
            "`datasets` package (pip install 'cooper-lib[hf]')"
        ) from err
    return datasets


def is_dataset_source(source: Any) -> bool:
    """Whether `source` is read by `dataset_rows` (not a JSONL file): a `datasets` dataset, a hub
    id ``hf://...``, a ``save_to_disk`` folder or a ``.parquet`` file."""
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if text.startswith(HUB_PREFIX):
            return True
        path = Path(text)
        saved = ("dataset_info.json", "dataset_dict.json")  # a Dataset's / a DatasetDict's save_to_disk
        return path.suffix == ".parquet" or (path.is_dir() and any((path / n).is_file() for n in saved))
    return type(source).__module__.split(".")[0] == "datasets"


def _open(source: Any, split: str) -> tuple[Any, Path, str]:
    """(dataset, folder relative paths are read from, name for messages)."""
    datasets = _datasets()
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if text.startswith(HUB_PREFIX):
            name, _, given = text[len(HUB_PREFIX) :].partition(":")
            if not name:
                raise ValueError(f"data: expected hf://<dataset id>[:<split>], got {text!r}")
            return datasets.load_dataset(name, split=given or split), Path.cwd(), text
        path = Path(text)
        if path.suffix == ".parquet":
            if not path.is_file():
                raise FileNotFoundError(f"{path}: parquet file not found")
            dataset = datasets.load_dataset("parquet", data_files=str(path), split="train")
            return dataset, path.parent, text
        return datasets.load_from_disk(str(path)), path, text
    return source, Path.cwd(), type(source).__name__


def default_cache_dir() -> Path:
    """Where `dataset_rows` writes embedded image bytes by default (``~/.cache/cooper_lib/datasets``).
    The files are the library's own, so record readers accept paths into it (`records.confine`)."""
    return Path.home() / ".cache" / "cooper_lib" / "datasets"


def dataset_rows(
    source: Any, split: str = "train", cache_dir: str | os.PathLike | None = None
) -> Iterator[tuple[dict[str, Any], Path, str]]:
    """(row, folder of relative paths, "name[index]") for every row of a `datasets` source.

    Args:
        source: a `datasets.Dataset` / `IterableDataset` / `DatasetDict` (its `split`), a folder
            saved by ``save_to_disk``, a ``.parquet`` file, or ``hf://<dataset id>[:<split>]``.
        split: the split of a `DatasetDict` or hub id that names none.
        cache_dir: where embedded image bytes are written (see the module docstring).
    """
    if not is_dataset_source(source):
        raise TypeError(
            "source: expected a datasets.Dataset, a save_to_disk folder, a .parquet file or "
            f"'hf://<dataset id>', got {source!r}"
        )
    dataset, base, name = _open(source, split)
    datasets = _datasets()
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in dataset:
            raise ValueError(f"split: {name} has splits {sorted(dataset)}, not {split!r}")
        dataset = dataset[split]
    features = getattr(dataset, "features", None) or {}
    for column, feature in features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    for index, row in enumerate(dataset):
        yield _plain(row, base, cache), base, f"{name}[{index}]"


def _plain(value: Any, base: Path, cache: Path) -> Any:
    """`value` with every stored image (bytes dict or PIL image) replaced by a file path."""
    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return _write(buffer.getvalue(), ".png", cache)
    if isinstance(value, dict):
        if set(value) == {"bytes", "path"}:
            if value["bytes"] is not None:
                suffix = Path(value["path"] or "x.png").suffix or ".png"
                return _write(value["bytes"], suffix, cache)
            if value["path"] is None:
                return None
            path = Path(value["path"])
            return str(path if path.is_absolute() else base / path)
        return {k: _plain(v, base, cache) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, base, cache) for v in value]
    return value


def _write(data: bytes, suffix: str, cache: Path) -> str:
    """The path of a file holding `data` (written once, named by its content hash)."""
    path = cache / f"{hashlib.sha256(data).hexdigest()}{suffix}"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return str(path)


def as_records(given: Any, load: Any) -> list[Any]:
    """Trainer records: `given` read by `load` (a ``load_*_records`` reader) when it is a
    `datasets` source, else `given` itself as a list (records already parsed)."""
    return load(given) if is_dataset_source(given) else list(given)
