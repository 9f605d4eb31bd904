"""Policies: what the controller allows or writes in each turn.

- ``adaptive`` (COOPER): the model decides in every turn whether to call a tool or answer.
- ``perceive_first`` (COOPER's "BAGEL-PE"): the controller calls the tools itself, one per turn in
  a fixed order (depth, then segmentation), then the model answers without tools.
- ``text_only`` (COOPER's "BAGEL-RE"): no tools; the model reasons in text and answers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "AdaptivePolicy",
    "PerceiveFirstPolicy",
    "Policy",
    "TextOnlyPolicy",
    "TurnPlan",
    "check_turn_budgets",
    "get_policy",
]


@dataclass(frozen=True)
class TurnPlan:
    """What one turn may do.

    Attributes:
        forced_tool: a tool the controller calls itself in this turn (the model writes nothing), or None.
        tools: tools the model may call in this turn (empty: it must answer in text).
    """

    forced_tool: str | None = None
    tools: tuple[str, ...] = ()


def check_turn_budgets(max_turns: int, max_new_tokens_per_turn: int, max_total_tokens: int) -> None:
    """Raise ValueError naming the first of a reasoner's turn and token budgets that is not a positive int."""
    for name, value in (
        ("max_turns", max_turns),
        ("max_new_tokens_per_turn", max_new_tokens_per_turn),
        ("max_total_tokens", max_total_tokens),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")


class Policy(ABC):
    """Decides each turn's plan from the turn index and the tools available."""

    name: str

    @abstractmethod
    def plan(self, turn: int, tools: Sequence[str]) -> TurnPlan:
        """The plan of turn `turn` (0-based) when the model has the perception `tools`."""

    def check(self, tools: Sequence[str], max_turns: int) -> None:
        """Raise ValueError when a plan of the first `max_turns` turns names a tool not in `tools`."""
        for turn in range(max_turns):
            plan = self.plan(turn, tools)
            named = [plan.forced_tool] if plan.forced_tool is not None else []
            missing = [name for name in [*named, *plan.tools] if name not in tools]
            if missing:
                raise ValueError(
                    f"policy: {self.name} calls {missing} in turn {turn + 1}, but the model has no head for them"
                )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class AdaptivePolicy(Policy):
    """Every turn, the model may call any tool or answer."""

    name = "adaptive"

    def plan(self, turn: int, tools: Sequence[str]) -> TurnPlan:
        return TurnPlan(tools=tuple(tools))


class TextOnlyPolicy(Policy):
    """No tools: the model answers in text (BAGEL-RE)."""

    name = "text_only"

    def plan(self, turn: int, tools: Sequence[str]) -> TurnPlan:
        return TurnPlan()


class PerceiveFirstPolicy(Policy):
    """The controller calls `order`'s tools, one per turn, then the model answers (BAGEL-PE).

    Args:
        order: the tools, in the order they are called.
    """

    name = "perceive_first"

    def __init__(self, order: Sequence[str] = ("depth", "segmentation")) -> None:
        if not order or len(set(order)) != len(order):
            raise ValueError(f"order: expected distinct tool names, got {list(order)}")
        self.order = tuple(order)

    def plan(self, turn: int, tools: Sequence[str]) -> TurnPlan:
        return TurnPlan(forced_tool=self.order[turn]) if turn < len(self.order) else TurnPlan()

    def check(self, tools: Sequence[str], max_turns: int) -> None:
        """Also require a turn for every call and one to answer."""
        super().check(tools, min(max_turns, len(self.order)))
        if max_turns < len(self.order) + 1:
            raise ValueError(
                f"max_turns: perceive_first needs {len(self.order)} tool turns and an answer turn, "
                f"expected at least {len(self.order) + 1}, got {max_turns}"
            )

    def __repr__(self) -> str:
        return f"PerceiveFirstPolicy(order={self.order})"


_POLICIES = {"adaptive": AdaptivePolicy, "perceive_first": PerceiveFirstPolicy, "text_only": TextOnlyPolicy}


def get_policy(policy: str | Policy) -> Policy:
    """A policy by name (``"adaptive"``, ``"perceive_first"``, ``"text_only"``), or `policy` itself."""
    if isinstance(policy, Policy):
        return policy
    if policy not in _POLICIES:
        raise ValueError(f"policy: expected one of {sorted(_POLICIES)} or a Policy, got {policy!r}")
    return _POLICIES[policy]()
