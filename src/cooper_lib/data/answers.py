"""The answer vocabulary and its scoring rules: one home for synthetic QA, the GRPO judge and evaluation.

An answer type says what a short answer is and how a free-text answer is scored against it
(`grade`). Reading the answer out of the text is `cooper_lib.data.extraction` (letters, yes / no,
numbers; last ``\\boxed{}`` first, then ``<answer>``, then the whole text) and
`cooper_lib.data.quantities` (lengths with units).

| type | the key's answer | `Grade.correct` | `Grade.score` |
| --- | --- | --- | --- |
| ``choice`` | an option letter | the letter read equals it | 1 or 0 |
| ``yes_no`` | ``"yes"`` / ``"no"`` | the word read equals it | 1 or 0 |
| ``integer`` | a count | the number read equals it | 1 or 0 |
| ``number`` | a number (in ``unit`` when given) | relative error within ``tolerance`` | SIBench's mean relative accuracy |
| ``quantity`` | a length in centimetres | ``max(pred / gt, gt / pred) < 2`` (Q-SpatialBench) | 1 or 0 |
| ``text`` | free text | the answer span equals it (case, spaces, end dot aside) | 1 or 0 |

The GRPO judge rewards ``correct``; a benchmark reports ``score``. A ``number`` key with a
``unit`` reads a stated length first (``"150 cm"`` answers a question in metres as 1.5); without
a unit the last number counts. Choice letters are one per option, or A-F when the options live
only in the question's text.

Old spellings: records and JSONL written before the vocabulary was merged say ``"yes-no"`` and
``"count"``. `ANSWER_TYPE_ALIASES` maps them to ``"yes_no"`` and ``"integer"``, and
`answer_type` is the only place that reads them; every entry point that takes an answer type
(`AnswerKey`, the judge's `Reference`, `BenchmarkItem`, `QARecord` loading) goes through it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cooper_lib.data.extraction import answer_spans, extract_choice, extract_number, extract_yes_no
from cooper_lib.data.quantities import (
    CM_PER_UNIT,
    QSPATIAL_THRESHOLDS,
    extract_quantity,
    normalize_unit,
    qspatial_ratio,
)

__all__ = [
    "ANSWER_TYPES",
    "ANSWER_TYPE_ALIASES",
    "MRA_THRESHOLDS",
    "AnswerKey",
    "AnswerType",
    "Grade",
    "answer_type",
    "grade",
    "mean_relative_accuracy",
    "option_letters",
]

AnswerType = Literal["choice", "yes_no", "integer", "number", "quantity", "text"]
ANSWER_TYPES: tuple[str, ...] = ("choice", "yes_no", "integer", "number", "quantity", "text")

ANSWER_TYPE_ALIASES: dict[str, str] = {"yes-no": "yes_no", "count": "integer"}
"""Old spellings (synthetic records and GRPO references written before the merge) -> the type."""

MRA_THRESHOLDS: tuple[float, ...] = tuple((10 + k) / 20 for k in range(10))
"""SIBench / VSI-Bench confidence thresholds 0.50, 0.55, ..., 0.95."""

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def answer_type(name: str) -> str:
    """The answer type `name` spells: one of `ANSWER_TYPES`, or an old alias of one."""
    if isinstance(name, str):
        name = ANSWER_TYPE_ALIASES.get(name, name)
        if name in ANSWER_TYPES:
            return name
    raise ValueError(
        f"answer_type: expected one of {list(ANSWER_TYPES)} (or an old spelling in "
        f"{sorted(ANSWER_TYPE_ALIASES)}), got {name!r}"
    )


def option_letters(choices: Sequence[str]) -> str:
    """Allowed option letters: one per choice, or A-F when the options live only in the text."""
    return _LETTERS[: len(choices) if choices else 6]


def mean_relative_accuracy(pred: float, gt: float, thresholds: Sequence[float] = MRA_THRESHOLDS) -> float:
    """SIBench / VSI-Bench MRA: ``mean over theta of 1[|pred - gt| / |gt| < 1 - theta]``.

    With the default thresholds 0.50 ... 0.95 a prediction within 5 % scores 1.0, one off by
    20 % scores 0.6 (only the six thresholds whose tolerance exceeds 0.20 count), and one off
    by 50 % or more scores 0.
    """
    for name, value in (("pred", pred), ("gt", gt)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if gt == 0:
        raise ValueError("gt must be non-zero: the relative error |pred - gt| / |gt| is undefined at 0")
    if not thresholds or any(not 0.0 <= t < 1.0 for t in thresholds):
        raise ValueError(f"thresholds must be a non-empty sequence in [0, 1), got {thresholds!r}")
    relative_error = abs(pred - gt) / abs(gt)
    return sum(relative_error < 1.0 - t for t in thresholds) / len(thresholds)


@dataclass(frozen=True)
class AnswerKey:
    """The truth a free-text answer is graded against.

    Attributes:
        answer: an option letter, ``"yes"`` / ``"no"``, a number (str or float), a length in
            centimetres (``quantity``) or free text.
        answer_type: one of `ANSWER_TYPES` (old spellings are read through `answer_type`).
        choices: option texts in letter order (choice keys; may be empty).
        unit: the unit of a ``number`` answer (``"m"``, ``"cm"``, ...), or None.
    """

    answer: str | float
    answer_type: str
    choices: tuple[str, ...] = field(default_factory=tuple)
    unit: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "answer_type", answer_type(self.answer_type))
        object.__setattr__(self, "choices", tuple(self.choices))
        if isinstance(self.answer, str) and not self.answer.strip():
            raise ValueError(
                f"answer: expected a non-empty reference answer for a {self.answer_type!r} key, got "
                f"{self.answer!r} (every prediction would be graded wrong)"
            )
        if self.unit is not None:
            normalize_unit(self.unit)
        if self.answer_type in ("integer", "number", "quantity"):
            self.truth()

    def truth(self) -> float:
        """The numeric answer of integer, number and quantity keys."""
        value = self.answer
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                value = None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(
                f"answer: a {self.answer_type!r} key needs a finite numeric answer, got {self.answer!r}"
            )
        return float(value)

    def letters(self) -> str:
        """Allowed option letters (`option_letters` of the choices)."""
        return option_letters(self.choices)


@dataclass(frozen=True)
class Grade:
    """A graded answer.

    Attributes:
        extracted: what was read from the text (a letter, a word, a number, ``{"value", "unit"}``
            for quantities, a text span), or None when nothing could be read.
        score: the benchmark figure of the answer, in [0, 1].
        correct: whether the answer counts as right (what the GRPO judge rewards).
        fields: extra per-item figures (quantities: ``pred_cm``, ``ratio``, ``success_1_5``).
    """

    extracted: Any
    score: float
    correct: bool
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Whether nothing could be read from the answer."""
        return self.extracted is None


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", str(text).strip().strip(".").lower())


