"""Accuracy judges of the CPR reward: is a rollout's final answer correct?

`RuleJudge` (the default) decides by the rule of the reference's answer type, the one
`cooper_lib.data.answers.grade` applies for evaluation too (last ``\\boxed{}`` first, then
``<answer>``): an option letter, yes / no, an exact count, a number (a stated length converted to
the reference's unit) within a relative tolerance, a length within Q-SpatialBench's factor, or
free text. `OpenAIJudge` asks an OpenAI-compatible chat endpoint
instead, as COOPER's upstream did; it is written on `urllib` so it needs no client package.

The endpoint comes from a config file, which may be shared, so `OpenAIJudge` guards the key it
sends: the URL must be https (plain http only to ``localhost``, ``127.0.0.1`` or ``::1``); the key
is the `api_key` argument or the variable `JUDGE_API_KEY_ENV` (``COOPER_JUDGE_API_KEY``), never a
variable a config names; the ``Authorization`` header is not forwarded when the server redirects
to another scheme, host or port, and a redirect to a URL the first rule refuses is an error.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
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


JUDGE_API_KEY_ENV = "COOPER_JUDGE_API_KEY"
"""The one environment variable `OpenAIJudge` reads its API key from (when none is passed)."""
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
"""Hosts a judge may be reached at over plain http."""


def check_judge_url(url: str, name: str = "url") -> str:
    """`url` when it is https, or http to a loopback host; ``ValueError`` naming `name` otherwise."""
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parts is None or not parts.hostname:
        raise ValueError(f"{name}: expected an http(s) URL with a host, got {url!r}")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return url
    raise ValueError(
        f"{name}: expected an https URL (plain http only to {', '.join(sorted(LOOPBACK_HOSTS))}), got "
        f"{url!r}; the judge's API key would travel unencrypted"
    )


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


class _KeepKeyOnSameOrigin(urllib.request.HTTPRedirectHandler):
    """Follows redirects as urllib does, sending the key again only to the same scheme, host and
    port, and refusing a redirect to a URL `check_judge_url` refuses."""

    def __init__(self, authorization: str | None) -> None:
        self.authorization = authorization

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        newurl = urllib.parse.urljoin(req.full_url, newurl)
        check_judge_url(newurl, f"judge redirect from {req.full_url}")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and self.authorization and _origin(newurl) == _origin(req.full_url):
            new.add_unredirected_header("Authorization", self.authorization)
        return new


@dataclass
class OpenAIJudge:
    """Ask an OpenAI-compatible ``/chat/completions`` endpoint whether the answer is correct.

    Args:
        base_url: e.g. ``https://judge.example.org/v1`` (plain http only to localhost, 127.0.0.1
            or ::1).
        model: model name the server expects.
        api_key: the API key (sent as a Bearer token); default: ``$COOPER_JUDGE_API_KEY`` when
            set, else no key.
        timeout: seconds per request.
        max_retries: attempts before a connection or server error is raised.

    Raises:
        ValueError: `base_url` is neither https nor http to a loopback host, or the server
            redirects to such a URL.
        RuntimeError: when the server stays unreachable or answers neither True nor False; a
            reward computed on a silent default would bias training.
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        check_judge_url(self.base_url, "base_url")

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
        key = self.api_key if self.api_key is not None else os.environ.get(JUDGE_API_KEY_ENV)
        authorization = f"Bearer {key}" if key else None
        request = urllib.request.Request(
            self.base_url.rstrip("/") + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        if authorization:  # unredirected: urllib copies only ordinary headers to a redirect
            request.add_unredirected_header("Authorization", authorization)
        opener = urllib.request.build_opener(_KeepKeyOnSameOrigin(authorization))
        error: Exception | None = None
        for attempt in range(self.max_retries):
            try:
                with opener.open(request, timeout=self.timeout) as response:
                    return json.loads(response.read())["choices"][0]["message"]["content"]
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                error = err
                time.sleep(min(2**attempt, 8) * 0.1)
        raise RuntimeError(f"judge {self.base_url}: no answer after {self.max_retries} attempts ({error})")


def check_api_key_env(name: str | None) -> None:
    """A config's ``judge_api_key_env``: None or `JUDGE_API_KEY_ENV`, else ``ValueError`` explaining
    that the key's variable is no longer chosen by configs (one could send any secret anywhere)."""
    if name is not None and name != JUDGE_API_KEY_ENV:
        raise ValueError(
            f"judge_api_key_env: the judge's key is read from ${JUDGE_API_KEY_ENV} only (or passed as "
            f"api_key), got {name!r}; a config naming the variable could send any secret of the "
            f"environment to any URL. Set {JUDGE_API_KEY_ENV} and remove judge_api_key_env"
        )


def judge_from_config(
    kind: str,
    *,
    number_tolerance: float = 0.1,
    url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    api_key_env: str | None = None,
) -> Judge:
    """The judge a `GRPOConfig` names (``rule`` or ``openai``).

    `api_key_env` is what a config's ``judge_api_key_env`` holds: None or `JUDGE_API_KEY_ENV`; a
    config naming another variable is an error (a shared config could send any secret).
    """
    check_api_key_env(api_key_env)
    if kind == "rule":
        return RuleJudge(number_tolerance)
    if kind == "openai":
        if not url or not model:
            raise ValueError("url, model: both are needed for the openai judge")
        return OpenAIJudge(url, model, api_key)
    raise ValueError(f"kind: expected 'rule' or 'openai', got {kind!r}")


def references(records: Sequence[Any]) -> list[Reference]:
    """`Reference.from_record` for each record."""
    return [Reference.from_record(r) for r in records]
