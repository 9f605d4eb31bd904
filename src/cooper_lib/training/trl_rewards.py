"""COOPER's CPR reward parts as TRL reward functions (``trl.GRPOTrainer(reward_funcs=...)``).

TRL calls each reward function as ``func(prompts=..., completions=..., completion_ids=...,
**columns)`` where ``columns`` are the dataset's other columns, one value per completion, and
expects one float per completion. The functions here read the columns a `QARecord` row has
(``answer``, ``answer_type``, ``unit``, ``choices``, ``value``, ``cpr``), so a GRPO dataset that
`write_dataset(stage="grpo")` wrote, or any dataset with those columns and a ``prompt``, trains
with them unchanged. A completion is a string (standard format) or a list of messages
(conversational format); its assistant messages are its turns (`cooper_lib.training.rewards`).

TRL sums the functions' rewards with ``GRPOConfig(reward_weights=[...])`` (COOPER: 1 each) and logs
each under its ``__name__`` (``accuracy``, ``format``, ``exploration``).

The exploration rule is a rule over a group (the rollouts of one question). TRL hands a reward
function the completions of one process, rollouts of one prompt side by side; the group here is
the prompt (with the row's ``id`` when the dataset has one). The rule is exact when every process
holds whole groups (one process, or a per-process batch that ``num_generations`` divides).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from typing import Any

from cooper_lib.data.turns import TurnFormat
from cooper_lib.training.judges import Judge, Reference, RuleJudge
from cooper_lib.training.rewards import (
    accuracy_reward,
    exploration_rewards,
    format_reward,
    used_tool,
)


def completion_turns(completion: Any) -> list[str]:
    """The assistant turns of a TRL completion: a string is one turn; a list of messages gives the
    text of each assistant message (string content, or the text parts of a content list)."""
    if isinstance(completion, str):
        return [completion]
    if not isinstance(completion, list) or not all(isinstance(m, dict) for m in completion):
        raise TypeError(
            f"completions: expected a string or a list of message dicts, got {type(completion).__name__}"
        )
    turns = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content", "")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if p.get("type") == "text")
        turns.append(str(content))
    return turns


def _column(kwargs: dict[str, Any], name: str, n: int) -> list[Any]:
    if name not in kwargs:
        raise ValueError(
            f"{name}: the dataset needs a {name!r} column (a QARecord field); got columns {sorted(kwargs)}"
        )
    values = list(kwargs[name])
    if len(values) != n:
        raise ValueError(f"{name}: expected {n} values (one per completion), got {len(values)}")
    return values


def _references(kwargs: dict[str, Any], n: int) -> list[Reference]:
    rows = [{} for _ in range(n)]
    for key in ("answer", "answer_type"):
        for row, value in zip(rows, _column(kwargs, key, n), strict=True):
            row[key] = value
    for key in ("question", "choices", "unit", "value"):
        if key in kwargs:
            for row, value in zip(rows, _column(kwargs, key, n), strict=True):
                row[key] = value
    return [Reference.from_record(row) for row in rows]


class _RewardFunction(abc.ABC):
    """A named TRL reward function (TRL logs each under ``__name__``)."""

    __name__ = "reward"

    def __init__(self, turn_format: TurnFormat | None = None) -> None:
        self.turn_format = turn_format or TurnFormat.default()

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return self.score(list(prompts), [completion_turns(c) for c in completions], kwargs)

    @abc.abstractmethod
    def score(self, prompts: list[Any], turns: list[list[str]], kwargs: dict[str, Any]) -> list[float]:
        """One reward per rollout from its assistant turns and the dataset columns in `kwargs`."""


class AccuracyReward(_RewardFunction):
    """1 when the last turn is an answer turn the judge (default `RuleJudge()`) accepts, else 0."""

    __name__ = "accuracy"

    def __init__(self, judge: Judge | None = None, turn_format: TurnFormat | None = None) -> None:
        super().__init__(turn_format)
        self.judge = judge or RuleJudge()

    def score(self, prompts: list[Any], turns: list[list[str]], kwargs: dict[str, Any]) -> list[float]:
        references = _references(kwargs, len(turns))
        return [
            accuracy_reward(t, r, self.judge, self.turn_format)
            for t, r in zip(turns, references, strict=True)
        ]


class FormatReward(_RewardFunction):
    """1 when every turn but the last is a tool turn and the last an answer turn, else 0."""

    __name__ = "format"

    def score(self, prompts: list[Any], turns: list[list[str]], kwargs: dict[str, Any]) -> list[float]:
        return [format_reward(t, self.turn_format) for t in turns]


class ExplorationReward(_RewardFunction):
    """COOPER's group rule over the ``cpr`` column (`cooper_lib.training.rewards.exploration_rewards`)."""

    __name__ = "exploration"

    def __init__(self, threshold: int = 3, bonus: float = 0.2, turn_format: TurnFormat | None = None) -> None:
        super().__init__(turn_format)
        self.threshold = threshold
        self.bonus = bonus

    def score(self, prompts: list[Any], turns: list[list[str]], kwargs: dict[str, Any]) -> list[float]:
        n = len(turns)
        flags = _column(kwargs, "cpr", n)
        ids = _column(kwargs, "id", n) if "id" in kwargs else [None] * n
        groups = [json.dumps([i, p], sort_keys=True, default=str) for i, p in zip(ids, prompts, strict=True)]
        used = [used_tool(t, self.turn_format) for t in turns]
        return exploration_rewards(used, flags, groups, threshold=self.threshold, bonus=self.bonus)


def cpr_reward_funcs(
    *,
    judge: Judge | None = None,
    threshold: int = 3,
    bonus: float = 0.2,
    turn_format: TurnFormat | None = None,
) -> list[_RewardFunction]:
    """The CPR reward's parts as TRL reward functions, in the order accuracy, format, exploration.

    Pass them as ``GRPOTrainer(reward_funcs=cpr_reward_funcs())`` and weigh them with
    ``GRPOConfig(reward_weights=[w_a, w_f, w_e])`` (COOPER: 1, 1, 1).

    Args:
        judge: accuracy judge (default `RuleJudge()`).
        threshold: the exploration rule's count threshold (COOPER: 3 of 8 rollouts).
        bonus: the exploration rule's bonus / penalty (COOPER: 0.2).
        turn_format: the tags turns are read with (default: every registered modality's own).

    Example:
        >>> funcs = cpr_reward_funcs()
        >>> tuple(f.__name__ for f in funcs)
        ('accuracy', 'format', 'exploration')
        >>> done = "<think>two chairs</think><answer>2</answer>"
        >>> funcs[0](prompts=["How many chairs?"], completions=[done], answer=["2"], answer_type=["integer"])
        [1.0]
    """
    return [
        AccuracyReward(judge, turn_format),
        FormatReward(turn_format),
        ExplorationReward(threshold, bonus, turn_format),
    ]
