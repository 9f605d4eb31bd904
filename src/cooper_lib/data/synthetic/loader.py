"""Reading synthetic datasets back: torch datasets per stage, whole scenes, Hugging Face export."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from cooper_lib.data.records import QARecord, Stage1Record, parse_sft, parse_stage1, read_jsonl

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

    stages = ("sft",)

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


_DATASETS = {"stage1": Stage1Dataset, "sft": SFTDataset, "grpo": QADataset, "eval": QADataset}


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


def _absolute(root: Path, record: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {**record, **{k: str(root / record[k]) for k in keys if record.get(k) is not None}}


def to_hf_dataset(root: str | os.PathLike):
    """The folder's records as a Hugging Face `datasets.Dataset`, paths made absolute; image
    columns (stage 1 `image` and `target`, QA `image`) are cast to `datasets.Image`.

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
    stage = read_manifest(root)["stage"]
    records = list(read_jsonl(root / "records.jsonl"))
    if stage == "sft":
        rows = [
            {
                **r,
                "items": [
                    _absolute(root, i, ("target",) + (("value",) if i["type"] == "image" else ()))
                    for i in r["items"]
                ],
            }
            for r in records
        ]
        rows = [{**r, "meta": json.dumps(r["meta"])} for r in rows]  # meta keys vary by question
        return datasets.Dataset.from_list(rows)
    columns = ("image", "target") if stage == "stage1" else ("image",)
    rows = [_absolute(root, r, columns) for r in records]
    if stage != "stage1":
        rows = [{**r, "meta": json.dumps(r["meta"])} for r in rows]
    dataset = datasets.Dataset.from_list(rows)
    for column in columns:
        dataset = dataset.cast_column(column, datasets.Image())
    return dataset
