"""`InterleavedReasoner`: think, perceive, look, continue, on any backbone, from the KV cache.

One run (COOPER's stage-2 inference): the prompt (system prompt, image, question) is prefilled,
then each turn the model writes until a closing tool tag, the answer's closing tag, the end of its
turn or a budget (`TextStopper`, on decoded text). After a tool call, the query block follows the
closing tag; its last hidden states go through the modality's head, the map is drawn by its codec
(depth in COOPER's Spectral colours) and inserted as an ordinary image in a new user message with
the reflection prompt, and the next assistant turn starts. Every step appends only its new tokens
to the KV cache (`KVContext`).

Decisions:

- The query block stays in the context after perception, right after the closing tag: that is
  the layout `SpatialModel.perception_inputs` trains with, and it is already in the cache.
- A tool call is the modality's closing-tag *token* (tags are added tokens, which training
  always produces). A tag written in sub-word pieces stops the turn (the stopper reads text) but
  is not acted on: such a turn, like a turn with neither a call nor an answer, stays in the
  context, counts against `max_turns`, and is followed by the retry prompt; nothing is ever
  regenerated from the same state. (COOPER's upstream loop keeps such a turn out of its context
  and regenerates from the same state, but its turn counter grows on every pass, so it too stops
  after `max_turns` turns.)
- A tool call in the last allowed turn ends the run (``"max_turns"``): no turn is left to use
  the map. `max_total_tokens` bounds the whole context; a step that would pass it is not run.
- The inserted pseudo-image is resized (nearest) to the input image's size, so it costs the same
  visual tokens as the image, as COOPER's generated images do.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from PIL import Image

from cooper_lib.data.turns import TurnFormat
from cooper_lib.images import to_pil
from cooper_lib.modalities import ModalityCodec
from cooper_lib.modalities.depth import DISPLAY_RANGE
from cooper_lib.model import SpatialModel
from cooper_lib.models.cooper import EVAL_SAMPLING, CooperModel, CooperSampling
from cooper_lib.reasoning.context import KVContext, StepOutput
from cooper_lib.reasoning.cooper import COOPER_TOOLS, CooperReasoner
from cooper_lib.reasoning.policy import Policy, TurnPlan, check_turn_budgets, get_policy
from cooper_lib.reasoning.sampling import SamplingConfig, TokenSampler
from cooper_lib.reasoning.stopping import TextStopper
from cooper_lib.reasoning.trace import ReasoningStep, ReasoningTrace, StreamEvent

__all__ = [
    "DEPTH_DISPLAY_RANGE",
    "FROM_FORMAT",
    "InterleavedReasoner",
    "default_codecs",
    "draw_map",
    "for_cooper",
]


class _FromFormat(enum.Enum):
    FROM_FORMAT = "the turn format's"


FROM_FORMAT = _FromFormat.FROM_FORMAT
"""Default of the reasoner's prompt arguments: take the prompt from its `TurnFormat`."""

DEPTH_DISPLAY_RANGE = DISPLAY_RANGE
"""Metres the default depth codec spreads over the Spectral table (its home: `cooper_lib.modalities.depth.DISPLAY_RANGE`)."""

MapSize = Literal["input"] | tuple[int, int] | None


def default_codecs(model: SpatialModel) -> dict[str, ModalityCodec]:
    """How maps are shown to `model`: each modality's display codec (`SpatialConfig.display_codec`:
    depth in Spectral colours, per map for relative depth, else over the config's
    ``depth_display_range`` or `DEPTH_DISPLAY_RANGE` with farther depths clamped; the ADE20K
    palette for 150 classes (COOPER) or a generated one; the normals codec; ...)."""
    return {name: model.config.display_codec(name) for name in model.config.modalities}


def draw_map(codec: ModalityCodec, value: torch.Tensor, size: tuple[int, int] | None = None) -> Image.Image:
    """The pseudo-image a generated map is shown as: `value` drawn by `codec`, resized (nearest,
    so palette colours stay exact) to `size` (height, width) when given."""
    picture = to_pil(codec.encode(value))
    if size is not None:
        picture = picture.resize((size[1], size[0]), Image.Resampling.NEAREST)
    return picture


