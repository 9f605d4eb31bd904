"""COOPER's turn format, in one place: the tags of a turn, the prompts around turns, and reading a
turn's text back. Synthetic traces, the SFT collator, the reasoner, the GRPO rewards and evaluation
all use it.

Every assistant turn is either a tool call or the answer (plain-text tags, see COOPER):

- ``<think>...</think><depth-estimation>...</depth-estimation>`` (or another tool's tag pair);
- ``<think>...</think><answer>... \\boxed{X}</answer>``.

After a tool call the generated map is inserted as an image, followed by the reflection prompt.

The tool tags are the model's perception tags (one added token each, from `SpatialConfig`), so
`TurnFormat.from_config` reads them off a model's config; `TurnFormat.default` holds every
registered modality with its own tags (`modality_tags`). When a text holds complete calls of
several tools, the first tool in `priority` wins (COOPER: depth before segmentation).

The prompts are attributes of the format (`system_prompt`, `reflection_prompt`, `retry_prompt`),
defaulting to `SYSTEM_PROMPT` and `REFLECTION_PROMPT` (COOPER's own strings, byte for byte: a
checkpoint trained on them expects them) and `RETRY_PROMPT` (cooper-lib's; COOPER has none).
cooper-lib's earlier, shorter wording stays available as the ``"cooper-lib"`` prompt set
(`PROMPT_SETS`, `TurnFormat.with_prompts`).

A turn holding a complete answer reads as the answer, whatever tool calls it also holds (COOPER's
inference loop checks for an answer first).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from cooper_lib.config import ModalitySpec, SpatialConfig
from cooper_lib.data.extraction import last_boxed
from cooper_lib.modalities import available_modalities, get_modality

__all__ = [
    "COOPER_LIB_REFLECTION_PROMPT",
    "COOPER_LIB_SYSTEM_PROMPT",
    "PROMPT_SETS",
    "REFLECTION_PROMPT",
    "RETRY_PROMPT",
    "SYSTEM_PROMPT",
    "ParsedTurn",
    "TurnFormat",
    "modality_priority",
    "modality_tags",
    "tool_call",
]

TurnKind = Literal["tool", "answer", "none"]
_SPACES = re.compile(r"\s*")

SYSTEM_PROMPT = """You are a specialized multimodal assistant. Your purpose is to solve visual question answering tasks by thinking step-by-step with your skill of depth estimation and semantic segmentation.

# Skills

You can prompt yourself to generate depth-estimation/segmentation by <depth-estimation>...</depth-estimation> / <segmentation>...</segmentation> as follows:

<depth-estimation>Estimate the depth of the image and generate the depth map.</depth-estimation>
OR
<segmentation>Segment the objects in the image with different colors.</segmentation>

# Instruction

1. In each turn, you should start with <think> tag. In this tag, you need to conduct a step-by-step reasoning process about the image and question and evaluate whether tool use would be helpful and give the reason. If received generated results, you also need to analyze them.
2. Please note that the result of the generated depth-estimation/segmentation are not always accurate. Please carefully check whether they are helpful for answering questions or whether they are accurate.
3. If you think depth-estimation/segmentation is useful, call to generate them by <depth-estimation>...</depth-estimation> / <segmentation>...</segmentation>.\x20
4. If you think no more to generate, you can answer in <answer> tag. You need to provide a concise summary of your reasoning process that leads to the final answer. Besides, you also need to put a simple and direct answer in \\boxed{{}} for verification.
5. Try to use the tools as much as possible.

The structure of your response should be like this:
<think> ... </think>
<depth-estimation> ... </depth-estimation> / <segmentation> ... </segmentation>

OR

