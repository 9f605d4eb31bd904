"""Tiny random backbones with their processors, built offline from configs (tests, demo, benchmarks).

`build_tiny_backbone(family)` returns `(model, processor)`: a few-layer model of the family's own
transformers class and a processor whose tokenizer was trained offline, so nothing is downloaded.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

#: family name -> module (under this package) that defines `build(seed, **overrides)`.
_MODULES: dict[str, str] = {
    "qwen2_vl": "qwen_vl",
    "qwen2_5_vl": "qwen_vl",
    "qwen3_vl": "qwen_vl",
    "llava": "llava",
    "llava_onevision": "llava",
    "idefics3": "idefics3",
    "smolvlm": "idefics3",
    "paligemma": "paligemma",
    "gemma3": "gemma3",
    "internvl": "internvl",
    "mllama": "mllama",
}


def tiny_families() -> list[str]:
    """Names accepted by `build_tiny_backbone`."""
    return list(_MODULES)


def build_tiny_backbone(family: str, *, seed: int = 0, **overrides: Any) -> tuple[nn.Module, Any]:
    """Build `family`'s tiny random model (eval mode, float32) and its offline processor.

    Args:
        family: one of `tiny_families()`.
        seed: torch seed for the random weights.
        overrides: text-config fields to change (e.g. ``hidden_size=1024``, ``num_hidden_layers=8``).
    """
    if family not in _MODULES:
        raise ValueError(f"family: expected one of {tiny_families()}, got {family!r}")
    module = importlib.import_module(f"{__name__}.{_MODULES[family]}")
    return module.build(family, seed=seed, **overrides)
