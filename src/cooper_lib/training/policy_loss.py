"""GRPO's arithmetic: group-normalised advantages, shifted token log-probs, the clipped objective.

Conventions: `input_ids` [B, T] hold whole rollouts (prompt, generated turns, inserted maps and
prompts); `mask` [B, T] is True at the tokens the policy generated. The log-prob of the token at
position t is read from the hidden state at t - 1 (labels shifted by one, which COOPER's
upstream loss forgot), so position 0 can never be a generated token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cooper_lib import ops


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """``(r - mean_group) / (std_group + eps)`` for rewards laid out group after group.

    Args:
        rewards: [N] rewards, N a multiple of `group_size`; consecutive `group_size` values share a prompt.
        group_size: rollouts per prompt.
        eps: added to the (unbiased) group standard deviation, so a group whose rollouts all
            scored the same gets advantage 0 instead of a division by zero.
    """
    if rewards.ndim != 1:
        raise ValueError(f"rewards: expected a 1-D tensor, got shape {tuple(rewards.shape)}")
    if group_size < 2 or rewards.numel() % group_size:
        raise ValueError(
            f"group_size: expected >= 2 dividing the {rewards.numel()} rewards, got {group_size}"
        )
    grouped = rewards.float().reshape(-1, group_size)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True)
    return ((grouped - mean) / (std + eps)).reshape(-1)


def token_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """Log-probs of the masked tokens under the LM head, aligned with `input_ids`.

    Args:
        hidden: [B, T, H] last hidden states of the backbone on `input_ids`.
        weight: [V, H] the LM head (``lm_head.weight`` or the tied embedding).
        input_ids: [B, T] token ids.
        mask: [B, T] bool, the tokens whose log-prob is wanted (False at position 0).
        bias: the LM head's bias, if any.
        softcap: the LM head's logit soft-capping, if any.

    Returns:
        [B, T] (float32, float64 for float64 inputs): ``log p(input_ids[b, t] | input_ids[b, :t])`` where `mask`, 0 elsewhere.
        Only the masked rows' logits are formed (chunked, by `ops.linear_cross_entropy`).
    """
    if hidden.shape[:2] != input_ids.shape or mask.shape != input_ids.shape:
        raise ValueError(
            f"hidden, input_ids, mask: expected [B, T, H], [B, T], [B, T]; got {tuple(hidden.shape)}, "
            f"{tuple(input_ids.shape)}, {tuple(mask.shape)}"
        )
    mask = mask.bool()
    if bool(mask[:, 0].any()):
        raise ValueError("mask: position 0 has no preceding hidden state; it cannot be a generated token")
    target = mask[:, 1:]
    nll = ops.linear_cross_entropy(
        hidden[:, :-1][target], weight, input_ids[:, 1:][target], bias=bias, softcap=softcap, reduction="none"
    )
    out = torch.zeros(input_ids.shape, dtype=nll.dtype, device=hidden.device)
    out[:, 1:][target] = -nll
    return out


@dataclass
class PolicyLossOutput:
    """The loss and what to log about it."""

    loss: torch.Tensor
    clip_fraction: torch.Tensor
    ratio_mean: torch.Tensor
    kl: torch.Tensor


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    ref_logprobs: torch.Tensor | None = None,
    kl_beta: float = 0.0,
) -> PolicyLossOutput:
    """PPO's clipped surrogate with one advantage per rollout, averaged per rollout then over rollouts.

    Per token: ``-min(rho * A, clip(rho, 1 - eps, 1 + eps) * A) + beta * KL`` with
    ``rho = exp(logp - logp_old)`` and the k3 estimator ``KL = exp(ref - logp) - (ref - logp) - 1``.
    Each rollout's loss is the mean over its generated tokens (GRPO's normalisation); the batch
    loss is the mean over rollouts.

    Args:
        logprobs: [B, T] current log-probs (with gradient), aligned as by `token_logprobs`.
        old_logprobs: [B, T] log-probs of the policy that sampled the rollouts (no gradient).
        advantages: [B] one advantage per rollout.
        mask: [B, T] bool, generated tokens.
        clip_eps: the ratio clip.
        ref_logprobs: [B, T] log-probs of the frozen reference policy (needed when `kl_beta` > 0).
        kl_beta: KL weight.
    """
    if logprobs.shape != mask.shape or old_logprobs.shape != mask.shape:
        raise ValueError(
            f"logprobs, old_logprobs, mask: expected one shape, got {tuple(logprobs.shape)}, "
            f"{tuple(old_logprobs.shape)}, {tuple(mask.shape)}"
        )
    if advantages.shape != mask.shape[:1]:
        raise ValueError(f"advantages: expected shape {tuple(mask.shape[:1])}, got {tuple(advantages.shape)}")
    if kl_beta > 0 and ref_logprobs is None:
        raise ValueError("ref_logprobs: needed when kl_beta > 0")
    mask = mask.float()
    ratio = torch.exp(logprobs - old_logprobs.detach())
    adv = advantages.detach().float().unsqueeze(1)
    unclipped = ratio * adv
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv
    per_token = -torch.minimum(unclipped, clipped)
    kl = torch.zeros_like(per_token)
    if kl_beta > 0:
        delta = ref_logprobs.detach() - logprobs
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + kl_beta * kl
    counts = mask.sum(dim=1).clamp(min=1)
    loss = ((per_token * mask).sum(dim=1) / counts).mean()
    total = mask.sum().clamp(min=1)
    with torch.no_grad():
        was_clipped = (clipped < unclipped).float()  # the clip is what the min picked
        stats = (
            (was_clipped * mask).sum() / total,
            (ratio * mask).sum() / total,
            (kl * mask).sum() / total,
        )
    return PolicyLossOutput(loss, *stats)
