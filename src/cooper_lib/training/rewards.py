"""COOPER's CPR reward (accuracy + format + exploration), as pure functions.

A rollout is represented by its assistant turns, in order: the texts the policy generated (the
maps and reflection prompts between them are not turns). Every function here reads its inputs
and returns new values; none mutates what it is given (COOPER's upstream format reward trimmed
the shared completion lists in place, so its exploration reward then skipped the first tool call).

Rules (COOPER's turn regexes, matched against each whole stripped turn by the turn format,
`cooper_lib.data.turns.TurnFormat`; every function takes the format, default
`TurnFormat.default()`: every registered modality with its own tags, and the GRPO trainer passes
its model's format, so any modality the model can call counts):

- tool turn: ``<think>.*?</think>\\s*<open>.*?</close>`` with a tool's tags, e.g.
  ``<depth-estimation>``, ``<segmentation>``, ``<normal-estimation>`` or a user modality's;
- answer turn: ``<think>.*?</think>\\s*<answer>.*?</answer>``.
- **format**: 1 when every turn but the last is a tool turn and the last is an answer turn, else
  0. A rollout whose last turn is a tool call gets 0, as upstream (its output list always ends
  with that text turn: a call in the last allowed turn is never executed).
- **accuracy**: 1 when the judge accepts the content of the last turn's first
  ``<answer>...</answer>``, else 0 (no answer tags: 0). There is no format gate: a last turn
  without ``<think>`` or with text around the answer is judged all the same (the format reward
  is its own part), as upstream's accuracy reward reads ``<answer>(.*?)</answer>`` by search.
- **exploration**, per group of rollouts of one question: count the rollouts with at least one
  tool turn before their last turn (a call in the last turn is never executed, so it does not
  count, as upstream skips the last piece); if fewer than `threshold` did, each tool-using rollout of a ``positive`` question
  gets ``+bonus``; if more than `threshold` did, each tool-using rollout of a ``negative``
  question gets ``-bonus``; ``boundary`` questions, and groups at exactly `threshold`, get 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from cooper_lib.data.turns import TurnFormat
from cooper_lib.training.judges import Judge, Reference, RuleJudge

CPR_FLAGS = ("positive", "negative", "boundary")
REWARD_PARTS = ("accuracy", "format", "exploration")


def _turns(turns: Sequence[str], name: str = "turns") -> tuple[str, ...]:
    if isinstance(turns, str) or not all(isinstance(t, str) for t in turns):
        raise TypeError(f"{name}: expected a sequence of turn texts (str), got {type(turns).__name__}")
    return tuple(turns)


def _format(turn_format: TurnFormat | None) -> TurnFormat:
    if turn_format is None:
        return TurnFormat.default()
    if not isinstance(turn_format, TurnFormat):
        raise TypeError(f"turn_format: expected a TurnFormat, got {type(turn_format).__name__}")
    return turn_format


def is_tool_turn(turn: str, turn_format: TurnFormat | None = None) -> bool:
    """Whether `turn` is a well-formed tool call of any tool of `turn_format`."""
    return _format(turn_format).is_tool_turn(turn)


def is_answer_turn(turn: str, turn_format: TurnFormat | None = None) -> bool:
    """Whether `turn` is a well-formed final answer."""
    return _format(turn_format).is_answer_turn(turn)


def used_tool(turns: Sequence[str], turn_format: TurnFormat | None = None) -> bool:
    """Whether the rollout made at least one well-formed tool call before its last turn (a call
    in the last turn is never executed: COOPER's exploration reward skips the last piece)."""
    fmt = _format(turn_format)
    return any(fmt.is_tool_turn(t) for t in _turns(turns)[:-1])


def format_reward(turns: Sequence[str], turn_format: TurnFormat | None = None) -> float:
    """1.0 when every turn but the last is a tool turn and the last is an answer turn, else 0.0."""
    turns, fmt = _turns(turns), _format(turn_format)
    if not turns:
        return 0.0
    ok = all(fmt.is_tool_turn(t) for t in turns[:-1]) and fmt.is_answer_turn(turns[-1])
    return 1.0 if ok else 0.0


def accuracy_reward(
    turns: Sequence[str],
    reference: Reference,
    judge: Judge | None = None,
    turn_format: TurnFormat | None = None,
) -> float:
    """1.0 when `judge` (default `RuleJudge()`) accepts the content of the last turn's answer
    tags, with no format gate; 0.0 when the last turn holds no complete ``<answer>...</answer>``."""
    turns = _turns(turns)
    if not turns:
        return 0.0
    answer = _format(turn_format).answer_text(turns[-1])
    if answer is None:
        return 0.0
    return 1.0 if (judge or RuleJudge())(answer, reference) else 0.0


def exploration_rewards(
    tool_used: Sequence[bool],
    flags: Sequence[str],
    groups: Sequence[Hashable],
    *,
    threshold: int = 3,
    bonus: float = 0.2,
) -> list[float]:
    """COOPER's group rule (see the module docstring), one value per rollout.

    Args:
        tool_used: per rollout, whether it made a well-formed tool call (`used_tool`).
        flags: per rollout, its question's CPR flag: ``positive``, ``negative`` or ``boundary``.
        groups: per rollout, the id of its group (the question it answers).
        threshold: the count of tool-using rollouts the rule compares with (COOPER: 3 of 8).
        bonus: size of the bonus or penalty (COOPER: 0.2).
    """
    n = len(tool_used)
    if len(flags) != n or len(groups) != n:
        raise ValueError(
            f"flags, groups: expected {n} values each (one per rollout), got {len(flags)}, {len(groups)}"
        )
    bad = sorted({f for f in flags if f not in CPR_FLAGS})
    if bad:
        raise ValueError(f"flags: expected values in {list(CPR_FLAGS)}, got {bad}")
    counts = Counter(g for g, used in zip(groups, tool_used, strict=True) if used)
    rewards = []
    for used, flag, group in zip(tool_used, flags, groups, strict=True):
        count = counts[group]
        if used and flag == "positive" and count < threshold:
            rewards.append(bonus)
        elif used and flag == "negative" and count > threshold:
            rewards.append(-bonus)
        else:
            rewards.append(0.0)
    return rewards


@dataclass(frozen=True)
class CPRRewards:
    """Rewards of a batch of rollouts: the weighted total and each part, one value per rollout."""

    total: tuple[float, ...]
    accuracy: tuple[float, ...]
    format: tuple[float, ...]
    exploration: tuple[float, ...]

    def means(self) -> dict[str, float]:
        """Batch means of the total and of each part (for logging)."""
        n = max(len(self.total), 1)
        return {name: sum(getattr(self, name)) / n for name in ("total", *REWARD_PARTS)}


def cpr_reward(
    completions: Sequence[Sequence[str]],
    references: Sequence[Reference],
    flags: Sequence[str],
    groups: Sequence[Hashable],
    *,
    weights: Mapping[str, float] | None = None,
    judge: Judge | None = None,
    threshold: int = 3,
    bonus: float = 0.2,
    turn_format: TurnFormat | None = None,
) -> CPRRewards:
    """COOPER's CPR reward of each rollout: ``w_a * accuracy + w_f * format + w_e * exploration``.

    Args:
        completions: per rollout, its assistant turns in order.
        references: per rollout, the reference answer of its question.
        flags: per rollout, its question's CPR flag.
        groups: per rollout, its group id (rollouts of one question share it).
        weights: weight per part (default 1 each, as COOPER); missing parts weigh 1.
        judge: accuracy judge (default `RuleJudge()`).
        threshold: the exploration rule's count threshold.
        bonus: the exploration rule's bonus / penalty.
        turn_format: the tags turns are read with (default: every registered modality's own).

    Example:
        >>> from cooper_lib.training.judges import Reference
        >>> tool = "<think>compare depths</think><depth-estimation>Estimate the depth.</depth-estimation>"
        >>> answer = "<think>the chair is nearer</think><answer>A</answer>"
        >>> rewards = cpr_reward([[tool, answer], [answer]], [Reference("A", "choice")] * 2,
        ...                      ["positive"] * 2, [0, 0])
        >>> rewards.total
        (2.2, 2.0)
    """
    n = len(completions)
    if len(references) != n:
        raise ValueError(f"references: expected {n} (one per rollout), got {len(references)}")
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(REWARD_PARTS))
    if unknown:
        raise ValueError(f"weights: unknown parts {unknown}; expected a subset of {list(REWARD_PARTS)}")
    judge = judge or RuleJudge()
    tf = _format(turn_format)
    turns = [_turns(c, f"completions[{i}]") for i, c in enumerate(completions)]
    accuracy = tuple(accuracy_reward(t, r, judge, tf) for t, r in zip(turns, references, strict=True))
    fmt = tuple(format_reward(t, tf) for t in turns)
    explore = tuple(
        exploration_rewards(
            [used_tool(t, tf) for t in turns], flags, groups, threshold=threshold, bonus=bonus
        )
    )
    w = {part: float(weights.get(part, 1.0)) for part in REWARD_PARTS}
    total = tuple(
        w["accuracy"] * a + w["format"] * f + w["exploration"] * e
        for a, f, e in zip(accuracy, fmt, explore, strict=True)
    )
    return CPRRewards(total, accuracy, fmt, explore)
