"""COOPER's turn format: the tags of a turn, and reading a turn's text back.

Every assistant turn is either a tool call or the answer (plain-text tags, see COOPER):

- ``<think>...</think><depth-estimation>...</depth-estimation>`` (or another tool's tag pair);
- ``<think>...</think><answer>... \\boxed{X}</answer>``.

The tool tags are the model's perception tags (one added token each, from `SpatialConfig`), so
`TurnFormat.from_model` reads them off the model. When a text holds complete calls of several
tools, the first tool in `priority` wins (COOPER: depth before segmentation).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cooper_lib.config import SpatialConfig
from cooper_lib.eval.metrics.answers import boxed_contents

__all__ = ["ParsedTurn", "TurnFormat"]

TurnKind = Literal["tool", "answer", "none"]


@dataclass(frozen=True)
class ParsedTurn:
    """What a turn's text says.

    Attributes:
        kind: ``"tool"`` (a complete tool call), ``"answer"`` (a complete answer) or ``"none"``.
        tool: the called modality (tool turns).
        request: the text between the tool's tags (tool turns).
        think: the text between the first think tags, or None.
        answer: the text between the answer tags (answer turns).
        boxed: the content of the last ``\\boxed{...}`` in the answer, or None.
    """

    kind: TurnKind
    tool: str | None = None
    request: str | None = None
    think: str | None = None
    answer: str | None = None
    boxed: str | None = None


@dataclass(frozen=True)
class TurnFormat:
    """The tags of COOPER's turn format.

    Args:
        tools: per modality, its (open, close) tag pair.
        think: the reasoning's tag pair.
        answer: the final answer's tag pair.
        priority: modalities in the order that wins when one text calls several tools.
    """

    tools: Mapping[str, tuple[str, str]]
    think: tuple[str, str] = ("<think>", "</think>")
    answer: tuple[str, str] = ("<answer>", "</answer>")
    priority: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "tools", {k: tuple(v) for k, v in self.tools.items()})
        for name, pair in {"think": self.think, "answer": self.answer, **self.tools}.items():
            if len(pair) != 2 or not all(isinstance(tag, str) and tag for tag in pair):
                raise ValueError(f"{name}: expected a pair of non-empty tag strings, got {pair!r}")
        order = tuple(self.priority) or tuple(self.tools)
        if sorted(order) != sorted(self.tools):
            raise ValueError(
                f"priority: expected an order of the tools {sorted(self.tools)}, got {list(order)}"
            )
        object.__setattr__(self, "priority", order)

    @classmethod
    def from_config(cls, config: SpatialConfig) -> TurnFormat:
        """The tool tags of `config`'s modalities, by `Modality.priority` (depth first, COOPER), then
        the config's order."""
        tools = {
            name: (config.spec(name).open_tag, config.spec(name).close_tag) for name in config.modalities
        }
        priority = sorted(
            tools, key=lambda name: (-config.modality(name).priority, config.modalities.index(name))
        )
        return cls(tools=tools, priority=tuple(priority))

    def stop_strings(self, tools: Sequence[str]) -> tuple[str, ...]:
        """Texts that end a turn in which `tools` may be called: their closing tags and the answer's."""
        return (*(self.tools[name][1] for name in tools), self.answer[1])

    def tool_call(self, modality: str, request: str) -> str:
        """The call text ``<open>request</close>`` of `modality`."""
        open_tag, close_tag = self.tools[modality]
        return f"{open_tag}{request}{close_tag}"

    # ------------------------------------------------------------------ reading
    def parse(self, text: str, tools: Sequence[str] | None = None) -> ParsedTurn:
        """Read a turn: a tool call of one of `tools` (all when None) wins over an answer that
        comes after it; otherwise a complete answer; otherwise ``"none"``."""
        allowed = self.priority if tools is None else [name for name in self.priority if name in tools]
        think = _between(text, *self.think)
        calls = {name: _between(text, *self.tools[name]) for name in allowed}
        called = [name for name in allowed if calls[name] is not None]
        answer_end = text.find(self.answer[1])
        first_call_end = min((text.find(self.tools[name][1]) for name in called), default=-1)
        if called and (answer_end < 0 or first_call_end < answer_end):
            return ParsedTurn("tool", tool=called[0], request=calls[called[0]], think=think)
        answer = _between(text, *self.answer)
        if answer is not None:
            boxed = boxed_contents(answer)
            return ParsedTurn("answer", think=think, answer=answer, boxed=boxed[-1] if boxed else None)
        return ParsedTurn("none", think=think)

    def is_tool_turn(self, text: str) -> bool:
        """Whether the stripped `text` is exactly ``<think>..</think>`` then one tool call."""
        return any(self._pattern(pair).fullmatch(text.strip()) for pair in self.tools.values())

    def is_answer_turn(self, text: str) -> bool:
        """Whether the stripped `text` is exactly ``<think>..</think>`` then ``<answer>..</answer>``."""
        return self._pattern(self.answer).fullmatch(text.strip()) is not None

    def _pattern(self, pair: tuple[str, str]) -> re.Pattern[str]:
        (t_open, t_close), (open_tag, close_tag) = self.think, pair
        parts = [
            re.escape(t_open),
            ".*?",
            re.escape(t_close),
            r"\s*",
            re.escape(open_tag),
            ".*?",
            re.escape(close_tag),
        ]
        return re.compile("".join(parts), re.DOTALL)


def _between(text: str, open_tag: str, close_tag: str) -> str | None:
    """The text between the first `open_tag` and the first `close_tag` after it, or None."""
    start = text.find(open_tag)
    if start < 0:
        return None
    end = text.find(close_tag, start + len(open_tag))
    return None if end < 0 else text[start + len(open_tag) : end]
