"""`CooperReasoner`: COOPER's interleaved reasoning on the reference assembly (`CooperModel`).

The same run as `InterleavedReasoner` (turn format, prompts, the three policies, `ReasoningTrace`
out), on BAGEL's packed context instead of a chat template and a KV cache over one backbone:

    [system]  input image (VAE latent + ViT tokens)  [question]
    turn:   <|im_start|> think ... <depth-estimation>request</depth-estimation>   (generate_text)
    map:    a noise split after the context, denoised by COOPER's sampler        (generate_image)
    back:   the map as an image the model reads (ViT tokens only)  [reflection prompt]
    ...     until the answer's closing tag, `max_turns` or `max_total_tokens`

Every text item is framed ``<|im_start|> text <|im_end|>`` as BAGEL's context updates do. The
generated map is fed back as **vision tokens only**, as COOPER does at inference (its training
fed VAE + vision tokens: an upstream mismatch, see COOPER.md); the map's guidance branches are
BAGEL's (without the tool-call turn; without images). Text turns decode incrementally: a rollout
keeps one `TextContext` (each layer's keys and values) and each turn runs only the items added
since the previous one (the map, the reflection prompt, the last sampled token), then one token
per step; ``incremental=False`` prefills the whole context for every turn instead (the same
tokens; kept as the reference the cache is tested against). A map's three guidance branches are
prefilled anew by `generate_image` for each map (two of them are not prefixes of the text
context). Rollouts of a batch run one after the other.

`CooperTrace.segments` keeps the whole context as (item, generated) pairs, generated for the
model's own turns: what `training.cooper` scores in a GRPO step.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage

from cooper_lib.data.turns import TurnFormat
from cooper_lib.images import to_pil
from cooper_lib.models.cooper import (
    EVAL_SAMPLING,
    CooperModel,
    CooperSampling,
    Image,
    Item,
    Latent,
    Text,
    TextContext,
    generate_image,
    generate_text,
)
from cooper_lib.reasoning.policy import Policy, check_turn_budgets, get_policy
from cooper_lib.reasoning.stopping import TextStopper
from cooper_lib.reasoning.trace import ReasoningStep, ReasoningTrace

__all__ = ["COOPER_TOOLS", "CooperReasoner", "CooperTrace", "fit_pixels", "framed_text", "image_sides"]

COOPER_TOOLS = ("depth", "segmentation")
"""The tools COOPER's model generates (both as RGB pseudo-images)."""


@dataclass
class CooperTrace(ReasoningTrace):
    """A `ReasoningTrace` with the rollout's context as (item, generated) pairs, in order."""

    segments: list[tuple[Item, bool]] = field(default_factory=list)


def framed_text(model: CooperModel, tokenizer: Any, text: str) -> Text:
    """`text` as BAGEL frames a text item: ``<|im_start|> ids <|im_end|>``."""
    cfg = model.config
    return Text((cfg.bos_token_id, *tokenizer.encode(text, add_special_tokens=False), cfg.eos_token_id))


def fit_pixels(image: PILImage.Image, stride: int, max_side: int) -> torch.Tensor:
    """`image` as `[3, H, W]` in [-1, 1], scaled so its longer side is at most `max_side`, each
    side rounded to a multiple of `stride` (at least one stride)."""
    if stride < 1 or max_side < stride:
        raise ValueError(f"stride, max_side: expected 1 <= stride <= max_side, got {stride}, {max_side}")
    scale = min(1.0, max_side / max(image.width, image.height))
    cap = max_side // stride * stride
    w, h = (
        min(cap, max(stride, round(side * scale / stride) * stride)) for side in (image.width, image.height)
    )
    resized = image.convert("RGB").resize((w, h), PILImage.Resampling.BICUBIC)
    array = torch.from_numpy(np.asarray(resized, dtype=np.float32)).permute(2, 0, 1)
    return array / 127.5 - 1.0


