"""Reading synthetic datasets back: torch datasets per stage, whole scenes, Hugging Face export."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from cooper_lib.data.records import QARecord, Stage1Record, parse_sft, parse_stage1, read_jsonl
from cooper_lib.modalities import get_modality

from .files import load_depth, load_ids, load_normals, load_rgb
from .layout import Camera, Room
from .scene import SceneObject, SpatialScene
from .writer import FORMAT, STAGES


def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a dataset folder written by `write_dataset`."""
    path = Path(root) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(
            f"root: no manifest.json in {root} (not a dataset, or its writing was interrupted)"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"root: {path} is not a {FORMAT} manifest (format {manifest.get('format')!r})")
    return manifest


class _RecordDataset(Dataset):
    """Records of one stage; subclasses turn a record into tensors."""

    stages: tuple[str, ...] = ()

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.manifest = read_manifest(root)
        if self.manifest["stage"] not in self.stages:
            raise ValueError(
                f"root: holds {self.manifest['stage']!r} records, {type(self).__name__} reads {self.stages}"
            )
        self.records = list(read_jsonl(self.root / "records.jsonl"))

    def __len__(self) -> int:
        return len(self.records)


class Stage1Dataset(_RecordDataset):
    """Items: id, image [3, H, W] float, modality, target (read by the modality: depth [H, W] metres,
    class ids [H, W] long, ...), instruction."""

    stages = ("stage1",)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = Stage1Record.from_dict(self.records[index])
        example = parse_stage1(record.to_dict(), self.root, f"{self.root}: record {index}")
        return {
            "id": record.id,
            "image": load_rgb(self.root / record.image),
            "modality": record.modality,
            "target": example.load_target(),
            "instruction": record.instruction,
        }


class SFTDataset(_RecordDataset):
    """Items: id, items (COOPER's list; image values and targets loaded as tensors), meta."""

    stages = ("sft", "caption")

    def __getitem__(self, index: int) -> dict[str, Any]:
        where = f"{self.root}: record {index}"
        record = parse_sft(self.records[index], self.root, where, self.manifest.get("depth_scale"))
        items = []
        for item in record.items:
            entry = item.to_dict()
            entry.pop("target_scale", None)
            if item.type == "image":
                entry["value"] = load_rgb(self.root / item.value)
            if item.target is not None:
                entry["target"] = record.load_target(item)
            items.append(entry)
        return {"id": record.id, "items": items, "meta": record.meta}


class QADataset(_RecordDataset):
    """Items: the `QARecord` fields, with `image` loaded as [3, H, W] float (GRPO and eval stages)."""

    stages = ("grpo", "eval")

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = QARecord.from_dict(self.records[index])
        return {**record.to_dict(), "image": load_rgb(self.root / record.image)}


class SceneDataset(Dataset):
    """The scenes of any dataset folder as `SpatialScene`s (maps as stored: RGB and normals 8 bit,
    depth to the millimetre)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.manifest = read_manifest(root)
        self.scenes = list(read_jsonl(self.root / "scenes.jsonl"))

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> SpatialScene:
        meta = self.scenes[index]
        files = {k: self.root / v for k, v in meta["files"].items()}
        return SpatialScene(
            seed=meta["seed"],
            rgb=load_rgb(files["images"]),
            depth=load_depth(files["depth"]),
            semantic=load_ids(files["semantic"]),
            instance=load_ids(files["instance"]),
            normals=load_normals(files["normals"]),
            camera=Camera.from_dict(meta["camera"]),
            light=tuple(meta["light"]),
            objects=[SceneObject.from_dict(o) for o in meta["objects"]],
            room=None if meta["room"] is None else Room(**meta["room"]),
        )


_DATASETS = {
    "stage1": Stage1Dataset,
    "sft": SFTDataset,
    "caption": SFTDataset,
    "grpo": QADataset,
    "eval": QADataset,
}


def load_synthetic_dataset(root: str | os.PathLike, stage: str | None = None) -> Dataset:
    """The torch dataset of a folder written by `write_dataset`.

    Args:
        root: the dataset folder.
        stage: the expected stage (checked against the manifest); None takes the manifest's.
    """
    written = read_manifest(root)["stage"]
    if stage is not None and stage not in STAGES:
        raise ValueError(f"stage: expected one of {STAGES} or None, got {stage!r}")
    if stage is not None and stage != written:
        raise ValueError(f"stage: asked for {stage!r} records but {root} holds {written!r} records")
    return _DATASETS[written](root)


def _embedded(root: Path, name: str) -> dict[str, Any]:
    """A file of the folder as ``datasets.Image`` stores it: its bytes and its relative name."""
    return {"bytes": (root / name).read_bytes(), "path": name}


def _portable_item(root: Path, item: dict[str, Any], depth_scale: float | None) -> dict[str, Any]:
    """An SFT item with its image embedded (a base64 data URI, COOPER's own format) and its target
    map as ``{"bytes", "path"}`` (with the manifest's depth scale, which does not travel)."""
    item = dict(item)
    if item["type"] == "image":
        data = base64.b64encode((root / item["value"]).read_bytes()).decode("ascii")
        item["value"] = f"data:image/png;base64,{data}"
    if item.get("target") is not None:
        item["target"] = _embedded(root, item["target"])
        if item.get("target_scale") is None and get_modality(item["modality"]).scaled_png:
            item["target_scale"] = depth_scale
    return item


def to_hf_dataset(root: str | os.PathLike):
    """The folder's records as a portable Hugging Face `datasets.Dataset`: every file is embedded
    (stage-1 `image` and `target` and QA `image` as `datasets.Image` columns, SFT images as base64
    data URIs and SFT target maps as ``{"bytes", "path"}``), so the dataset can be saved, pushed to
    the hub and trained from anywhere (`cooper_lib.data.hf`).

    Raises:
        ImportError: the optional `datasets` package is not installed.
    """
    try:
        import datasets
    except ImportError as err:
        raise ImportError(
            "to_hf_dataset needs the optional `datasets` package (pip install datasets); "
            "load_synthetic_dataset() gives torch datasets without it"
        ) from err
    root = Path(root)
    manifest = read_manifest(root)
    stage = manifest["stage"]
    records = list(read_jsonl(root / "records.jsonl"))
    if stage in ("sft", "caption"):
        scale = manifest.get("depth_scale")
        rows = [
            {
                **r,
                "items": [_portable_item(root, i, scale) for i in r["items"]],
                "meta": json.dumps(r["meta"]),  # meta keys vary by question
            }
            for r in records
        ]
        return datasets.Dataset.from_list(rows)
    columns = ("image", "target") if stage == "stage1" else ("image",)
    rows = [{**r, **{k: _embedded(root, r[k]) for k in columns}} for r in records]
    if stage != "stage1":
        rows = [{**r, "meta": json.dumps(r["meta"])} for r in rows]
    dataset = datasets.Dataset.from_list(rows)
    for column in columns:
        dataset = dataset.cast_column(column, datasets.Image())
    return dataset