def _number_in_unit(text: str, unit: str | None) -> float | None:
    """The number an answer states; with `unit`, a stated length converted to `unit` comes first."""
    if unit is not None:
        quantity = extract_quantity(text)
        if quantity is not None:
            return quantity.cm / CM_PER_UNIT[normalize_unit(unit)]
    return extract_number(text)


def grade(text: str, key: AnswerKey, *, tolerance: float = 0.1) -> Grade:
    """Grade the free-text answer `text` against `key` by the rule of its type (module table).

    Args:
        text: the model's answer (a whole turn is fine: the most explicit span is read).
        key: the truth.
        tolerance: relative error a ``number`` answer may have and still be correct.
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected the answer as str, got {type(text).__name__}")
    if not isinstance(key, AnswerKey):
        raise TypeError(f"key: expected an AnswerKey, got {type(key).__name__}")
    kind = key.answer_type
    if kind == "choice":
        letter = extract_choice(text, key.letters(), key.choices)
        return _exact(letter, str(key.answer).strip().upper())
    if kind == "yes_no":
        return _exact(extract_yes_no(text), _normalise(key.answer))
    if kind == "integer":
        return _exact(extract_number(text), key.truth())
    if kind == "number":
        value, truth = _number_in_unit(text, key.unit), key.truth()
        if value is None:
            return Grade(None, 0.0, False)
        correct = math.isclose(value, truth, rel_tol=tolerance, abs_tol=0.0)
        score = (
            mean_relative_accuracy(value, truth) if truth != 0 and math.isfinite(value) else float(correct)
        )
        return Grade(value, score, correct)
    if kind == "quantity":
        return _grade_quantity(text, key.truth())
    span = _normalise(next(answer_spans(text)))
    return _exact(span or None, _normalise(key.answer))


def _exact(extracted: Any, truth: Any) -> Grade:
    correct = extracted is not None and extracted == truth
    return Grade(extracted, float(correct), correct)


def _grade_quantity(text: str, gt_cm: float) -> Grade:
    quantity = extract_quantity(text)
    if quantity is None:
        return Grade(None, 0.0, False, {"pred_cm": None, "ratio": None, "success_1_5": 0.0})
    ratio = qspatial_ratio(quantity.cm, gt_cm)
    loose, strict = QSPATIAL_THRESHOLDS
    fields = {
        "pred_cm": quantity.cm,
        "ratio": ratio if math.isfinite(ratio) else None,
        "success_1_5": float(ratio < strict),
    }
    correct = ratio < loose
    return Grade({"value": quantity.value, "unit": quantity.unit}, float(correct), correct, fields)
