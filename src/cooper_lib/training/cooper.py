"""Training the reference assembly (`CooperModel`): one step per stage of COOPER's recipe.

- **Stage 1** (`stage1_step`): auxiliary-map generation, `stage1_sequence` rows (image and
  instruction in, depth or segmentation pseudo-image out) and `CooperModel.stage1_loss`.
- **SFT** (`sft_step`): interleaved dialogues as COOPER's SFT samples (a list of items, each with
  its `need_loss` flag), packed one dialogue per sample of a row (`pack_dialogues`). A flagged
  `Text` item is learnt with next-token labels ``ids[1:]`` (its text and the closing
  ``<|im_end|>``); a flagged `Latent` item is a generated map, learnt by flow matching as a noise
  split that later tokens never read; put the map's `Image` (ViT tokens) after it, unflagged,
  as the reasoner feeds it back. Upstream fed generated maps back as VAE + ViT tokens in training
  but as ViT tokens at inference (COOPER.md); here training reads what inference reads.
- **GRPO** (`grpo_step`): rollouts of `CooperReasoner` (their `CooperTrace.segments`, the model's
  own turns flagged), the CPR reward (`training.rewards.cpr_reward`), group-normalised advantages
  and the clipped policy loss of `training.policy_loss` on the generated text tokens, labels
  shifted by one (upstream's GRPO loss was not).

Every step is the loss, ``zero_grad``, ``backward``, gradient clipping, ``optimizer.step`` on one
process; for 7B wrap the model with FSDP using `fsdp_auto_wrap_policy` (one unit per decoder layer).
The library's trainers run the same losses in their accelerate loop through two modules:
`CooperObjective` (stage 1 and SFT micro-batches, `training.cooper_data.CooperBatch`) and
`CooperPolicyScorer` (GRPO log-probs); `training.kinds.CooperKind` wires them in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

from cooper_lib.models.cooper import (
    NO_DROPOUT,
    ConditionDropout,
    CooperModel,
    Image,
    Item,
    Latent,
    PackedSequence,
    SequenceBuilder,
    Stage1Sample,
    Text,
    stage1_sequence,
)
from cooper_lib.models.cooper.mot import MoTDecoderLayer
from cooper_lib.reasoning.cooper import CooperTrace
from cooper_lib.training.cooper_data import CooperBatch, ImageLatent
from cooper_lib.training.policy_loss import (
    PolicyLossOutput,
    clipped_policy_loss,
    group_advantages,
    token_logprobs,
)

__all__ = [
    "CooperObjective",
    "CooperPolicyScorer",
    "Dialogue",
    "encode_dialogue",
    "fsdp_auto_wrap_policy",
    "grpo_loss",
    "grpo_step",
    "pack_dialogues",
    "rollout_logprobs",
    "sft_loss",
    "sft_losses",
    "sft_step",
    "stage1_step",
]

Dialogue = Sequence[tuple[Item, bool]]
"""One interleaved sample: (item, need_loss) pairs in order."""


def fsdp_auto_wrap_policy() -> Callable[..., bool]:
    """FSDP's ``auto_wrap_policy`` for `CooperModel`: one unit per MoT decoder layer (both experts
    and the shared attention); embeddings, ViT, connector and autoencoder stay in the root unit."""
    return functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={MoTDecoderLayer})


def pack_dialogues(model: CooperModel, dialogues: Sequence[Dialogue]) -> tuple[PackedSequence, torch.Tensor]:
    """One row with a sample per dialogue, and `[N_text]` bool over `seq.text_ids`: the tokens
    learnt (flagged `Text` items' ids after their first, the ``<|im_start|>``)."""
    if not dialogues:
        raise ValueError("dialogues: expected at least one dialogue, got none")
    builder = SequenceBuilder(model.config)
    learnt: list[bool] = []
    for d, dialogue in enumerate(dialogues):
        if not dialogue:
            raise ValueError(f"dialogues[{d}]: expected at least one (item, need_loss) pair, got none")
        builder.new_sample()
        for i, (item, flag) in enumerate(dialogue):
            if isinstance(item, Text):
                builder.text(list(item.ids))
                learnt += [False] + [bool(flag)] * (len(item.ids) - 1)
            elif isinstance(item, Image):
                if flag:
                    raise ValueError(
                        f"dialogues[{d}][{i}]: an Image (ViT tokens) is read, not learnt; flag the map's "
                        "Latent instead"
                    )
                builder.image(item.pixels)
                learnt += [False, False]
            elif isinstance(item, Latent):
                builder.latent(item.latent, noised=bool(flag))
                learnt += [False, False]
            else:
                raise TypeError(
                    f"dialogues[{d}][{i}]: expected (Text | Image | Latent, bool), got {type(item).__name__}"
                )
    seq = builder.build()
    return seq, torch.tensor(learnt, dtype=torch.bool)


def _text_logprobs(
    model: CooperModel,
    seq: PackedSequence,
    hidden: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
):
    """`[N_text]` log-probs of the masked text tokens (0 elsewhere), each from the hidden state of
    the text token before it (always in the same item: a learnt token is never an item's first),
    under the logits divided by `temperature` (the bias-free `lm_head` makes that the hidden states
    divided by it)."""
    weight = model.language_model.lm_head.weight
    states = hidden[seq.text_index][None]
    if temperature != 1.0:
        states = states / temperature
    return token_logprobs(states, weight, seq.text_ids[None], mask[None])[0]


def sft_losses(
    model: CooperModel,
    dialogues: Sequence[Dialogue],
    *,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The two SFT terms: mean next-token NLL over the learnt text tokens and the flow loss of the
    flagged latents, each None when the dialogues have nothing of that kind to learn."""
    device = next(model.parameters()).device
    seq, mask = pack_dialogues(model, dialogues)
    seq, mask = seq.to(device), mask.to(device)
    has_maps = bool(seq.latent_noised.any())
    if not bool(mask.any()) and not has_maps:
        raise ValueError("dialogues: nothing is flagged need_loss")
    if has_maps:
        x_t, t, noise, clean = model.noise_latents(seq, shift=shift, generator=generator)
        hidden = model(seq, x_t, t)
    else:
        hidden = model(seq)
    ce = -_text_logprobs(model, seq, hidden, mask)[mask].mean() if bool(mask.any()) else None
    mse = model.velocity_loss(seq, hidden, noise, clean) if has_maps else None
    return ce, mse


def sft_loss(
    model: CooperModel,
    dialogues: Sequence[Dialogue],
    *,
    ce_weight: float = 1.0,
    mse_weight: float = 1.0,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """`ce_weight` x mean next-token NLL over the learnt text tokens + `mse_weight` x the flow
    loss of the flagged latents (when any); see `sft_losses`."""
    ce, mse = sft_losses(model, dialogues, shift=shift, generator=generator)
    terms = ([ce_weight * ce] if ce is not None else []) + ([mse_weight * mse] if mse is not None else [])
    return torch.stack(terms).sum()


def rollout_logprobs(
    model: CooperModel, traces: Sequence[CooperTrace], *, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """`[B, T]` log-probs of each rollout's generated text tokens (0 elsewhere) and the `[B, T]`
    mask of those tokens, T the longest rollout's text tokens; all rollouts in one packed row. The
    log-probs are those of the sampling distribution: logits divided by `temperature`."""
    if not temperature > 0:
        raise ValueError(f"temperature: expected a positive number, got {temperature}")
    for i, trace in enumerate(traces):
        if not isinstance(trace, CooperTrace) or not trace.segments:
            raise ValueError(
                f"traces[{i}]: expected a CooperTrace from CooperReasoner, got {type(trace).__name__}"
            )
    device = next(model.parameters()).device
    seq, mask = pack_dialogues(model, [t.segments for t in traces])
    seq, mask = seq.to(device), mask.to(device)
    logp = _text_logprobs(model, seq, model(seq), mask, temperature)
    owner = seq.sample[seq.text_index]
    width = int(torch.bincount(owner).max())
    out = logp.new_zeros(len(traces), width)
    out_mask = torch.zeros(len(traces), width, dtype=torch.bool, device=device)
    for b in range(len(traces)):
        mine = owner == b
        out[b, : int(mine.sum())] = logp[mine]
        out_mask[b, : int(mine.sum())] = mask[mine]
    return out, out_mask


def grpo_loss(
    model: CooperModel,
    traces: Sequence[CooperTrace],
    advantages: torch.Tensor,
    *,
    old_logprobs: torch.Tensor | None = None,
    clip_eps: float = 0.2,
) -> PolicyLossOutput:
    """The clipped policy loss of `traces` (COOPER: no KL term); `old_logprobs` default to the
    current ones detached (one update per batch of rollouts, ratio 1)."""
    logp, mask = rollout_logprobs(model, traces)
    if not bool(mask.any(dim=1).all()):
        raise ValueError("traces: expected every rollout to hold generated text, one holds none")
    old = logp.detach() if old_logprobs is None else old_logprobs
    return clipped_policy_loss(logp, old, advantages.to(logp.device), mask, clip_eps=clip_eps)


def _update(
    model: CooperModel, optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float | None
) -> float:
    """Zero the gradients, check `loss` is finite, backpropagate it, clip, step; returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        raise ValueError(f"loss: expected a finite value, got {float(loss)}")
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return float(loss.detach())


def stage1_step(
    model: CooperModel,
    optimizer: torch.optim.Optimizer,
    samples: list[Stage1Sample],
    *,
    dropout: ConditionDropout | None = None,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
    max_grad_norm: float | None = 1.0,
) -> float:
    """One stage-1 update on `samples` packed in one row (`dropout` default BAGEL's); returns the loss."""
    device = next(model.parameters()).device
    seq = stage1_sequence(model, samples, dropout=dropout or ConditionDropout(), generator=generator)
    seq = seq.to(device)
    return _update(model, optimizer, model.stage1_loss(seq, shift=shift, generator=generator), max_grad_norm)


def sft_step(
    model: CooperModel,
    optimizer: torch.optim.Optimizer,
    dialogues: Sequence[Dialogue],
    *,
    max_grad_norm: float | None = 1.0,
    **loss_options: float,
) -> float:
    """One SFT update on `dialogues` (options as `sft_loss`); returns the loss."""
    return _update(model, optimizer, sft_loss(model, dialogues, **loss_options), max_grad_norm)


def grpo_step(
    model: CooperModel,
    optimizer: torch.optim.Optimizer,
    traces: Sequence[CooperTrace],
    rewards: Sequence[float],
    group_size: int,
    *,
    clip_eps: float = 0.2,
    max_grad_norm: float | None = 1.0,
) -> PolicyLossOutput:
    """One GRPO update: advantages normalised within groups of `group_size` consecutive rollouts
    (std + 1e-4, as COOPER), then `grpo_loss`."""
    if len(rewards) != len(traces):
        raise ValueError(f"rewards: expected one per trace ({len(traces)}), got {len(rewards)}")
    advantages = group_advantages(torch.tensor(rewards, dtype=torch.float32), group_size)
    out = grpo_loss(model, traces, advantages, clip_eps=clip_eps)
    _update(model, optimizer, out.loss, max_grad_norm)
    return out


def encode_dialogue(
    model: CooperModel, dialogue: Sequence[tuple[Item | ImageLatent, bool]]
) -> list[tuple[Item, bool]]:
    """`dialogue` with each `ImageLatent` (pixels) replaced by its `Latent` (the autoencoder's
    posterior mean, computed without gradient on the model's device)."""
    weight = next(model.vae.parameters())
    out: list[tuple[Item, bool]] = []
    for item, flag in dialogue:
        if isinstance(item, ImageLatent):
            with torch.no_grad():
                latent = model.vae.encode(item.pixels[None].to(weight), sample=False)[0].float()
            item = Latent(latent)
        out.append((item, flag))
    return out


class CooperObjective(torch.nn.Module):
    """The module a trainer wraps (DDP / FSDP) for the supervised stages of a `CooperModel`: its
    forward takes a `CooperBatch` and returns the loss and its parts.

    Stage-1 samples are packed with BAGEL's condition dropout in training mode and none in eval
    mode (`stage1_sequence`) and scored by `CooperModel.stage1_loss`; SFT dialogues by
    `sft_losses` (``lm_loss`` + ``flow_loss``, the latter when maps are learnt).
    """

    def __init__(self, model: CooperModel, dropout: ConditionDropout | None = None) -> None:
        super().__init__()
        self.cooper = model
        self.dropout = dropout or ConditionDropout()

    def forward(self, batch: CooperBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, detached parts) of `batch`, a `cooper_data.CooperBatch`."""
        model = self.cooper
        device = next(model.parameters()).device
        if batch.stage1 and batch.dialogues:
            raise ValueError("batch: expected stage-1 samples or SFT dialogues, got both")
        if batch.stage1:
            dropout = self.dropout if self.training else NO_DROPOUT
            seq = stage1_sequence(model, batch.stage1, dropout=dropout).to(device)
            loss = model.stage1_loss(seq)
            return loss, {"flow_loss": loss.detach()}
        if not batch.dialogues:
            raise ValueError("batch: expected stage-1 samples or SFT dialogues, got neither")
        ce, mse = sft_losses(model, [encode_dialogue(model, d) for d in batch.dialogues])
        parts = {name: v.detach() for name, v in (("lm_loss", ce), ("flow_loss", mse)) if v is not None}
        return torch.stack([v for v in (ce, mse) if v is not None]).sum(), parts


class CooperPolicyScorer(torch.nn.Module):
    """What a GRPO step wraps for a `CooperModel`: forward(traces) -> (`[B, T]` log-probs of the
    rollouts' generated tokens at the sampling temperature, their `[B, T]` mask); see
    `rollout_logprobs`."""

    def __init__(self, model: CooperModel, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature: expected a positive number, got {temperature}")
        self.cooper = model
        self.temperature = float(temperature)

    def forward(self, traces: Sequence[CooperTrace]) -> tuple[torch.Tensor, torch.Tensor]:
        return rollout_logprobs(self.cooper, traces, temperature=self.temperature)
