"""GRPO prompts: question rows read as `QAExample`s with a reward `Reference`.

Two row formats load unchanged, told apart by their keys:

- cooper-lib's `cooper_lib.data.records.QARecord` rows (``answer_type`` and ``cpr`` given), what
  ``write_dataset(stage="grpo")`` writes;
- COOPER's own ``RL_data.jsonl`` rows, ``{"question", "answer", "image", "data_id", "flag"}``
  (upstream ``train/grpo/grpo_data_module.py:22-33``): ``flag`` is the CPR flag, ``"boundary"``
  when absent, ``data_id`` the id, and ``image`` is relative to `image_root` (upstream's
  ``--image_root``; default the file's folder). Upstream records no answer type (its accuracy
  judge is an LLM reading the raw answer), so `cooper_answer` derives one from the answer text,
  starting from upstream's rule-based reward, which reads a ground truth ``"(B) ..."`` as ``B``.

Stage-1 and SFT records are read by `cooper_lib.data.records` (the one record model).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from cooper_lib.data.quantities import normalize_unit
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


COOPER_RL_KEYS = ("question", "answer", "image", "data_id", "flag")
"""The keys of a row of COOPER's ``RL_data.jsonl`` (``flag`` optional)."""

_OPTION = re.compile(r"\(([A-Za-z])\)")
_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_NUMBER_UNIT = re.compile(r"([+-]?(?:\d+\.\d*|\.\d+|\d+))\s*([A-Za-z.\"']+)")


def cooper_answer(answer: str) -> tuple[str, str, str | None]:
    """(canonical answer, answer type, unit) of a COOPER RL row's free-text ``answer``.

    Rules, first match wins (on the stripped text): ``"(X)..."`` is option X (upstream's
    rule-based reward reads ``ground_truth[1]`` of a truth starting with ``"("``); a single
    capital letter is an option; yes / no (any case, a final period allowed) is ``yes_no``; an
    integer literal is ``integer``; a decimal literal is ``number``; a number with a length unit
    (``"2.5 m"``, ``"30 cm"``) is a ``number`` in that unit; anything else is ``text``.
    """
    if not isinstance(answer, str):
        raise TypeError(f"answer: expected str, got {type(answer).__name__}")
    text = answer.strip()
    option = _OPTION.match(text)
    if option:
        return option.group(1).upper(), "choice", None
    if len(text) == 1 and text.isupper():
        return text, "choice", None
    if text.rstrip(".").lower() in ("yes", "no"):
        return text.rstrip(".").lower(), "yes_no", None
    if _INTEGER.fullmatch(text):
        return str(int(text)), "integer", None
    if _NUMBER.fullmatch(text):
        return text, "number", None
    quantity = _NUMBER_UNIT.fullmatch(text)
    if quantity:
        try:
            return quantity.group(1), "number", normalize_unit(quantity.group(2))
        except ValueError:
            pass  # a word that is no length unit ("3 chairs"): free text
    return text, "text", None


def _from_cooper_row(row: dict[str, Any], where: str) -> dict[str, Any]:
    """A COOPER ``RL_data.jsonl`` row as `QARecord` fields (module docstring)."""
    missing = [k for k in ("question", "answer", "image", "data_id") if row.get(k) in (None, "")]
    if missing:
        raise ValueError(
            f"{where}: missing {missing} (a COOPER RL_data.jsonl row has {list(COOPER_RL_KEYS)}; a cooper-lib "
            "row has image, question, answer, answer_type, cpr)"
        )
    answer, kind, unit = cooper_answer(str(row["answer"]))
    return {
        "id": str(row["data_id"]),
        "image": row["image"],
        "question": row["question"],
        "answer": answer,
        "answer_type": kind,
        "unit": unit,
        "category": "",
        "cpr": row.get("flag", "boundary"),
        "meta": {"data_id": row["data_id"], "answer": row["answer"]},
    }


def is_cooper_row(row: dict[str, Any]) -> bool:
    """Whether `row` is a COOPER ``RL_data.jsonl`` row: no cooper-lib ``answer_type`` nor ``cpr``."""
    return "answer_type" not in row and "cpr" not in row


def parse_qa(
    row: dict[str, Any],
    base_dir: Path | None,
    where: str,
    image_root: Path | None = None,
    *,
    allow_outside_root: bool = False,
) -> QAExample:
    """One question row as a `QAExample`: a `QARecord` object (what `write_dataset(stage="grpo")`
    writes) or a COOPER ``RL_data.jsonl`` row, whose image is relative to `image_root` when given.
    The image path is confined to its root folder unless `allow_outside_root`."""
    if not isinstance(row, dict):
        raise TypeError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if is_cooper_row(row):
        fields = _from_cooper_row(row, where)
        if fields["cpr"] not in CPR_FLAGS:
            raise ValueError(f"{where}: flag: expected one of {list(CPR_FLAGS)}, got {fields['cpr']!r}")
        record = QARecord.from_dict(fields)
        reference = Reference.from_record(record)
        root = image_root or base_dir
        confine_image(record.image, root, f"{where}: image", allow_outside_root=allow_outside_root)
        return QAExample(record.id, record.image, record.question, reference, record.cpr, root)
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
    paths: Sequence[str | os.PathLike],
    image_root: str | os.PathLike | None = None,
    *,
    allow_outside_root: bool = False,
) -> list[QAExample]:
    """Every question of the JSONL files `paths`, in order (either row format, see the module).

    Args:
        paths: JSONL files.
        image_root: the folder COOPER rows' relative image paths start from (upstream's
            ``--image_root``); default each file's folder. cooper-lib rows always use their file's.
        allow_outside_root: accept image paths outside their root folder (`..`, absolute paths).
    """
    root = None if image_root is None else Path(image_root)
    if root is not None and not root.is_dir():
        raise FileNotFoundError(f"image_root: {root} is not a folder")
    return [
        parse_qa(row, base, where, root, allow_outside_root=allow_outside_root)
        for row, base, where in iter_rows(paths)
    ]
