"""Text generation after a context, with the context's keys and values cached (BAGEL's `generate_text`).

`TextContext` is a growing context held as each layer's keys and values: `extend` runs only the
items added since the last call (each new token attends to the cached ones and to its own split,
as in the whole packed row: no earlier token ever reads a later split, so the cached keys and
values are those a full recompute gives), and `generate` starts from `<|im_start|>` as BAGEL's
does and feeds one token per step through the understanding expert, appending its keys and values,
until `<|im_end|>`, a stop, or `max_new_tokens`. The last sampled token is not yet fed: extend
the context with it (and with whatever closes the turn) before generating again.

`generate_text` is one fresh context: prefill, then decode.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cooper_lib.models.cooper.modeling import CooperModel
from cooper_lib.models.cooper.mot import KV
from cooper_lib.models.cooper.packing import Item, SequenceBuilder


class TextContext:
    """The keys and values of a context that grows item by item (one sample, no noise splits).

    Args:
        model: the unified model.

    Attributes:
        kv: each layer's cached keys and values (None while empty).
        length: tokens cached.
        position: the next RoPE position.
    """

    def __init__(self, model: CooperModel) -> None:
        self.model = model
        self.kv: list[KV] | None = None
        self.length = 0
        self.position = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _run(
        self, x: torch.Tensor, positions: torch.Tensor, gen: torch.Tensor, own_mask: torch.Tensor
    ) -> torch.Tensor:
        """Run new tokens `x [n, H]` after the cache; `own_mask [n, n]` is their mask among themselves."""
        seen = torch.ones(len(x), self.length, dtype=torch.bool, device=x.device)  # every cached token
        mask = torch.cat([seen, own_mask], dim=1)
        hidden, self.kv = self.model.language_model.model(x, positions, gen, mask, self.kv)
        self.length += len(x)
        return hidden

    @torch.no_grad()
    def extend(self, items: list[Item]) -> TextContext:
        """Run `items` after the cached context and cache their keys and values."""
        if not items:
            return self
        seq = SequenceBuilder(self.model.config).start_at(self.position).add(items).build().to(self.device)
        self._run(self.model.embed(seq), seq.positions, seq.gen, seq.attention_mask())
        self.position = int(seq.positions[-1]) + 1
        return self

    @torch.no_grad()
    def step(self, token: int) -> torch.Tensor:
        """Feed one text token (understanding expert) and return the next token's logits `[V]` (float)."""
        model, device = self.model, self.device
        x = model.language_model.model.embed_tokens(torch.tensor([token], device=device))  # [1, H]
        und = torch.zeros(1, dtype=torch.bool, device=device)
        own = torch.ones(1, 1, dtype=torch.bool, device=device)
        hidden = self._run(x, torch.tensor([self.position], device=device), und, own)
        self.position += 1
        return model.language_model.lm_head(hidden[-1]).float()

    @torch.no_grad()
    def generate(
        self,
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
        stop: Callable[[int], bool] | None = None,
    ) -> list[int]:
        """Token ids generated after the context (arguments as `generate_text`); `<|im_start|>` and
        every generated token but the last are fed to the cache."""
        if self.kv is None:
            raise ValueError("context: extend it with at least one item before generating")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: expected a positive int, got {max_new_tokens!r}")
        if temperature < 0:
            raise ValueError(f"temperature: expected a value >= 0, got {temperature}")
        cfg = self.model.config
        token, out = cfg.bos_token_id, []
        for _ in range(max_new_tokens):
            logits = self.step(token)
            if temperature == 0:
                token = int(logits.argmax())
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            out.append(token)
            if token == cfg.eos_token_id or (stop is not None and stop(token)):
                break
        return out


def generate_text(
    model: CooperModel,
    context: list[Item],
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    stop: Callable[[int], bool] | None = None,
) -> list[int]:
    """Token ids generated after `context` (the start token excluded, the end token included if reached).

    Args:
        model: the unified model.
        context: what the model reads first (non-empty).
        max_new_tokens: most tokens to generate.
        temperature: 0 for greedy decoding, else sampling from `softmax(logits / temperature)`.
        generator: random source for sampling.
        stop: called with each new token; generation ends after a token it returns True for
            (e.g. one completing a closing tag).
    """
    if not context:
        raise ValueError("context: expected at least one item, got none")
    return (
        TextContext(model)
        .extend(context)
        .generate(max_new_tokens, temperature=temperature, generator=generator, stop=stop)
    )
