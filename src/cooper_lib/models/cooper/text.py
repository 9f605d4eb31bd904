"""Text generation after a context, with the context's keys and values cached (BAGEL's `generate_text`).

The context (`Text`, `Image`, `Latent` items) is prefilled once; generation starts from
`<|im_start|>` as BAGEL's does and feeds one token per step through the understanding expert,
appending its keys and values to the cache, until `<|im_end|>` or `max_new_tokens`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cooper_lib.models.cooper.modeling import CooperModel
from cooper_lib.models.cooper.packing import Item, SequenceBuilder


@torch.no_grad()
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
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: expected a positive int, got {max_new_tokens!r}")
    if temperature < 0:
        raise ValueError(f"temperature: expected a value >= 0, got {temperature}")
    device = next(model.parameters()).device
    seq = SequenceBuilder(model.config).add(context).build().to(device)
    kv = model.prefill(seq).kv
    decoder, cfg = model.language_model.model, model.config
    position = int(seq.positions[-1]) + 1
    token, out = cfg.bos_token_id, []
    und = torch.zeros(1, dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        x = decoder.embed_tokens(torch.tensor([token], device=device))  # [1, H]
        mask = torch.ones(1, kv[0][0].shape[1] + 1, dtype=torch.bool, device=device)
        hidden, kv = decoder(x, torch.tensor([position], device=device), und, mask, kv)
        logits = model.language_model.lm_head(hidden[-1]).float()  # [V]
        if temperature == 0:
            token = int(logits.argmax())
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=generator))
        out.append(token)
        position += 1
        if token == cfg.eos_token_id or (stop is not None and stop(token)):
            break
    return out