<think> ... </think>
<answer> ... </answer>
"""
"""COOPER's interleaved-reasoning system prompt (``INTERLEAVE_REASON_SYSTEM_PROMPT``), byte for byte:
the default of stage-2 records, SFT collation, rollouts, the reasoner and evaluation. Used
unformatted, as upstream does, so the model sees ``\\boxed{{}}`` with doubled braces."""

REFLECTION_PROMPT = (
    "\nHere is the result of the depth-estimation/segmentation. Please note that the result of the "
    "depth-estimation/segmentation is not always accurate. Please check it carefully. \nNow please "
    "continue to think in <think>...</think> and then decide whether to continue to generate the "
    "depth-estimation/segmentation in <depth-estimation>...</depth-estimation>/<segmentation>..."
    "</segmentation> or give the answer in <answer>...</answer>.\n"
)
"""COOPER's reflection prompt (``REFLECTION_PROMPT``), byte for byte: inserted after a generated map
(it names no modality; `TurnFormat.reflection` fills a ``{name}`` field when a prompt has one)."""

COOPER_LIB_SYSTEM_PROMPT = (
    "You answer questions about an image. You may call perception tools before answering: "
    "<depth-estimation>...</depth-estimation> generates a depth map and "
    "<segmentation>...</segmentation> a segmentation map of the image. Each of your turns starts "
    "with your reasoning in <think></think>, followed by exactly one tool call or by the final "
    "answer in <answer></answer>, with the short answer in \\boxed{}. Use at most 3 turns."
)
"""cooper-lib's shorter system prompt (the ``"cooper-lib"`` set of `PROMPT_SETS`)."""

COOPER_LIB_REFLECTION_PROMPT = (
    "Here is the generated {name} map. It is not always accurate, so check it carefully against "
    "the image. Continue to think in <think></think>, then call a tool again or give your final "
    "answer in <answer></answer>."
)
"""cooper-lib's reflection prompt, naming the map's modality (``{name}``)."""

RETRY_PROMPT = (
    "Your last turn neither called a tool nor gave an answer. Continue to think in <think></think>, "
    "then call a tool or give your final answer in <answer></answer>."
)
"""Inserted after a turn with neither a tool call nor an answer (cooper-lib's; COOPER inserts
nothing and regenerates from the same context)."""


PROMPT_SETS: dict[str, tuple[str, str]] = {
    "cooper": (SYSTEM_PROMPT, REFLECTION_PROMPT),
    "cooper-lib": (COOPER_LIB_SYSTEM_PROMPT, COOPER_LIB_REFLECTION_PROMPT),
}
"""Named (system prompt, reflection prompt) pairs for `TurnFormat.with_prompts`: ``"cooper"``
(COOPER's own strings, the default) and ``"cooper-lib"`` (cooper-lib's shorter wording)."""


def modality_tags(modality: str) -> ModalitySpec:
    """The tag pair and instruction of a registered modality, when a model does not say.

    They are the modality's own (`cooper_lib.modalities.Modality`: COOPER's ``<depth-estimation>``
    and ``<segmentation>`` for the built-ins); a modality registered without tags is called as
    ``<name>...</name>`` with a generic instruction.
    """
    if modality not in available_modalities():
        raise ValueError(
            f"modality: expected a registered modality {available_modalities()}, got {modality!r}"
        )
    found = get_modality(modality)
    if found.has_tags:
        return ModalitySpec(found.open_tag, found.close_tag, found.instruction)
    return ModalitySpec(f"<{modality}>", f"</{modality}>", f"Generate the {modality} map of the image.")


