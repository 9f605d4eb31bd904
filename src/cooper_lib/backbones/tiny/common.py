"""Pieces every tiny-backbone builder shares: the small text config and seeded construction."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedTokenizerBase

#: Text-decoder size of every tiny backbone; `build(..., **overrides)` changes any of these.
TINY_TEXT: dict[str, int] = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}

#: Vision-tower and image options some families take next to the text-config fields (defaults
#: per family): tower width, depth and heads, the side (px) images are resized to, and the patch
#: side (px). The visual tokens an image costs follow from the last two (see each family's module).
VISION_OPTIONS: tuple[str, ...] = (
    "vision_hidden_size",
    "vision_layers",
    "vision_heads",
    "image_size",
    "patch_size",
)


def padded_vocab(tokenizer: PreTrainedTokenizerBase, multiple: int = 64) -> int:
    """The tokenizer's size rounded up to `multiple` (embedding tables are padded like real checkpoints)."""
    return -(-len(tokenizer) // multiple) * multiple


def text_fields(
    tokenizer: PreTrainedTokenizerBase, config_cls: type[PreTrainedConfig], overrides: dict[str, Any]
) -> dict[str, Any]:
    """Fields for a `config_cls` text config: `TINY_TEXT`, the tokenizer's vocabulary and ids, `overrides`.

    `intermediate_size` defaults to twice the (possibly overridden) hidden size, so a mid-size
    override such as ``hidden_size=1024`` gets a proportionate MLP.

    Raises:
        ValueError: when an override is not a field of `config_cls`, or the heads do not divide
            the hidden size.
    """
    known = {field.name for field in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"overrides: {unknown} are not fields of {config_cls.__name__}; expected some of {sorted(known)}"
        )
    token_ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }
    fields: dict[str, Any] = {
        **TINY_TEXT,
        "vocab_size": padded_vocab(tokenizer),
        **{name: value for name, value in token_ids.items() if name in known},
        **overrides,
    }
    fields.setdefault("intermediate_size", 2 * fields["hidden_size"])
    if fields["hidden_size"] % fields["num_attention_heads"]:
        raise ValueError(
            f"overrides: hidden_size={fields['hidden_size']} must be divisible by "
            f"num_attention_heads={fields['num_attention_heads']}"
        )
    return fields


def head_dim(fields: dict[str, Any]) -> int:
    """Per-head width of the text decoder described by `fields`."""
    return int(fields.get("head_dim") or fields["hidden_size"] // fields["num_attention_heads"])


def instantiate(model_cls: type[nn.Module], config: PreTrainedConfig, seed: int) -> nn.Module:
    """Build `model_cls(config)` with weights drawn from `seed`, leaving the global RNG untouched."""
    # manual_seed seeds every CUDA device too: fork (and so restore) their generators as well
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = model_cls(config)
    return model.float().eval()


def vision_fields(overrides: dict[str, Any], defaults: dict[str, int]) -> dict[str, int]:
    """Pop the `VISION_OPTIONS` out of `overrides` (changed in place) over the family's `defaults`.

    Raises:
        ValueError: when a value is not a positive int or the heads do not divide the width.
    """
    vision = dict(defaults)
    for name in VISION_OPTIONS:
        if name in overrides:
            vision[name] = overrides.pop(name)
    for name, value in vision.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if vision["vision_hidden_size"] % vision["vision_heads"]:
        raise ValueError(
            f"vision_hidden_size={vision['vision_hidden_size']} must be divisible by "
            f"vision_heads={vision['vision_heads']}"
        )
    return vision
