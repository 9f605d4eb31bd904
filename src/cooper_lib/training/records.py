"""GRPO prompts: `cooper_lib.data.records.QARecord` rows read as `QAExample`s with a reward `Reference`.

Stage-1 and SFT records are read by `cooper_lib.data.records` (the one record model); this module
only adds what the GRPO trainer needs on top of a `QARecord`: the reward's reference answer and
COOPER's exploration flag.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from cooper_lib.data.records import QARecord, confine_image, iter_rows
from cooper_lib.images import to_pil
from cooper_lib.training.judges import Reference
from cooper_lib.training.rewards import CPR_FLAGS


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


def parse_qa(
    row: dict[str, Any], base_dir: Path | None, where: str, *, allow_outside_root: bool = False
) -> QAExample:
    """One `QARecord` JSON object (what `write_dataset(stage="grpo")` writes) as a `QAExample`
    (its image path confined to `base_dir` unless `allow_outside_root`)."""
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
    confine_image(record.image, base_dir, f"{where}: image", allow_outside_root=allow_outside_root)
    return QAExample(str(record.id), record.image, record.question, reference, record.cpr, base_dir)


def load_qa_records(
    paths: Sequence[str | os.PathLike], *, allow_outside_root: bool = False
) -> list[QAExample]:
    """Every question of the JSONL files `paths`, in order."""
    return [
        parse_qa(row, base, where, allow_outside_root=allow_outside_root)
        for row, base, where in iter_rows(paths)
    ]
