"""Training loop for ``VQTokenizer``: AdamW, cosine learning rate, tqdm, safetensors checkpoints."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cooper_lib.tokenizers.vq import VQTokenizer

__all__ = ["VQTrainResult", "train_vq_tokenizer"]


@dataclass
class VQTrainResult:
    """Per-step history of a training run and the checkpoints it wrote."""

    steps: int
    losses: list[float] = field(default_factory=list)
    reconstruction_losses: list[float] = field(default_factory=list)
    perplexities: list[float] = field(default_factory=list)
    restarts: int = 0
    checkpoints: list[Path] = field(default_factory=list)


def _batches(
    data: torch.Tensor | Iterable[torch.Tensor], batch_size: int, generator: torch.Generator | None
) -> Iterator[torch.Tensor]:
    """Random minibatches of a tensor forever, or the iterable's batches, re-iterated when it ends."""
    if isinstance(data, torch.Tensor):
        while True:
            yield data[torch.randint(0, data.shape[0], (batch_size,), generator=generator)]
    one_shot = iter(data) is data
    while True:
        produced = False
        for batch in data:
            produced = True
            yield batch
        if one_shot or not produced:
            return


def train_vq_tokenizer(
    tokenizer: VQTokenizer,
    images_or_iterable: torch.Tensor | Iterable[torch.Tensor],
    steps: int,
    lr: float = 2e-3,
    *,
    batch_size: int = 32,
    weight_decay: float = 0.0,
    grad_clip: float | None = 1.0,
    min_lr_ratio: float = 0.1,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> VQTrainResult:
    """Train ``tokenizer`` to reconstruct images: MSE reconstruction loss plus the VQ loss.

    Args:
        tokenizer: the VQ-VAE to train (in place).
        images_or_iterable: a tensor ``(N, C, S, S)`` in [0, 1], sampled in random minibatches, or
            an iterable of such batches (re-iterated when exhausted; a one-shot iterator that runs
            out ends training early with a warning).
        steps: optimiser steps.
        lr: peak AdamW learning rate; cosine decay to ``lr * min_lr_ratio``.
        batch_size: minibatch size when sampling from a tensor.
        weight_decay: AdamW weight decay.
        grad_clip: gradient-norm clip, or None.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        checkpoint_dir: where ``save_pretrained`` checkpoints go (``step-000100/``, ..., ``final/``).
        checkpoint_every: save every this many steps (needs ``checkpoint_dir``).
        device: where to train; default: the tokenizer's device.
        generator: random generator for minibatch sampling.
        progress: show a tqdm progress bar.

    Raises:
        ValueError: a batch holding NaN or infinite pixels, before the tokenizer sees it.
        FloatingPointError: a NaN or infinite loss (or gradient norm), before the optimiser update
            it would make, so the checkpoints written so far stay good; lower ``lr`` or keep
            ``grad_clip``.
    """
    if steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps}")
    if checkpoint_every is not None and (checkpoint_dir is None or checkpoint_every < 1):
        raise ValueError("checkpoint_every: needs checkpoint_dir and a positive interval")
    if isinstance(images_or_iterable, torch.Tensor) and (
        images_or_iterable.ndim != 4 or images_or_iterable.shape[0] == 0
    ):
        raise ValueError(
            f"images_or_iterable: expected a (N, C, H, W) tensor, got {tuple(images_or_iterable.shape)}"
        )
    device = torch.device(device) if device is not None else next(tokenizer.parameters()).device
    tokenizer.to(device).train()
    optimizer = torch.optim.AdamW(tokenizer.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=lr * min_lr_ratio)
    result = VQTrainResult(steps=0)
    batches = _batches(images_or_iterable, batch_size, generator)
    bar = tqdm(total=steps, disable=not progress, desc="vq tokenizer")
    for step in range(1, steps + 1):
        batch = next(batches, None)
        if batch is None:
            warnings.warn(f"images_or_iterable ran out after {step - 1} of {steps} steps", stacklevel=2)
            break
        if not bool(torch.isfinite(batch).all()):
            raise ValueError(
                f"images_or_iterable: expected finite pixels, the batch of step {step} holds NaN or inf"
            )
        out = tokenizer(batch.to(device))
        reconstruction = F.mse_loss(out.reconstruction, batch.to(device))
        loss = reconstruction + out.vq_loss
        _check_finite("loss", loss, step, reconstruction=reconstruction, vq_loss=out.vq_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(tokenizer.parameters(), grad_clip)
            _check_finite("grad_norm", norm, step)
        optimizer.step()
        schedule.step()
        result.steps = step
        result.losses.append(loss.item())
        result.reconstruction_losses.append(reconstruction.item())
        result.perplexities.append(out.perplexity.item())
        result.restarts += out.restarted
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", perplexity=f"{out.perplexity.item():.1f}")
        if checkpoint_every is not None and step % checkpoint_every == 0:
            result.checkpoints.append(_save(tokenizer, Path(checkpoint_dir) / f"step-{step:06d}"))
    bar.close()
    tokenizer.eval()
    if checkpoint_dir is not None:
        result.checkpoints.append(_save(tokenizer, Path(checkpoint_dir) / "final"))
    return result


def _check_finite(name: str, value: torch.Tensor, step: int, **parts: torch.Tensor) -> None:
    """Raise FloatingPointError naming `name`, the step and the loss's parts when `value` is not finite."""
    if not bool(torch.isfinite(value.detach()).all()):
        detail = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in parts.items())
        raise FloatingPointError(
            f"{name}: expected a finite value, got {float(value.detach())} at step {step}"
            f"{f' ({detail})' if detail else ''}; training stopped before the update (the "
            "checkpoints written so far are good). Lower lr or keep grad_clip"
        )


def _save(tokenizer: VQTokenizer, path: Path) -> Path:
    tokenizer.save_pretrained(path)
    return path