@dataclass
class _Rollout:
    """One row's progress."""

    row: int
    trace: ReasoningTrace
    input_size: tuple[int, int]
    turn: int = 0
    plan: TurnPlan = field(default_factory=TurnPlan)
    stopper: TextStopper | None = None
    step: ReasoningStep | None = None  # the step the next model call is charged to
    pending: dict[str, torch.Tensor] | None = None
    action: Literal["decode", "query", "insert"] | None = None
    modality: str | None = None
    generated: list[int] = field(default_factory=list)  # context positions of sampled tokens
    unfed: int | None = None  # the last sampled token while no segment holds it yet
    done: bool = False


class InterleavedReasoner:
    """COOPER's adaptive interleaved reasoning on a `SpatialModel`, or on the reference
    `CooperModel` (then it runs a `CooperReasoner`; see `for_cooper`).

    Args:
        model: the backbone with perception heads (`add_spatial_heads`), or a `CooperModel`.
        processor: the processor holding the added tag tokens (default: the model's own); for a
            `CooperModel`, its text tokenizer (`cooper_lib.models.cooper.load_tokenizer`).
        policy: ``"adaptive"``, ``"perceive_first"`` (BAGEL-PE), ``"text_only"`` (BAGEL-RE) or a `Policy`.
        tags: the turn format: tags and prompts (default: `TurnFormat.from_config(model.config)`,
            the model's tool tags and the default prompts).
        tools: modalities the model may call (default: all the model has).
        max_turns: most assistant turns per rollout (COOPER: 3).
        max_new_tokens_per_turn: most tokens the model writes in one turn.
        max_total_tokens: most tokens in a rollout's whole context (prompt, turns, queries, images).
        system_prompt: the system message (None: none); default the turn format's, the one the
            SFT records carry.
        reflection_prompt: text after an inserted map; ``{name}`` becomes the modality; default
            the turn format's.
        retry_prompt: text after a turn with neither a tool call nor an answer; default the turn
            format's.
        insert_role: chat role of the messages the controller inserts.
        codecs: per modality, how its maps are drawn (default `default_codecs(model)`).
        map_size: size of the inserted pseudo-image: ``"input"`` (the input image's), a
            (height, width), or None (the head's output size).
        perceive_options: per modality, options for its head's ``generate`` (a flow head's
            ``steps``, ``cfg_text_scale``, ``seed``, ...); default the head's own.
        generation_kwargs: a `SamplingConfig` or its fields (temperature, top_p, top_k, seed);
            default greedy.
        logits_processors: transformers `LogitsProcessor`s applied before sampling.
        stream: called with a `StreamEvent` for each text piece, map and inserted image.
        return_inputs: keep each rollout's whole context as model inputs in its trace.
        map_override: called as ``map_override(modality, row, generated)`` with each map the head
            generates (row: the rollout's index in `run_batch`); a tensor it returns is shown to
            the model instead (same kind of map: depth in metres, class ids, ...), None keeps the
            generated map. Experiments use it to swap in true maps or another scene's maps.

    Example:
        >>> from cooper_lib import InterleavedReasoner, load_trained_folder
        >>> model = load_trained_folder("runs/grpo/final")  # doctest: +SKIP
        >>> reasoner = InterleavedReasoner(model, max_turns=3)  # doctest: +SKIP
        >>> trace = reasoner.run(image, "Which object is closer to the camera?")  # doctest: +SKIP
        >>> trace.answer, trace.stop_reason  # doctest: +SKIP
        ('A', 'answer')
    """

    def __init__(
        self,
        model: SpatialModel,
        processor: Any | None = None,
        *,
        policy: str | Policy = "adaptive",
        tags: TurnFormat | None = None,
        tools: Sequence[str] | None = None,
        max_turns: int = 3,
        max_new_tokens_per_turn: int = 512,
        max_total_tokens: int = 8192,
        system_prompt: str | None | _FromFormat = FROM_FORMAT,
        reflection_prompt: str | _FromFormat = FROM_FORMAT,
        retry_prompt: str | _FromFormat = FROM_FORMAT,
        insert_role: str = "user",
        codecs: Mapping[str, ModalityCodec] | None = None,
        map_size: MapSize = "input",
        perceive_options: Mapping[str, Mapping[str, Any]] | None = None,
        generation_kwargs: SamplingConfig | Mapping[str, Any] | None = None,
        logits_processors: Sequence[Any] = (),
        stream: Callable[[StreamEvent], None] | None = None,
        return_inputs: bool = False,
        map_override: Callable[[str, int, torch.Tensor], torch.Tensor | None] | None = None,
    ) -> None:
        self.cooper: CooperReasoner | None = None
        if isinstance(model, CooperModel):
            plug_in_only = {
                "insert_role": insert_role != "user",
                "codecs": codecs is not None,
                "map_size": map_size != "input",
                "logits_processors": bool(logits_processors),
                "stream": stream is not None,
                "return_inputs": return_inputs,
                "map_override": map_override is not None,
            }
            self.cooper = for_cooper(
                model,
                processor,
                policy=policy,
                tags=tags,
                tools=tools,
                max_turns=max_turns,
                max_new_tokens_per_turn=max_new_tokens_per_turn,
                max_total_tokens=max_total_tokens,
                system_prompt=system_prompt,
                reflection_prompt=reflection_prompt,
                retry_prompt=retry_prompt,
                generation_kwargs=generation_kwargs,
                perceive_options=perceive_options,
                unsupported=[name for name, given in plug_in_only.items() if given],
            )
            self.model, self.format, self.tools = model, self.cooper.format, self.cooper.tools
            self.policy = self.cooper.policy
            return
        if not isinstance(model, SpatialModel):
            raise TypeError(
                f"model: expected a SpatialModel (add_spatial_heads) or a CooperModel, got {type(model).__name__}"
            )
        check_turn_budgets(max_turns, max_new_tokens_per_turn, max_total_tokens)
        self.model = model
        self.processor = processor if processor is not None else model.processor
        self.tokenizer = model.adapter.tokenizer(self.processor)
        if self.tokenizer.convert_tokens_to_ids(model.config.query_token) != model.layout.query_id:
            raise ValueError(
                "processor: its tokenizer does not hold the model's perception tokens; pass the processor "
                "given to add_spatial_heads"
            )
        self.format = tags if tags is not None else TurnFormat.from_config(model.config)
        self.tools = tuple(model.config.modalities if tools is None else tools)
        missing = [name for name in self.tools if name not in model.heads or name not in self.format.tools]
        if missing:
            raise ValueError(
                f"tools: the model has no head (or no tags) for {missing}; it has {list(model.heads)}"
            )
        self.policy = get_policy(policy)
        self.policy.check(self.tools, max_turns)
        self.max_turns = max_turns
        self.max_new_tokens_per_turn = max_new_tokens_per_turn
        self.max_total_tokens = max_total_tokens
        fmt = self.format
        self.system_prompt = fmt.system_prompt if system_prompt is FROM_FORMAT else system_prompt
        self.reflection_prompt = (
            fmt.reflection_prompt if reflection_prompt is FROM_FORMAT else reflection_prompt
        )
        self.retry_prompt = fmt.retry_prompt if retry_prompt is FROM_FORMAT else retry_prompt
        self.insert_role = insert_role
        self.codecs = dict(codecs) if codecs is not None else default_codecs(model)
        missing = [name for name in self.tools if name not in self.codecs]
        if missing:
            raise ValueError(f"codecs: expected a codec for every tool, missing {missing}")
        if not (map_size in ("input", None) or (isinstance(map_size, tuple) and len(map_size) == 2)):
            raise ValueError(f"map_size: expected 'input', a (height, width) or None, got {map_size!r}")
        self.map_size = map_size
        self.perceive_options = {name: dict(opts) for name, opts in (perceive_options or {}).items()}
        unknown = sorted(set(self.perceive_options) - set(self.tools))
        if unknown:
            raise ValueError(
                f"perceive_options: expected keys from the tools {list(self.tools)}, got {unknown}"
            )
        if isinstance(generation_kwargs, SamplingConfig) or generation_kwargs is None:
            self.sampling = generation_kwargs or SamplingConfig()
        else:
            self.sampling = SamplingConfig(**generation_kwargs)
        self.logits_processors = tuple(logits_processors)
        self.stream = stream
        self.return_inputs = return_inputs
        self.map_override = map_override
        self.close_ids = {
            name: self.tokenizer.convert_tokens_to_ids(self.format.tools[name][1]) for name in self.tools
        }
        split = [
            self.format.tools[n][1]
            for n, i in self.close_ids.items()
            if i in (None, self.tokenizer.unk_token_id)
        ]
        if split:
            raise ValueError(
                f"tags: closing tool tags {split} are not single tokens of the tokenizer; use the tags "
                "add_spatial_heads added (TurnFormat.from_config(model.config))"
            )
        self.eos_ids = _eos_ids(model, self.tokenizer)

    # ------------------------------------------------------------------ public
    def run(self, image: Any, question: str, *, seed: int | None = None) -> ReasoningTrace:
        """Answer `question` about `image`; returns the trace of the run."""
        if self.cooper is not None:
            return self.cooper.run_batch([image], [question], seeds=None if seed is None else [seed])[0]
        return self.run_batch([image], [question], seeds=None if seed is None else [seed])[0]

    @torch.no_grad()
    def run_batch(
        self, images: Sequence[Any], questions: Sequence[str], *, seeds: Sequence[int] | None = None
    ) -> list[ReasoningTrace]:
        """Run one rollout per (image, question), advanced together in one batch (a GRPO group is
        the same image and question repeated). Rollout i samples with ``seeds[i]`` (default: the
        sampling seed plus i)."""
        pil_images, questions = self._check_inputs(images, questions)
        seeds = self._seeds(len(questions), seeds)
        started = time.perf_counter()
        ctx = KVContext(self.model, len(questions))
        rollouts = []
        prompts = []
        for row, (image, question) in enumerate(zip(pil_images, questions, strict=True)):
            prompt = self._prompt_segment(ctx, image, question, row)
            trace = ReasoningTrace(
                question, image, self.policy.name, prompt_tokens=prompt["input_ids"].shape[1]
            )
            trace.seed = None if self.sampling.greedy else seeds[row]
            rollouts.append(_Rollout(row, trace, (image.height, image.width)))
            prompts.append(prompt)
        sampler = TokenSampler(
            self.sampling, seeds, self.logits_processors, banned_ids=[self.model.layout.query_id]
        )
        out = ctx.append(prompts)
        self._advance(ctx, sampler, rollouts, out, [r.row for r in rollouts], 0.0)
        while any(r.pending is not None for r in rollouts):
            active = [r for r in rollouts if r.pending is not None]
            segments: list[dict[str, torch.Tensor] | None] = [None] * len(rollouts)
            for r in active:
                segments[r.row] = r.pending
            tick = time.perf_counter()
            out = ctx.append(segments)
            self._advance(ctx, sampler, rollouts, out, [r.row for r in active], time.perf_counter() - tick)
        elapsed = time.perf_counter() - started
        for r in rollouts:
            r.trace.total_tokens = ctx.length(r.row)
            r.trace.seconds = elapsed
            if self.return_inputs:
                r.trace.model_inputs = ctx.full_inputs(r.row)
                mask = torch.zeros(ctx.length(r.row), dtype=torch.bool)
                mask[r.generated] = True
                r.trace.generated_mask = mask
        return [r.trace for r in rollouts]

    # ------------------------------------------------------------------ one step
    def _advance(
        self,
        ctx: KVContext,
        sampler: TokenSampler,
        rollouts: list[_Rollout],
        out: StepOutput,
        rows: list[int],
        seconds: float,
    ) -> None:
        """Act on a step's output for the rows that took part: perceive, start turns, sample."""
        to_sample: list[_Rollout] = []
        queries: dict[str, list[_Rollout]] = {}
        for row in rows:
            r = rollouts[row]
            action, r.pending, r.action = r.action, None, None
            if r.step is not None:
                r.step.seconds += seconds
            if action == "query":
                queries.setdefault(r.modality, []).append(r)
            elif action == "decode" or self._begin_turn(ctx, r):
                to_sample.append(r)
        for modality, group in queries.items():
            self._perceive(ctx, modality, group, out)
        if to_sample:
            tick = time.perf_counter()
            logits = out.logits[[r.row for r in to_sample]]
            tokens = sampler(logits, [r.row for r in to_sample], [ctx.input_ids(r.row) for r in to_sample])
            share = (time.perf_counter() - tick) / len(to_sample)
            for r, token in zip(to_sample, tokens, strict=True):
                r.step.seconds += share
                self._accept(ctx, r, token)

    def _begin_turn(self, ctx: KVContext, r: _Rollout) -> bool:
        """Start the next turn; True when the model writes it (a token must be sampled)."""
        if r.done:
            return False
        if r.turn >= self.max_turns:
            self._finish(ctx, r, "max_turns")
            return False
        r.plan = self.policy.plan(r.turn, self.tools)
        if r.plan.forced_tool is None:
            r.step = ReasoningStep("text", r.turn)
            r.trace.steps.append(r.step)
            r.stopper = TextStopper(self.tokenizer, self.format.stop_strings(r.plan.tools))
            return True
        modality = r.plan.forced_tool
        instruction = self.model.config.spec(modality).instruction
        call = self.format.tool_call(modality, instruction)
        segment = ctx.text_segment(call + self.model.layout.query_text())
        if not self._fits(ctx, r, segment["input_ids"].shape[1]):
            return False
        calls = segment["input_ids"][0, : -self.model.config.num_queries].tolist()
        r.step = ReasoningStep("text", r.turn, text=call, token_ids=calls, forced=True, finish="tool")
        r.trace.steps.append(r.step)
        self._emit(r, "text", text=call)
        r.turn += 1
        self._call_tool(r, r.step.turn, modality, instruction, segment)
        return False

    def _accept(self, ctx: KVContext, r: _Rollout, token: int) -> None:
        """Take a sampled token: end the turn, or feed it next step."""
        step = r.step
        r.generated.append(ctx.length(r.row))
        r.unfed = token
        step.token_ids.append(token)
        if token in self.eos_ids:
            self._end_turn(ctx, r, token, "eos")
            return
        piece = r.stopper.push(token)
        step.text = r.stopper.text
        if piece:
            self._emit(r, "text", text=piece)
        if r.stopper.matched is not None:
            self._end_turn(ctx, r, token, None)
        elif len(step.token_ids) >= self.max_new_tokens_per_turn:
            self._end_turn(ctx, r, token, "length")
        elif ctx.length(r.row) + 2 > self.max_total_tokens:
            step.finish = "budget"
            self._finish(ctx, r, "max_total_tokens")
        else:
            self._queue(r, ctx.token_segment([token]), "decode")

    def _end_turn(self, ctx: KVContext, r: _Rollout, last: int, finish: str | None) -> None:
        """Parse the finished turn and queue what follows it."""
        step = r.step
        parsed = self.format.parse(step.text, tools=r.plan.tools)
        if parsed.kind == "answer":
            step.finish = "answer"
            r.trace.answer, r.trace.raw_answer = parsed.boxed, parsed.answer
            self._finish(ctx, r, "answer")
            return
        r.turn += 1
        is_call = parsed.kind == "tool" and last == self.close_ids[parsed.tool]
        step.finish = "tool" if is_call else (finish or "unparsed")
        if r.turn >= self.max_turns:
            self._finish(ctx, r, "max_turns")
            return
        if is_call:
            queries = ctx.token_segment([last, *[self.model.layout.query_id] * self.model.config.num_queries])
            if self._fits(ctx, r, queries["input_ids"].shape[1]):
                self._call_tool(r, step.turn, parsed.tool, parsed.request or "", queries)
            return
        text = self.model.adapter.continuation_text(
            self.processor, [{"type": "text", "text": self.retry_prompt}], role=self.insert_role
        )
        end_of_turn = self.tokenizer.decode([last], skip_special_tokens=False)
        if finish == "eos" and text.startswith(end_of_turn):
            text = text[len(end_of_turn) :]
        segment = ctx.token_segment([last], then=ctx.text_segment(text))
        if self._fits(ctx, r, segment["input_ids"].shape[1]):
            r.step = ReasoningStep(
                "prompt", step.turn, text=self.retry_prompt, token_ids=segment["input_ids"][0].tolist()
            )
            r.trace.steps.append(r.step)
            self._queue(r, segment, "insert")

    def _call_tool(
        self, r: _Rollout, turn: int, modality: str, request: str, segment: dict[str, torch.Tensor]
    ) -> None:
        """Record turn `turn`'s call and queue its query block (`segment` ends with it)."""
        r.trace.steps.append(ReasoningStep("tool_call", turn, text=request, modality=modality))
        r.step = ReasoningStep("map", turn, modality=modality)
        r.step.token_ids = segment["input_ids"][0, -self.model.config.num_queries :].tolist()
        r.trace.steps.append(r.step)
        r.modality = modality
        self._queue(r, segment, "query")

    def _perceive(self, ctx: KVContext, modality: str, group: list[_Rollout], out: StepOutput) -> None:
        """Maps of `group`'s query blocks (the last K positions of their rows), drawn and queued for insertion."""
        tick = time.perf_counter()
        k = self.model.config.num_queries
        states = out.hidden[[r.row for r in group], -k:]
        maps = self.model.perceive_hidden(states, modality, **self.perceive_options.get(modality, {})).cpu()
        share = (time.perf_counter() - tick) / len(group)
        for r, value in zip(group, maps, strict=True):
            if self.map_override is not None:
                replaced = self.map_override(modality, r.row, value)
                value = value if replaced is None else replaced
            r.step.map = value
            r.step.seconds += share
            self._emit(r, "map", modality=modality, map=value)
            self._insert(ctx, r, modality, value)

    def _insert(self, ctx: KVContext, r: _Rollout, modality: str, value: torch.Tensor) -> None:
        """Queue the map's pseudo-image in a new message with the reflection prompt."""
        tick = time.perf_counter()
        size = r.input_size if self.map_size == "input" else self.map_size
        picture = draw_map(self.codecs[modality], value, size)
        prompt = self.reflection_prompt.replace("{name}", modality)
        content = [{"type": "image"}, {"type": "text", "text": prompt}]
        text = self.model.adapter.continuation_text(self.processor, content, role=self.insert_role)
        segment = ctx.text_segment(text, [picture])
        r.step = ReasoningStep(
            "image",
            r.step.turn,
            text=prompt,
            modality=modality,
            image=picture,
            token_ids=segment["input_ids"][0].tolist(),
        )
        r.step.seconds += time.perf_counter() - tick
        if self._fits(ctx, r, segment["input_ids"].shape[1]):
            r.trace.steps.append(r.step)
            self._emit(r, "image", text=prompt, modality=modality, image=picture)
            self._queue(r, segment, "insert")

    # ------------------------------------------------------------------ helpers
    def _fits(self, ctx: KVContext, r: _Rollout, tokens: int) -> bool:
        """Whether `tokens` more (and one to write after them) fit the total budget; else finish."""
        if ctx.length(r.row) + tokens + 1 <= self.max_total_tokens:
            return True
        self._finish(ctx, r, "max_total_tokens")
        return False

    @staticmethod
    def _queue(
        r: _Rollout, segment: dict[str, torch.Tensor], action: Literal["decode", "query", "insert"]
    ) -> None:
        """Run `segment` for `r` in the next step (it starts with the last sampled token, if any)."""
        r.pending, r.action, r.unfed = segment, action, None

    @staticmethod
    def _finish(ctx: KVContext, r: _Rollout, reason: str) -> None:
        """End the rollout; a last sampled token that nothing follows joins the context unrun."""
        if r.unfed is not None:
            ctx.record(r.row, [r.unfed])
        r.done, r.pending, r.action, r.unfed = True, None, None, None
        r.trace.stop_reason = reason

    def _emit(self, r: _Rollout, kind: str, **fields: Any) -> None:
        if self.stream is not None:
            self.stream(StreamEvent(r.row, kind, r.step.turn, **fields))

    def _prompt_segment(
        self, ctx: KVContext, image: Image.Image, question: str, row: int
    ) -> dict[str, torch.Tensor]:
        messages = [] if self.system_prompt is None else [{"role": "system", "content": self.system_prompt}]
        messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]})
        text = self.model.adapter.render_chat(self.processor, messages, add_generation_prompt=True)
        try:
            segment = ctx.prompt_segment(text, [image])
        except Exception as err:  # the processor's own message says what it rejected
            raise ValueError(
                f"images[{row}]: the {self.model.adapter.family!r} processor rejected the image of size "
                f"{image.width}x{image.height}: {err}"
            ) from err
        if segment["input_ids"].shape[1] + 1 > self.max_total_tokens:
            raise ValueError(
                f"max_total_tokens: the prompt of rollout {row} alone has {segment['input_ids'].shape[1]} tokens; "
                f"expected a budget above that, got {self.max_total_tokens}"
            )
        return segment

    def _check_inputs(
        self, images: Sequence[Any], questions: Sequence[str]
    ) -> tuple[list[Image.Image], list[str]]:
        if isinstance(questions, str) or not isinstance(questions, Sequence):
            raise TypeError(f"questions: expected a sequence of strings, got {type(questions).__name__}")
        if len(images) != len(questions):
            raise ValueError(f"images: expected one image per question ({len(questions)}), got {len(images)}")
        if not questions:
            raise ValueError("questions: expected at least one question, got none")
        pil_images = []
        for i, (image, question) in enumerate(zip(images, questions, strict=True)):
            if not isinstance(question, str) or not question.strip():
                raise ValueError(f"questions[{i}]: expected a non-empty question, got {question!r}")
            pil_images.append(to_pil(image, f"images[{i}]"))
        return pil_images, list(questions)

    def _seeds(self, n: int, seeds: Sequence[int] | None) -> list[int]:
        if seeds is not None:
            if len(seeds) != n:
                raise ValueError(f"seeds: expected one per rollout ({n}), got {len(seeds)}")
            return [int(s) for s in seeds]
        base = self.sampling.seed if self.sampling.seed is not None else int(torch.randint(0, 2**31 - 1, ()))
        return [base + i for i in range(n)]


