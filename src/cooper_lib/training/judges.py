"""Accuracy judges of the CPR reward: is a rollout's final answer correct?

`RuleJudge` (the default) decides by the rule of the reference's answer type, the one
`cooper_lib.data.answers.grade` applies for evaluation too (last ``\\boxed{}`` first, then
``<answer>``): an option letter, yes / no, an exact count, a number (a stated length converted to
the reference's unit) within a relative tolerance, a length within Q-SpatialBench's factor, or
free text. `OpenAIJudge` asks an OpenAI-compatible chat endpoint
instead, as COOPER's upstream did; it is written on `urllib` so it needs no client package.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cooper_lib.data.answers import AnswerKey, answer_type, grade
from cooper_lib.data.extraction import answer_spans


@dataclass(frozen=True)
class Reference:
    """What a judge compares an answer with.

    Attributes:
        answer: the canonical short answer: an option letter, "yes" / "no", an integer, a number
            (in `unit`) or free text.
        answer_type: one of `cooper_lib.data.answers.ANSWER_TYPES` (old spellings ``yes-no`` and
            ``count`` are read as ``yes_no`` and ``integer``).
        question: the question text (the LLM judge reads it).
        choices: option texts in letter order (choice questions).
        unit: unit of a numeric answer ("m", "cm", ...), or None.
        value: numeric truth of integer, number and quantity questions (defaults to `answer` parsed).
    """

    answer: str
    answer_type: str
    question: str = ""
    choices: tuple[str, ...] = field(default_factory=tuple)
    unit: str | None = None
    value: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "answer_type", answer_type(self.answer_type))
        object.__setattr__(self, "choices", tuple(self.choices))
        self.key()

    def key(self) -> AnswerKey:
        """The `AnswerKey` the answer is graded against (`value` stands for a numeric answer)."""
        numeric = self.answer_type in ("integer", "number", "quantity") and self.value is not None
        return AnswerKey(self.value if numeric else self.answer, self.answer_type, self.choices, self.unit)

    @classmethod
    def from_record(cls, record: Any) -> Reference:
        """From a `cooper_lib.data.records.QARecord` (or any object / mapping with its fields)."""
        get = record.get if isinstance(record, dict) else lambda k, d=None: getattr(record, k, d)
        answer = get("answer")
        return cls(
            answer="" if answer is None else str(answer),  # None is no answer: AnswerKey rejects it
            answer_type=get("answer_type"),
            question=get("question", "") or "",
            choices=tuple(get("choices", ()) or ()),
            unit=get("unit"),
            value=get("value"),
        )


class Judge(Protocol):
    """Anything that says whether `answer_text` (the final turn) answers `reference` correctly."""

    def __call__(self, answer_text: str, reference: Reference) -> bool: ...


@dataclass(frozen=True)
class RuleJudge:
    """Rule-based correctness, no model involved: `cooper_lib.data.answers.grade`'s ``correct``.

    Args:
        number_tolerance: numeric answers count when ``|pred - true| <= tol * max(|pred|, |true|)``
            (a stated length first converted to the reference's unit).
    """

    number_tolerance: float = 0.1

    def __call__(self, answer_text: str, reference: Reference) -> bool:
        return grade(answer_text, reference.key(), tolerance=self.number_tolerance).correct


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
