"""Record formats of the training stages and of evaluation, and JSONL I/O.

The text inside records follows COOPER's turn format (`cooper_lib.data.turns`).

Records (one JSON object per line; image paths are relative to the dataset folder):

- stage 1 (`Stage1Record`): an image, the modality to generate, the target map file and the
  instruction, e.g. `<depth-estimation>Estimate the depth ...</depth-estimation>`.
- SFT (`SFTRecord`): COOPER's ordered list of items `{type: text|image, value, need_loss}`; we add
  `role` (system, user, assistant, tool) and, on inserted maps, `modality` and `target` (the map
  file that supervises the generation head, while `value` is the pseudo-image shown to the model).
- GRPO and evaluation (`QARecord`): an image and a question with its exact answer and CPR flag.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch

Role = Literal["system", "user", "assistant", "tool"]


def _jsonable(value: Any, name: str) -> Any:
    if isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name}: an in-memory tensor cannot go into JSONL; save it as a file and give its path"
        )
    return str(value) if isinstance(value, os.PathLike) else value


@dataclass
class Item:
    """One entry of an SFT record. `value` is text, or an image: a path or a [3, H, W] tensor in [0, 1]."""

    type: Literal["text", "image"]
    value: str | torch.Tensor
    need_loss: bool = False
    role: Role = "user"
    modality: str | None = None
    target: str | torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.type not in ("text", "image"):
            raise ValueError(f"type: expected 'text' or 'image', got {self.type!r}")
        if self.type == "text" and not isinstance(self.value, str):
            raise TypeError(f"value: a text item needs a str, got {type(self.value).__name__}")
        if self.need_loss and self.type != "text":
            raise ValueError("need_loss: only text items carry a loss in SFT records")

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "value": _jsonable(self.value, "value"),
            "need_loss": self.need_loss,
            "role": self.role,
            "modality": self.modality,
            "target": None if self.target is None else _jsonable(self.target, "target"),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        return cls(**data)


@dataclass
class SFTRecord:
    """An interleaved SFT sample: items in order, plus free-form metadata (question, answer, ...)."""

    id: str
    items: list[Item]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "items": [item.to_dict() for item in self.items], "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SFTRecord:
        return cls(id=data["id"], items=[Item.from_dict(i) for i in data["items"]], meta=data.get("meta", {}))

    def text(self) -> str:
        """The texts of the record joined in order, images shown as `<image>` (for reading)."""
        return "\n".join(i.value if i.type == "text" else "<image>" for i in self.items)


@dataclass
class Stage1Record:
    """Auxiliary-modality generation: make `modality` for `image`; `target` is the true map file
    (depth: 16-bit PNG in units of 1 / `depth_scale` m; segmentation: 8-bit class ids)."""

    id: str
    image: str
    modality: str
    target: str
    instruction: str
    depth_scale: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stage1Record:
        return cls(**data)


@dataclass
class QARecord:
    """A question about an image with its exact answer (GRPO prompts and evaluation).

    `answer` is the canonical short answer (an option letter, "yes"/"no", an integer, or a number
    in `unit`); `value` is the numeric truth of number and count questions; `cpr` is COOPER's
    exploration flag (positive / negative / boundary) and `modality` the map that would help.
    """

    id: str
    image: str
    question: str
    answer: str
    answer_type: str
    category: str
    cpr: str
    modality: str | None = None
    unit: str | None = None
    choices: list[str] = field(default_factory=list)
    value: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QARecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> int:
    """Write records (objects with `to_dict`, or dicts) one JSON object per line; returns the count."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for record in records:
            data = record.to_dict() if hasattr(record, "to_dict") else record
            f.write(json.dumps(data, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file (blank lines skipped)."""
    with Path(path).open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: not a JSON object ({err.msg})") from err