def image_sides(config: Any, vae_max_side: int = 1024, vit_max_side: int = 980) -> tuple[int, int, int, int]:
    """(VAE stride, VAE longest side, ViT stride, ViT longest side) of an input image for a
    `CooperConfig`: BAGEL's 1024 and 980 by default, capped by the position tables."""
    vae_stride, vit_stride = config.latent_downsample, config.vit.patch_size
    return (
        vae_stride,
        min(vae_max_side, config.max_latent_size * vae_stride),
        vit_stride,
        min(vit_max_side, config.vit_max_num_patch_per_side * vit_stride),
    )


class CooperReasoner:
    """COOPER's adaptive interleaved reasoning on a `CooperModel`.

    Args:
        model: the unified model.
        tokenizer: its text tokenizer (Qwen2's for released weights): ``encode(text,
            add_special_tokens=False)`` and ``decode(ids, skip_special_tokens=False, ...)``.
        policy: ``"adaptive"``, ``"perceive_first"`` (BAGEL-PE), ``"text_only"`` (BAGEL-RE) or a `Policy`.
        tags: the turn format (tags and prompts; default `TurnFormat.default(tools)`).
        tools: modalities the model may generate (default COOPER's depth and segmentation).
        max_turns: most assistant turns (COOPER: 3).
        max_new_tokens_per_turn: most tokens one turn writes.
        max_total_tokens: most tokens in the whole context (text, ViT and latent tokens).
        temperature: 0 for greedy text, else sampling temperature.
        sampling: the map sampler's settings (default COOPER's evaluation settings).
        vae_max_side: longest side of the input image for the autoencoder (BAGEL: 1024; capped
            by the position table).
        vit_max_side: longest side of the input image for the ViT (BAGEL: 980; capped by the
            position table).
        system_prompt: send the turn format's system prompt first.
        seed: base seed of text sampling and map noise (rollout i uses seed + i).
        incremental: keep the text context's keys and values across turns (default); False
            recomputes the whole context for every turn.
    """

    def __init__(
        self,
        model: CooperModel,
        tokenizer: Any,
        *,
        policy: str | Policy = "adaptive",
        tags: TurnFormat | None = None,
        tools: Sequence[str] = COOPER_TOOLS,
        max_turns: int = 3,
        max_new_tokens_per_turn: int = 512,
        max_total_tokens: int = 8192,
        temperature: float = 0.0,
        sampling: CooperSampling = EVAL_SAMPLING,
        vae_max_side: int = 1024,
        vit_max_side: int = 980,
        system_prompt: bool = True,
        seed: int = 0,
        incremental: bool = True,
    ) -> None:
        if not isinstance(model, CooperModel):
            raise TypeError(f"model: expected a CooperModel, got {type(model).__name__}")
        check_turn_budgets(max_turns, max_new_tokens_per_turn, max_total_tokens)
        self.model, self.tokenizer = model, tokenizer
        self.tools = tuple(tools)
        self.format = tags if tags is not None else TurnFormat.default(self.tools)
        missing = [name for name in self.tools if name not in self.format.tools]
        if missing:
            raise ValueError(f"tags: expected tags for every tool, missing {missing}")
        self.policy = get_policy(policy)
        self.policy.check(self.tools, max_turns)
        self.max_turns = max_turns
        self.max_new_tokens_per_turn = max_new_tokens_per_turn
        self.max_total_tokens = max_total_tokens
        self.temperature = temperature
        self.sampling = sampling
        self.vae_stride, self.vae_max_side, self.vit_stride, self.vit_max_side = image_sides(
            model.config, vae_max_side, vit_max_side
        )
        self.system_prompt = system_prompt
        self.seed = seed
        self.incremental = incremental

    # ------------------------------------------------------------------ public
    def run(self, image: Any, question: str) -> CooperTrace:
        """Answer `question` about `image`."""
        return self.run_batch([image], [question])[0]

    @torch.no_grad()
    def run_batch(
        self, images: Sequence[Any], questions: Sequence[str], *, seeds: Sequence[int] | None = None
    ) -> list[CooperTrace]:
        """One rollout per (image, question); rollout i uses ``seeds[i]`` (default `seed` + i)."""
        if isinstance(questions, str) or len(images) != len(questions) or not questions:
            raise ValueError(
                f"images, questions: expected equal non-empty sequences, got {len(images)} images and "
                f"{'a string' if isinstance(questions, str) else len(questions)} questions"
            )
        seeds = [self.seed + i for i in range(len(questions))] if seeds is None else list(seeds)
        if len(seeds) != len(questions):
            raise ValueError(f"seeds: expected one per rollout ({len(questions)}), got {len(seeds)}")
        return [
            self._rollout(to_pil(image, f"images[{i}]"), q, s)
            for i, (image, q, s) in enumerate(zip(images, questions, seeds, strict=True))
        ]

    # ------------------------------------------------------------------ one rollout
    def _text(self, text: str) -> Text:
        return framed_text(self.model, self.tokenizer, text)

    def _rollout(self, image: PILImage.Image, question: str, seed: int) -> CooperTrace:
        started = time.perf_counter()
        model = self.model
        # on the model's device: text sampling and map noise draw there (a CPU generator fails on CUDA)
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
        vae_pixels = fit_pixels(image, self.vae_stride, self.vae_max_side)
        vit_pixels = fit_pixels(image, self.vit_stride, self.vit_max_side)
        weight = next(model.vae.parameters())
        latent = model.vae.encode(vae_pixels[None].to(weight), sample=False)[0].float()
        trace = CooperTrace(question, image, self.policy.name, seed=seed if self.temperature > 0 else None)
        items: list[tuple[Item, bool]] = []
        if self.system_prompt:
            items.append((self._text(self.format.system_prompt), False))
        items += [(Latent(latent), False), (Image(vit_pixels), False), (self._text(question), False)]
        trace.prompt_tokens = self._tokens(items)
        context = _TurnContext(model, self.incremental)
        turn = 0
        while not trace.stop_reason:
            if turn >= self.max_turns:
                trace.stop_reason = "max_turns"
                break
            plan = self.policy.plan(turn, self.tools)
            if plan.forced_tool is not None:
                tool, call = plan.forced_tool, self.format.tool_call(plan.forced_tool)
                item = self._text(call)
                trace.steps.append(
                    ReasoningStep(
                        "text", turn, text=call, token_ids=list(item.ids), forced=True, finish="tool"
                    )
                )
                items.append((item, False))
                called = (tool, self.format.parse(call, tools=[tool]).request or "")
            else:
                called = self._model_turn(trace, items, turn, plan.tools, generator, context)
            turn += 1
            if trace.stop_reason or called is None:
                continue
            if turn >= self.max_turns:  # no turn left to read the map
                trace.stop_reason = "max_turns"
                break
            self._perceive(
                trace, items, turn - 1, *called, tuple(vae_pixels.shape[1:]), vit_pixels, generator
            )
        trace.total_tokens = self._tokens(items)
        trace.segments = items
        trace.seconds = time.perf_counter() - started
        return trace

    def _model_turn(
        self,
        trace: CooperTrace,
        items: list[tuple[Item, bool]],
        turn: int,
        tools: tuple[str, ...],
        generator: torch.Generator,
        context: _TurnContext,
    ) -> tuple[str, str] | None:
        """The model writes turn `turn`; returns (tool, request) when it called a tool. Sets the
        trace's answer and stop reason when the turn answered or exhausted the budget; queues the
        retry prompt after a turn with neither a call nor an answer."""
        cfg = self.model.config
        budget = self.max_total_tokens - self._tokens(items) - 2  # <|im_start|> and <|im_end|>
        if budget < 1:
            trace.stop_reason = "max_total_tokens"
            return None
        stopper = TextStopper(self.tokenizer, self.format.stop_strings(tools))

        def stop(token: int) -> bool:
            stopper.push(token)
            return stopper.matched is not None

        limit = min(self.max_new_tokens_per_turn, budget)
        ids = context.generate(items, limit, temperature=self.temperature, generator=generator, stop=stop)
        step = ReasoningStep("text", turn, text=stopper.text, token_ids=list(ids))
        trace.steps.append(step)
        # the sampled tokens (generated) and, unless sampled, the closing <|im_end|> BAGEL's
        # context update adds (not generated: a GRPO step does not score it)
        items.append((Text((cfg.bos_token_id, *ids)), True))
        ended = bool(ids) and ids[-1] == cfg.eos_token_id
        if not ended:
            items.append((Text((cfg.eos_token_id,)), False))
        parsed = self.format.parse(stopper.text, tools=tools)
        if parsed.kind == "answer":
            step.finish = "answer"
            trace.answer, trace.raw_answer, trace.stop_reason = parsed.boxed, parsed.answer, "answer"
            return None
        if parsed.kind == "tool":
            step.finish = "tool"
            return parsed.tool, parsed.request or ""
        if len(ids) >= limit and limit < self.max_new_tokens_per_turn:
            step.finish, trace.stop_reason = "budget", "max_total_tokens"
            return None
        step.finish = "eos" if ended else "length" if len(ids) >= limit else "unparsed"
        if turn + 1 < self.max_turns:
            retry = self._text(self.format.retry_prompt)
            trace.steps.append(
                ReasoningStep("prompt", turn, text=self.format.retry_prompt, token_ids=list(retry.ids))
            )
            items.append((retry, False))
        return None

    def _perceive(
        self,
        trace: CooperTrace,
        items: list[tuple[Item, bool]],
        turn: int,
        tool: str,
        request: str,
        size: tuple[int, int],
        vit_pixels: torch.Tensor,
        generator: torch.Generator,
    ) -> None:
        """Generate `tool`'s map after the context and feed it back as an image with the reflection prompt."""
        trace.steps.append(ReasoningStep("tool_call", turn, text=request, modality=tool))
        pixels = (
            generate_image(self.model, [item for item, _ in items], size, self.sampling, generator=generator)
            .float()
            .cpu()
        )
        picture_tensor = (pixels.clamp(-1, 1) + 1) / 2  # [3, H, W] in [0, 1]
        trace.steps.append(ReasoningStep("map", turn, modality=tool, map=picture_tensor))
        picture = to_pil(picture_tensor)
        back = picture.resize((vit_pixels.shape[2], vit_pixels.shape[1]), PILImage.Resampling.NEAREST)
        prompt = self.format.reflection(tool)
        reflection = self._text(prompt)
        trace.steps.append(
            ReasoningStep(
                "image", turn, text=prompt, modality=tool, image=back, token_ids=list(reflection.ids)
            )
        )
        items += [(Image(fit_pixels(back, self.vit_stride, self.vit_max_side)), False), (reflection, False)]

    def _tokens(self, items: list[tuple[Item, bool]]) -> int:
        """Tokens of the context: text, and each image's ViT or latent tokens with their two frame tokens."""
        cfg = self.model.config
        total = 0
        for item, _ in items:
            if isinstance(item, Text):
                total += len(item.ids)
            elif isinstance(item, Image):
                total += 2 + (item.pixels.shape[1] // cfg.vit.patch_size) * (
                    item.pixels.shape[2] // cfg.vit.patch_size
                )
            else:
                p = cfg.latent_patch_size
                total += 2 + (item.latent.shape[1] // p) * (item.latent.shape[2] // p)
        return total


class _TurnContext:
    """A rollout's text context: `TextContext` kept across turns (`incremental`), or the whole
    context prefilled for each turn (`generate_text`)."""

    def __init__(self, model: CooperModel, incremental: bool) -> None:
        self.model, self.incremental = model, incremental
        self.cache = TextContext(model)
        self.fed = 0  # items of the rollout already in the cache
        self.pending: list[Item] = []  # the last sampled token, not yet fed

    def generate(self, items: list[tuple[Item, bool]], limit: int, **options: Any) -> list[int]:
        """The next turn's token ids after `items`; the caller appends them as one item next."""
        if not self.incremental:
            return generate_text(self.model, [item for item, _ in items], limit, **options)
        self.cache.extend(self.pending + [item for item, _ in items[self.fed :]])
        ids = self.cache.generate(limit, **options)  # feeds <|im_start|> and every id but the last
        self.fed, self.pending = len(items) + 1, [Text((ids[-1],))]
        return ids
