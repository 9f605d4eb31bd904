"""One call that makes a Hugging Face causal LM / VLM compute its loss with `linear_cross_entropy`.

``patch_linear_cross_entropy(model)`` wraps the model's ``forward`` (on this instance only). When
the wrapper is asked for a loss (``labels`` given) and is in training mode (or ``skip_logits=True``),
it runs the original forward with the output head (``model.get_output_embeddings()``, an
``nn.Linear``) replaced for that call by a stand-in that keeps the final hidden states and returns
an empty ``[..., 0]`` tensor; so the ``[B, T, V]`` logits are never made. The loss is then the
fused linear cross-entropy of those hidden states against the labels shifted by one, exactly
transformers' causal-LM loss: a mean over the non-ignored targets, or their sum divided by
``num_items_in_batch`` when the caller (``transformers.Trainer``) passes it. The returned output
has that ``loss`` and ``logits=None``. Everything else (no labels, eval mode) runs the original
forward unchanged.

The head's logits must be plain ``hidden @ weight.T (+ bias)``, optionally soft-capped by the text
config's ``final_logit_softcapping`` (Gemma 2/3), which is applied; a config that scales its
logits otherwise (``logit_scale``, ``logits_scaling``, ``output_multiplier_scale``) is refused.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from cooper_lib.ops.dispatch import Backend
from cooper_lib.ops.linear_ce import Sweep, linear_cross_entropy

__all__ = ["patch_linear_cross_entropy", "unpatch_linear_cross_entropy"]

_ORIGINAL = "_cooper_lce_original_forward"
# Config fields that mean the logits are not a plain linear map of the hidden states.
_UNSUPPORTED_SCALES = ("logit_scale", "logits_scaling", "output_multiplier_scale")


def _text_config(model: nn.Module) -> Any:
    config = getattr(model, "config", None)
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _head_of(model: nn.Module) -> nn.Linear:
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if not isinstance(head, nn.Linear):
        raise TypeError(
            "model: expected a transformers model whose get_output_embeddings() is an nn.Linear, "
            f"got {type(head).__name__} from {type(model).__name__}"
        )
    return head


def patch_linear_cross_entropy(
    model: nn.Module,
    *,
    skip_logits: bool | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    chunk_size: int | None = None,
    sweep: Sweep = "auto",
    block_size: int | None = None,
    backend: Backend = "auto",
) -> nn.Module:
    """Make ``model`` compute its language-model loss with the fused linear cross-entropy.

    Args:
        model: a transformers ``*ForCausalLM`` / ``*ForConditionalGeneration`` (anything whose
            ``get_output_embeddings()`` is an ``nn.Linear`` and whose forward applies it to the
            final hidden states and accepts ``labels``).
        skip_logits: when to skip the logits for a call with ``labels``: ``None`` (default) in
            training mode only (eval then still returns logits for metrics), ``True`` always,
            ``False`` never (the patch is then inert).
        label_smoothing: passed to `linear_cross_entropy`.
        z_loss: passed to `linear_cross_entropy`.
        chunk_size: passed to `linear_cross_entropy`.
        sweep: passed to `linear_cross_entropy` (``"auto"``: the vocabulary sweep for a 16-bit head).
        block_size: passed to `linear_cross_entropy`.
        backend: passed to `linear_cross_entropy`.

    Returns:
        The same model (patched in place; `unpatch_linear_cross_entropy` restores it).

    Raises:
        TypeError: the model has no ``nn.Linear`` output head.
        ValueError: the model is already patched, or its config scales its logits.
    """
    head = _head_of(model)
    if _ORIGINAL in vars(model):
        raise ValueError("model: already patched by patch_linear_cross_entropy")
    config = _text_config(model)
    for name in _UNSUPPORTED_SCALES:
        value = getattr(config, name, None)
        if value not in (None, 1, 1.0):
            raise ValueError(f"model: its config sets {name}={value!r}; only unscaled logits are supported")
    softcap = getattr(config, "final_logit_softcapping", None)
    original = model.forward

    @functools.wraps(original)
    def forward(*args: Any, **kwargs: Any) -> Any:
        labels = kwargs.get("labels")
        skip = model.training if skip_logits is None else skip_logits
        if labels is None or not skip:
            return original(*args, **kwargs)
        num_items = kwargs.pop("num_items_in_batch", None)
        shift_labels = kwargs.pop("shift_labels", None)
        kwargs["labels"] = None
        kept: dict[str, torch.Tensor] = {}

        def keep_hidden(hidden: torch.Tensor) -> torch.Tensor:
            kept["hidden"] = hidden
            return hidden.new_empty(*hidden.shape[:-1], 0)

        head.forward = keep_hidden
        try:
            outputs = original(*args, **kwargs)
        finally:
            del head.forward  # back to the class's forward
        if "hidden" not in kept:
            raise RuntimeError(f"{type(model).__name__}.forward never called its output head")
        hidden = kept["hidden"]
        targets = labels if shift_labels is None else shift_labels
        loss = linear_cross_entropy(
            hidden,
            head.weight,
            targets.to(hidden.device),
            bias=head.bias,
            shift=1 if shift_labels is None else 0,
            reduction="mean" if num_items is None else "sum",
            label_smoothing=label_smoothing,
            z_loss=z_loss,
            softcap=softcap,
            chunk_size=chunk_size,
            sweep=sweep,
            block_size=block_size,
            backend=backend,
        )
        if num_items is not None:
            loss = loss / num_items
        fields = dict(outputs.items())
        fields.update(loss=loss, logits=None)
        return type(outputs)(**fields)

    model.forward = forward
    setattr(model, _ORIGINAL, original)
    return model


def unpatch_linear_cross_entropy(model: nn.Module) -> nn.Module:
    """Undo `patch_linear_cross_entropy` (a ValueError if the model is not patched)."""
    if _ORIGINAL not in vars(model):
        raise ValueError("model: not patched by patch_linear_cross_entropy")
    delattr(model, _ORIGINAL)
    del model.forward  # the instance attribute; the class's forward shows through again
    return model