def _eos_ids(model: SpatialModel, tokenizer: Any) -> set[int]:
    """Token ids that end an assistant turn: the generation config's EOS and the tokenizer's."""
    ids = getattr(getattr(model.backbone, "generation_config", None), "eos_token_id", None)
    found = set(ids if isinstance(ids, (list, tuple)) else [] if ids is None else [ids])
    if tokenizer.eos_token_id is not None:
        found.add(int(tokenizer.eos_token_id))
    return {int(i) for i in found}


def for_cooper(
    model: CooperModel,
    tokenizer: Any,
    *,
    policy: str | Policy = "adaptive",
    tags: TurnFormat | None = None,
    tools: Sequence[str] | None = None,
    max_turns: int = 3,
    max_new_tokens_per_turn: int = 512,
    max_total_tokens: int = 8192,
    system_prompt: str | None | _FromFormat = FROM_FORMAT,
    reflection_prompt: str | _FromFormat = FROM_FORMAT,
    retry_prompt: str | _FromFormat = FROM_FORMAT,
    generation_kwargs: SamplingConfig | Mapping[str, Any] | None = None,
    perceive_options: Mapping[str, Mapping[str, Any]] | None = None,
    unsupported: Sequence[str] = (),
) -> CooperReasoner:
    """The `CooperReasoner` that `InterleavedReasoner`'s arguments describe for a `CooperModel`.

    Prompts given as strings go into the turn format; sampling maps to the reasoner's temperature
    and seed (top-p and top-k are not implemented for this model: ValueError); `perceive_options`
    are `CooperSampling` fields, the same for every modality (the model draws every map with one
    sampler; default COOPER's evaluation settings). `unsupported`
    names plug-in-only arguments the caller set (codecs, streaming, map overrides, ...): a
    ValueError names them.
    """
    if tokenizer is None:
        raise ValueError(
            "processor: a CooperModel needs its text tokenizer (cooper_lib.models.cooper.load_tokenizer)"
        )
    if unsupported:
        raise ValueError(f"{', '.join(unsupported)}: not supported with a CooperModel (CooperReasoner)")
    sampling = (
        generation_kwargs
        if isinstance(generation_kwargs, SamplingConfig)
        else SamplingConfig(**(generation_kwargs or {}))
    )
    if sampling.top_p != 1.0 or sampling.top_k != 0:
        raise ValueError(
            f"generation_kwargs: a CooperModel samples with temperature only (top_p 1, top_k 0), got "
            f"top_p={sampling.top_p}, top_k={sampling.top_k}"
        )
    options = [dict(o) for o in (perceive_options or {}).values()]
    if any(o != options[0] for o in options):
        raise ValueError(
            f"perceive_options: a CooperModel draws every map with one sampler; expected the same "
            f"options for every modality, got {dict(perceive_options or {})}"
        )
    map_sampling = CooperSampling(**options[0]) if options else EVAL_SAMPLING
    fmt = tags if tags is not None else TurnFormat.default(tuple(tools or COOPER_TOOLS))
    prompts = {"reflection_prompt": reflection_prompt, "retry_prompt": retry_prompt}
    if isinstance(system_prompt, str):
        prompts["system_prompt"] = system_prompt
    fmt = replace(fmt, **{k: v for k, v in prompts.items() if v is not FROM_FORMAT})
    seed = sampling.seed
    if seed is None:
        seed = int(torch.randint(2**31 - 1, ()).item()) if sampling.temperature > 0 else 0
    return CooperReasoner(
        model,
        tokenizer,
        policy=policy,
        tags=fmt,
        tools=tuple(tools or COOPER_TOOLS),
        max_turns=max_turns,
        max_new_tokens_per_turn=max_new_tokens_per_turn,
        max_total_tokens=max_total_tokens,
        temperature=sampling.temperature,
        sampling=map_sampling,
        system_prompt=system_prompt is not None,
        seed=seed,
    )
