"""Training records on disk: stage-1 map records and interleaved SFT records, and how to load them.

Stage 1 (one JSON object per line; paths relative to the JSONL file's folder)::

    {"image": "rgb/0001.jpg", "modality": "depth", "target": "depth/0001.png", "depth_scale": 1000}
    {"image": "rgb/0002.jpg", "modality": "depth", "target": "depth/0002.png", "depth_preset": "vkitti"}
    {"image": "ade/0003.jpg", "modality": "segmentation", "target": "ade/0003_seg.png", "palette": "ade20k"}
    {"image": "ade/0004.jpg", "modality": "segmentation", "target": "ade/0004.png", "reduce_zero_label": true}

- depth: an integer PNG divided by ``depth_scale`` (units per metre) or by a preset's scale
  (``nyu`` / ``hypersim`` 1000, ``vkitti`` 100, ``kitti`` 256); 0 means "no depth";
- segmentation: an integer class-id PNG, or, with ``palette`` (``"ade20k"`` or a list of
  ``[r, g, b]``), a colour PNG decoded to the nearest palette colour; ``reduce_zero_label``
  turns id 0 into "ignore" (255) and shifts the rest down by one (ADE20K's id files);
- normals: an 8-bit RGB PNG of ``(n + 1) / 2``;
- optional ``id``, ``source`` (the mixture key, default: the modality) and ``instruction``
  (informational: the prompt's instruction comes from the model's `SpatialConfig`). Records that
  `cooper_lib.data.synthetic.write_dataset(stage="stage1")` writes are in this format.

GRPO: `cooper_lib.data.records.QARecord` rows (image, question, answer, answer_type, cpr flag,
choices, unit, value), as `write_dataset(stage="grpo")` writes them.

SFT: COOPER's rows ``{"interleaved_reason": [{"type": "text" | "image", "value": ..., "need_loss":
"true" | "false"}, ...]}`` load unchanged (images as base64), as do cooper-lib `SFTRecord` rows
``{"id", "items": [...], "meta"}`` whose items may add ``role``, ``modality`` and ``target`` (the
true map supervising the head; a depth target PNG needs ``target_scale``, or a ``manifest.json``
with ``depth_scale`` beside the JSONL). Image values are paths, base64 strings (with or without a
``data:image/...;base64,`` prefix), PIL images, arrays or tensors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cooper_lib.data.records import QARecord, read_jsonl
from cooper_lib.images import to_pil
from cooper_lib.modalities import DEPTH_PRESETS, NormalsCodec, SegmentationCodec, depth_from_png
from cooper_lib.training.judges import Reference
from cooper_lib.training.rewards import CPR_FLAGS

SEG_IGNORE = 255
_STAGE1_KEYS = {
    "id", "image", "modality", "target", "instruction", "source", "depth_scale", "depth_preset",
    "palette", "reduce_zero_label",
}  # fmt: skip


def _resolve(path: str, base_dir: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base_dir / p


# --------------------------------------------------------------------------------------- stage 1
@dataclass(frozen=True)
class Stage1Example:
    """One stage-1 record with absolute paths and its target decoding settings."""

    id: str
    image: Path
    modality: str
    target: Path
    source: str
    depth_scale: float | None = None
    palette: str | tuple[tuple[int, int, int], ...] | None = None
    reduce_zero_label: bool = False

    def load_image(self) -> Image.Image:
        return to_pil(self.image, f"record {self.id}: image")

    def load_target(self) -> torch.Tensor:
        """Depth [H, W] metres (0: invalid), class ids [H, W] long (255: ignore), or normals [3, H, W]."""
        if self.modality == "depth":
            return depth_from_png(self.target, scale=self.depth_scale)
        with Image.open(self.target) as image:
            if self.modality == "normals":
                return NormalsCodec().decode(np.array(image.convert("RGB"))).value.float()
            if self.palette is not None:
                codec = SegmentationCodec(
                    palette=self.palette if isinstance(self.palette, str) else list(self.palette)
                )
                return codec.decode(np.array(image.convert("RGB"))).value.long()
            ids = torch.from_numpy(np.array(image).astype(np.int64))
        if ids.ndim != 2:
            raise ValueError(
                f"record {self.id}: target {self.target} has shape {tuple(ids.shape)}; expected a single-channel "
                "class-id PNG (give 'palette' for colour-coded maps)"
            )
        if self.reduce_zero_label:
            ids = torch.where(ids == 0, SEG_IGNORE, ids - 1)
        return ids


def parse_stage1(row: dict[str, Any], base_dir: Path, where: str) -> Stage1Example:
    """Validate one stage-1 JSON object (see the module docstring) into a `Stage1Example`."""
    if not isinstance(row, dict):
        raise TypeError(f"{where}: expected a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - _STAGE1_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; expected a subset of {sorted(_STAGE1_KEYS)}")
    missing = [k for k in ("image", "modality", "target") if not row.get(k)]
    if missing:
        raise ValueError(f"{where}: missing {missing}")
    modality = row["modality"]
    scale = None
    if modality == "depth":
        if (row.get("depth_scale") is None) == (row.get("depth_preset") is None):
            raise ValueError(f"{where}: a depth record needs exactly one of depth_scale or depth_preset")
        if row.get("depth_preset") is not None:
            if row["depth_preset"] not in DEPTH_PRESETS:
                raise ValueError(
                    f"{where}: depth_preset: expected one of {sorted(DEPTH_PRESETS)}, got {row['depth_preset']!r}"
                )
            scale = DEPTH_PRESETS[row["depth_preset"]].png_scale
        else:
            scale = float(row["depth_scale"])
            if not scale > 0:
                raise ValueError(
                    f"{where}: depth_scale: expected a positive number of PNG units per metre, got {scale}"
                )
    palette = row.get("palette")
    if isinstance(palette, list):
        palette = tuple(tuple(int(c) for c in colour) for colour in palette)
    elif palette is not None and palette != "ade20k":
        raise ValueError(f"{where}: palette: expected 'ade20k' or a list of [r, g, b], got {palette!r}")
    return Stage1Example(
        id=str(row.get("id", where)),
        image=_resolve(row["image"], base_dir),
        modality=modality,
        target=_resolve(row["target"], base_dir),
        source=str(row.get("source") or modality),
        depth_scale=scale,
        palette=palette,
        reduce_zero_label=bool(row.get("reduce_zero_label", False)),
    )


def load_stage1_records(paths: Sequence[str | os.PathLike]) -> list[Stage1Example]:
    """Every stage-1 record of the JSONL files `paths`, in order."""
    return [parse_stage1(row, base, where) for row, base, where in _rows(paths)]


# --------------------------------------------------------------------------------------- SFT
@dataclass
class SFTItem:
    """One entry of an interleaved record, as training reads it.

    Attributes:
        type: "text" or "image".
        value: the text, or the image (path, base64 string, PIL image, array, tensor).
        need_loss: train the LM on this text.
        role: "system", "user", "assistant" or "tool"; None when the record gives none (COOPER's
            rows) and `SFTRecordData.roles` infers it.
        modality: the map an image item shows (a tool result).
        target: the true map behind a tool-result image (path, array or tensor), or None.
        target_scale: PNG units per metre of a depth target file.
    """

    type: str
    value: Any
    need_loss: bool = False
    role: str | None = None
    modality: str | None = None
    target: Any = None
    target_scale: float | None = None


@dataclass
class SFTRecordData:
    """An interleaved SFT record: ordered items, its folder (relative paths), and metadata."""

    id: str
    items: list[SFTItem]
    base_dir: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def roles(self) -> list[str]:
        """Each item's chat role: its own, else assistant for loss-bearing text and user for the
        rest (COOPER's rows carry no roles: their images are the question's and the tool results)."""
        return [
            item.role or ("assistant" if item.type == "text" and item.need_loss else "user")
            for item in self.items
        ]

    def load_target(self, item: SFTItem) -> torch.Tensor:
        """The true map of a tool-result item: depth [H, W] metres, class ids [H, W], normals [3, H, W]."""
        target = item.target
        where = f"record {self.id}: target"
        if isinstance(target, torch.Tensor):
            return target.detach().cpu()
        if isinstance(target, np.ndarray):
            return torch.from_numpy(target)
        if not isinstance(target, (str, os.PathLike)):
            raise TypeError(f"{where}: expected a path, array or tensor, got {type(target).__name__}")
        example = Stage1Example(
            id=self.id,
            image=Path(),
            modality=item.modality or "",
            target=_resolve(str(target), self.base_dir or Path()),
            source="",
            depth_scale=item.target_scale,
        )
        if item.modality == "depth" and item.target_scale is None:
            raise ValueError(
                f"{where}: a depth target file needs target_scale (or a manifest.json with depth_scale)"
            )
        return example.load_target()


def _need_loss(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(
        f"{where}: need_loss: expected true / false (or COOPER's 'true' / 'false'), got {value!r}"
    )


def parse_sft(
    row: dict[str, Any], base_dir: Path | None, where: str, depth_scale: float | None = None
) -> SFTRecordData:
    """One SFT JSON object (COOPER's ``interleaved_reason`` row or a cooper-lib record) as `SFTRecordData`."""
    if not isinstance(row, dict):
        raise TypeError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "interleaved_reason" in row:
        raw_items, meta = (
            row["interleaved_reason"],
            {k: v for k, v in row.items() if k != "interleaved_reason"},
        )
    elif "items" in row:
        raw_items, meta = row["items"], dict(row.get("meta") or {})
    else:
        raise ValueError(f"{where}: expected an 'interleaved_reason' (COOPER) or 'items' (cooper-lib) list")
    if not isinstance(raw_items, list) or not raw_items:
        raise ValueError(f"{where}: expected a non-empty list of items")
    items = []
    for index, raw in enumerate(raw_items):
        at = f"{where}: item {index}"
        kind = raw.get("type")
        if kind not in ("text", "image"):
            raise ValueError(f"{at}: type: expected 'text' or 'image', got {kind!r}")
        if "value" not in raw:
            raise ValueError(f"{at}: missing 'value'")
        need_loss = _need_loss(raw.get("need_loss", False), at)
        if need_loss and kind != "text":
            raise ValueError(f"{at}: need_loss: only text items carry a loss")
        if kind == "text" and not isinstance(raw["value"], str):
            raise TypeError(f"{at}: a text item needs a string value, got {type(raw['value']).__name__}")
        role = raw.get("role")
        if role is not None and role not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"{at}: role: expected system, user, assistant or tool, got {role!r}")
        scale = raw.get("target_scale", depth_scale if raw.get("modality") == "depth" else None)
        items.append(
            SFTItem(kind, raw["value"], need_loss, role, raw.get("modality"), raw.get("target"), scale)
        )
    if not any(item.need_loss for item in items):
        raise ValueError(f"{where}: no item has need_loss; the record would train nothing")
    return SFTRecordData(str(row.get("id", where)), items, base_dir, meta)