def modality_priority(modality: str) -> int:
    """Rank of `modality` when one turn calls several tools; higher wins (COOPER: depth first).
    The modality's own `priority`; 0 for a name the registry does not know (a config's own tags)."""
    return get_modality(modality).priority if modality in available_modalities() else 0


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
    """The tags and prompts of COOPER's turn format.

    Args:
        tools: per modality, its (open, close) tag pair.
        think: the reasoning's tag pair.
        answer: the final answer's tag pair.
        priority: modalities in the order that wins when one text calls several tools.
        instructions: per modality, the request written inside its tags when the caller gives
            none (`tool_call`); default `modality_tags`' instruction.
        system_prompt: the system message of stage-2 records and of the reasoner.
        reflection_prompt: the text after an inserted map; a ``{name}`` field becomes the
            modality (COOPER's prompt has none).
        retry_prompt: the text after a turn with neither a tool call nor an answer.
    """

    tools: Mapping[str, tuple[str, str]]
    think: tuple[str, str] = ("<think>", "</think>")
    answer: tuple[str, str] = ("<answer>", "</answer>")
    priority: tuple[str, ...] = field(default=())
    instructions: Mapping[str, str] = field(default_factory=dict)
    system_prompt: str = SYSTEM_PROMPT
    reflection_prompt: str = REFLECTION_PROMPT
    retry_prompt: str = RETRY_PROMPT

    def __post_init__(self) -> None:
        object.__setattr__(self, "tools", {k: tuple(v) for k, v in self.tools.items()})
        object.__setattr__(self, "instructions", dict(self.instructions))
        for name, pair in {"think": self.think, "answer": self.answer, **self.tools}.items():
            if len(pair) != 2 or not all(isinstance(tag, str) and tag and tag == tag.strip() for tag in pair):
                raise ValueError(
                    f"{name}: expected a pair of non-empty tag strings without surrounding spaces, got {pair!r}"
                )
        order = tuple(self.priority) or tuple(self.tools)
        if sorted(order) != sorted(self.tools):
            raise ValueError(
                f"priority: expected an order of the tools {sorted(self.tools)}, got {list(order)}"
            )
        object.__setattr__(self, "priority", order)
        unknown = sorted(set(self.instructions) - set(self.tools))
        if unknown:
            raise ValueError(
                f"instructions: expected keys from the tools {sorted(self.tools)}, got {unknown}"
            )

    @classmethod
    def from_specs(cls, specs: Mapping[str, ModalitySpec]) -> TurnFormat:
        """The format of tools given as `ModalitySpec`s, in `modality_priority` order, then theirs."""
        names = list(specs)
        priority = sorted(names, key=lambda name: (-modality_priority(name), names.index(name)))
        return cls(
            tools={name: (spec.open_tag, spec.close_tag) for name, spec in specs.items()},
            priority=tuple(priority),
            instructions={name: spec.instruction for name, spec in specs.items()},
        )

    @classmethod
    def from_config(cls, config: SpatialConfig) -> TurnFormat:
        """The tool tags of `config`'s modalities (its own tags over COOPER's)."""
        return cls.from_specs({name: config.spec(name) for name in config.modalities})

    @classmethod
    def default(cls, modalities: Iterable[str] | None = None) -> TurnFormat:
        """The format of `modalities` (default: every registered modality) with their own tags."""
        if modalities is None:
            modalities = available_modalities()
        return cls.from_specs({name: modality_tags(name) for name in modalities})

    def with_prompts(self, prompts: str) -> TurnFormat:
        """This format with the system and reflection prompts of the named set in `PROMPT_SETS`
        (``"cooper"``: COOPER's own; ``"cooper-lib"``: cooper-lib's shorter wording)."""
        if prompts not in PROMPT_SETS:
            raise ValueError(f"prompts: expected one of {list(PROMPT_SETS)}, got {prompts!r}")
        system, reflection = PROMPT_SETS[prompts]
        return replace(self, system_prompt=system, reflection_prompt=reflection)

    # ------------------------------------------------------------------ writing
    def stop_strings(self, tools: Sequence[str]) -> tuple[str, ...]:
        """Texts that end a turn in which `tools` may be called: their closing tags and the answer's."""
        return (*(self.tools[name][1] for name in tools), self.answer[1])

    def tool_call(self, modality: str, request: str | None = None) -> str:
        """The call text ``<open>request</close>`` of `modality` (default request: its instruction)."""
        if modality not in self.tools:
            raise ValueError(f"modality: expected one of the tools {list(self.tools)}, got {modality!r}")
        if request is None:
            request = self.instructions.get(modality) or modality_tags(modality).instruction
        open_tag, close_tag = self.tools[modality]
        return f"{open_tag}{request}{close_tag}"

    def reflection(self, modality: str) -> str:
        """The reflection prompt after a `modality` map (its ``{name}`` field, if any, filled in)."""
        return self.reflection_prompt.replace("{name}", modality)

    def think_block(self, text: str) -> str:
        """``<think>text</think>``."""
        return f"{self.think[0]}{text}{self.think[1]}"

    def answer_block(self, text: str) -> str:
        """``<answer>text</answer>``."""
        return f"{self.answer[0]}{text}{self.answer[1]}"

    # ------------------------------------------------------------------ reading
    def parse(self, text: str, tools: Sequence[str] | None = None) -> ParsedTurn:
        """Read a turn: a complete answer wins (COOPER's inference loop checks for it first, even
        when the turn also calls a tool); otherwise a tool call of one of `tools` (all when None);
        otherwise ``"none"``."""
        allowed = self.priority if tools is None else [name for name in self.priority if name in tools]
        think = _between(text, *self.think)
        calls = {name: _between(text, *self.tools[name]) for name in allowed}
        called = [name for name in allowed if calls[name] is not None]
        answer = _between(text, *self.answer)
        if answer is not None:
            return ParsedTurn("answer", think=think, answer=answer, boxed=last_boxed(answer))
        if called:
            return ParsedTurn("tool", tool=called[0], request=calls[called[0]], think=think)
        return ParsedTurn("none", think=think)

    def answer_text(self, text: str) -> str | None:
        """The stripped content of the first complete ``<answer>...</answer>`` anywhere in `text`
        (COOPER's accuracy reward: a search, no shape required), or None."""
        answer = _between(text, *self.answer)
        return None if answer is None else answer.strip()

    def called_tool(self, text: str) -> str | None:
        """The tool whose call `text` is, read as COOPER's turn regex does: the stripped text is
        ``<think>..</think>``, optional spaces, then one complete call; None when it is not a tool turn.
        Tools are tried in `priority` order."""
        return next((name for name in self.priority if self._is_block(text, self.tools[name])), None)

    def is_tool_turn(self, text: str) -> bool:
        """Whether the stripped `text` is exactly ``<think>..</think>`` then one tool call."""
        return self.called_tool(text) is not None

    def is_answer_turn(self, text: str) -> bool:
        """Whether the stripped `text` is exactly ``<think>..</think>`` then ``<answer>..</answer>``."""
        return self._is_block(text, self.answer)

    def closing_tool(self, text: str) -> str | None:
        """The tool whose closing tag ends `text` (trailing spaces aside), or None."""
        stripped = text.rstrip()
        return next((name for name in self.priority if stripped.endswith(self.tools[name][1])), None)

    def _is_block(self, text: str, pair: tuple[str, str]) -> bool:
        """Whether the stripped `text` fully matches ``think_open .*? think_close \\s* open .*? close``
        (COOPER's regex, DOTALL), decided in one pass over the text instead of by backtracking."""
        text = text.strip()
        (t_open, t_close), (open_tag, close_tag) = self.think, pair
        if not text.startswith(t_open) or not text.endswith(close_tag):
            return False
        close_at = len(text) - len(close_tag)
        at = text.find(t_close, len(t_open))
        while at >= 0:
            start = _SPACES.match(text, at + len(t_close)).end()
            if text.startswith(open_tag, start) and start + len(open_tag) <= close_at:
                return True
            at = text.find(t_close, at + 1)
        return False


def tool_call(modality: str) -> str:
    """The tool-call text of a registered modality with its own tags and instruction, e.g.
    ``<segmentation>Segment the objects ...</segmentation>`` (synthetic traces, stage-1 records)."""
    return TurnFormat.default([modality]).tool_call(modality)


def _between(text: str, open_tag: str, close_tag: str) -> str | None:
    """The text between the first `open_tag` and the first `close_tag` after it, or None."""
    start = text.find(open_tag)
    if start < 0:
        return None
    end = text.find(close_tag, start + len(open_tag))
    return None if end < 0 else text[start + len(open_tag) : end]
