"""Accuracy judges of the CPR reward: is a rollout's final answer correct?

`RuleJudge` (the default) decides by rule from the reference's answer type, reusing the answer
extraction of `cooper_lib.eval.metrics` (last ``\\boxed{}`` first, then ``<answer>``): an option
letter, yes / no, an exact count, or a number (with its unit converted to centimetres when both
sides name one) within a relative tolerance. `OpenAIJudge` asks an OpenAI-compatible chat endpoint
instead, as COOPER's upstream did; it is written on `urllib` so it needs no client package.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cooper_lib.eval.metrics.answers import answer_spans, extract_choice, extract_number, extract_yes_no
from cooper_lib.eval.metrics.quantities import extract_quantity, to_cm

ANSWER_TYPES = ("choice", "yes-no", "count", "number", "text")
_LETTERS = "ABCDEFGH"


@dataclass(frozen=True)
class Reference:
    """What a judge compares an answer with.

    Attributes:
        answer: the canonical short answer: an option letter, "yes" / "no", an integer, a number
            (in `unit`) or free text.
        answer_type: one of `ANSWER_TYPES`.
        question: the question text (the LLM judge reads it).
        choices: option texts in letter order (choice questions).
        unit: unit of a numeric answer ("m", "cm", ...), or None.
        value: numeric truth of count and number questions (defaults to `answer` parsed).
    """

    answer: str
    answer_type: str
    question: str = ""
    choices: tuple[str, ...] = field(default_factory=tuple)
    unit: str | None = None
    value: float | None = None

    def __post_init__(self) -> None:
        if self.answer_type not in ANSWER_TYPES:
            raise ValueError(f"answer_type: expected one of {list(ANSWER_TYPES)}, got {self.answer_type!r}")
        object.__setattr__(self, "choices", tuple(self.choices))
        if self.answer_type in ("count", "number") and self.numeric() is None:
            raise ValueError(
                f"answer: a {self.answer_type} reference needs a numeric answer or value, got {self.answer!r}"
            )

    def numeric(self) -> float | None:
        if self.value is not None:
            return float(self.value)
        try:
            return float(self.answer)
        except ValueError:
            return None

    @classmethod
    def from_record(cls, record: Any) -> Reference:
        """From a `cooper_lib.data.records.QARecord` (or any object / mapping with its fields)."""
        get = record.get if isinstance(record, dict) else lambda k, d=None: getattr(record, k, d)
        return cls(
            answer=str(get("answer")),
            answer_type=get("answer_type"),
            question=get("question", "") or "",
            choices=tuple(get("choices", ()) or ()),
            unit=get("unit"),
            value=get("value"),
        )


class Judge(Protocol):
    """Anything that says whether `answer_text` (the final turn) answers `reference` correctly."""

    def __call__(self, answer_text: str, reference: Reference) -> bool: ...


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip(".").lower())


@dataclass(frozen=True)
class RuleJudge:
    """Rule-based correctness, no model involved.

    Args:
        number_tolerance: numeric answers count when ``|pred - true| <= tol * |true|`` (after
            converting both to centimetres when the answer names a unit and the reference has one).
    """

    number_tolerance: float = 0.1

    def __call__(self, answer_text: str, reference: Reference) -> bool:
        kind = reference.answer_type
        if kind == "choice":
            letters = _LETTERS[: len(reference.choices)] if reference.choices else "ABCD"
            return extract_choice(answer_text, letters, reference.choices) == reference.answer.strip().upper()
        if kind == "yes-no":
            return extract_yes_no(answer_text) == _normalise(reference.answer)
        truth = reference.numeric()
        if kind == "count":
            pred = extract_number(answer_text)
            return pred is not None and pred == truth
        if kind == "number":
            return self._number_matches(answer_text, truth, reference.unit)
        span = next(answer_spans(answer_text))
        return _normalise(span) == _normalise(reference.answer)

    def _number_matches(self, text: str, truth: float, unit: str | None) -> bool:
        quantity = extract_quantity(text) if unit is not None else None
        if quantity is not None:
            pred, truth = quantity.cm, to_cm(truth, unit)
        else:
            number = extract_number(text)
            if number is None:
                return False
            pred = number
        return math.isclose(pred, truth, rel_tol=self.number_tolerance, abs_tol=0.0)


_JUDGE_SYSTEM = (
    "You evaluate whether a model's answer to a question about an image matches the ground-truth "
    "answer. Consider synonyms, paraphrases and unit conversions. Reply with exactly True or False."
)
_JUDGE_USER = "Question: {question}\nGround-truth answer: {truth}\nModel answer: {prediction}\nIs the model answer correct?"


@dataclass
class OpenAIJudge:
    """Ask an OpenAI-compatible ``/chat/completions`` endpoint whether the answer is correct.

    Args:
        base_url: e.g. ``http://localhost:8000/v1``.
        model: model name the server expects.
        api_key_env: environment variable holding the API key (sent as a Bearer token when set).
        timeout: seconds per request.
        max_retries: attempts before a connection or server error is raised.

    Raises:
        RuntimeError: when the server stays unreachable or answers neither True nor False; a
            reward computed on a silent default would bias training.
    """

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 30.0
    max_retries: int = 3

    def __call__(self, answer_text: str, reference: Reference) -> bool:
        spans = list(answer_spans(answer_text))
        prediction = spans[1] if len(spans) > 1 else spans[0]
        body = {
            "model": self.model,
            "temperature": 0.0,
            "max_tokens": 8,
            "messages": [
                {"role": "system", "content": _JUDGE_SYSTEM},
                {
                    "role": "user",
                    "content": _JUDGE_USER.format(
                        question=reference.question, truth=reference.answer, prediction=prediction
                    ),
                },
            ],
        }
        reply = self._post(body)
        verdict = reply.strip().strip(".").lower()
        if verdict not in ("true", "false"):
            raise RuntimeError(f"judge {self.base_url}: expected True or False, got {reply!r}")
        return verdict == "true"

    def _post(self, body: dict[str, Any]) -> str:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(
            self.base_url.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(), headers=headers
        )
        error: Exception | None = None
        for attempt in range(self.max_retries):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())["choices"][0]["message"]["content"]
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                error = err
                time.sleep(min(2**attempt, 8) * 0.1)
        raise RuntimeError(f"judge {self.base_url}: no answer after {self.max_retries} attempts ({error})")


def judge_from_config(
    kind: str,
    *,
    number_tolerance: float = 0.1,
    url: str | None = None,
    model: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
) -> Judge:
    """The judge a `GRPOConfig` names (``rule`` or ``openai``)."""
    if kind == "rule":
        return RuleJudge(number_tolerance)
    if kind == "openai":
        if not url or not model:
            raise ValueError("url, model: both are needed for the openai judge")
        return OpenAIJudge(url, model, api_key_env)
    raise ValueError(f"kind: expected 'rule' or 'openai', got {kind!r}")


def references(records: Sequence[Any]) -> list[Reference]:
    """`Reference.from_record` for each record."""
    return [Reference.from_record(r) for r in records]