def load_sft_records(paths: Sequence[str | os.PathLike]) -> list[SFTRecordData]:
    """Every SFT record of the JSONL files `paths`, in order."""
    records = []
    scales: dict[Path, float | None] = {}
    for row, base, where in _rows(paths):
        if base not in scales:
            manifest = base / "manifest.json"
            scales[base] = json.loads(manifest.read_text()).get("depth_scale") if manifest.is_file() else None
        records.append(parse_sft(row, base, where, scales[base]))
    return records


# --------------------------------------------------------------------------------------- GRPO
@dataclass(frozen=True)
class QAExample:
    """A GRPO prompt: an image, a question, the reference answer and COOPER's exploration flag."""

    id: str
    image: Any
    question: str
    reference: Reference
    flag: str
    base_dir: Path | None = None

    def load_image(self) -> Image.Image:
        return to_pil(self.image, f"record {self.id}: image", base_dir=self.base_dir)


def parse_qa(row: dict[str, Any], base_dir: Path | None, where: str) -> QAExample:
    """One `QARecord` JSON object (what `write_dataset(stage="grpo")` writes) as a `QAExample`."""
    if not isinstance(row, dict):
        raise TypeError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in ("image", "question", "answer", "answer_type", "cpr") if row.get(k) in (None, "")]
    if missing:
        raise ValueError(f"{where}: missing {missing}")
    record = QARecord.from_dict({"id": where, "category": "", **row})
    if record.cpr not in CPR_FLAGS:
        raise ValueError(f"{where}: cpr: expected one of {list(CPR_FLAGS)}, got {record.cpr!r}")
    try:
        reference = Reference.from_record(record)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
    return QAExample(str(record.id), record.image, record.question, reference, record.cpr, base_dir)


def load_qa_records(paths: Sequence[str | os.PathLike]) -> list[QAExample]:
    """Every question of the JSONL files `paths`, in order."""
    return [parse_qa(row, base, where) for row, base, where in _rows(paths)]


def _rows(paths: Sequence[str | os.PathLike]) -> Iterable[tuple[dict[str, Any], Path, str]]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ValueError("paths: expected at least one JSONL file, got none")
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: JSONL file not found")
        for number, row in enumerate(read_jsonl(path), 1):
            yield row, path.parent, f"{path}:{number}"
