"""Tiny random backbones with their processors, built offline from configs (tests, demo, benchmarks).

`build_tiny_backbone(family)` returns `(model, processor)`: a few-layer model of the family's own
transformers class and a processor whose tokenizer was trained offline, so nothing is downloaded.
Keyword overrides size it: text-config fields (``hidden_size=256, num_hidden_layers=4``) for every
family, and for the Qwen-VL and LLaVA families the vision options of `VISION_OPTIONS`
(``vision_hidden_size``, ``vision_layers``, ``vision_heads``, ``image_size``, ``patch_size``), and
for the Qwen-VL families ``visual_positions`` (``"rotary"`` or ``"sincos"``).

Configs and the command line name such a model with a spec string (`parse_tiny_spec`):
``tiny:<family>`` or ``tiny:<family>?key=value&key=value``, e.g.
``tiny:qwen2_vl?hidden_size=256&num_hidden_layers=4&image_size=112&seed=1``, where ``seed`` seeds
the random weights and every other key is an override.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from cooper_lib.backbones.tiny.common import VISION_OPTIONS

TINY_PREFIX = "tiny:"
#: Families whose builders take `VISION_OPTIONS` (the others size their text decoder only).
SIZED_VISION: frozenset[str] = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava", "llava_onevision"})

#: Families whose builders take ``visual_positions`` (see `cooper_lib.backbones.tiny.qwen_vl`).
VISUAL_POSITION_FAMILIES: frozenset[str] = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl"})

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
        overrides: text-config fields to change (e.g. ``hidden_size=1024``, ``num_hidden_layers=8``)
            and, for the families in `SIZED_VISION`, `VISION_OPTIONS`; for the Qwen-VL families
            ``visual_positions``.

    Raises:
        ValueError: for an unknown family, or an override the family does not take (the message
            names the accepted ones).
    """
    if family not in _MODULES:
        raise ValueError(f"family: expected one of {tiny_families()}, got {family!r}")
    vision = sorted(set(overrides) & set(VISION_OPTIONS))
    if vision and family not in SIZED_VISION:
        raise ValueError(
            f"overrides: {family} takes text-config fields only, got vision options {vision}; "
            f"vision options are taken by {sorted(SIZED_VISION)}"
        )
    if "visual_positions" in overrides and family not in VISUAL_POSITION_FAMILIES:
        raise ValueError(
            f"overrides: {family} does not take visual_positions; it is taken by {sorted(VISUAL_POSITION_FAMILIES)}"
        )
    module = importlib.import_module(f"{__name__}.{_MODULES[family]}")
    return module.build(family, seed=seed, **overrides)


def parse_tiny_spec(spec: str) -> tuple[str, int | None, dict[str, Any]]:
    """``tiny:<family>[?key=value&...]`` -> (family, seed or None, overrides).

    Values are read as int, float, ``true`` / ``false`` or else kept as text. Only the syntax and
    the family are checked here; `build_tiny_backbone` checks the override names.

    Raises:
        ValueError: when `spec` does not start with ``tiny:``, names an unknown family, repeats a
            key or has an item that is not ``key=value``.
    """
    if not spec.startswith(TINY_PREFIX):
        raise ValueError(f"spec: expected 'tiny:<family>[?key=value&...]', got {spec!r}")
    family, _, query = spec.removeprefix(TINY_PREFIX).partition("?")
    if family not in _MODULES:
        raise ValueError(f"spec: family expected one of {tiny_families()}, got {family!r} in {spec!r}")
    options: dict[str, Any] = {}
    for item in query.split("&") if query else []:
        key, sep, text = item.partition("=")
        if not sep or not key or not text:
            raise ValueError(f"spec: expected key=value items after '?', got {item!r} in {spec!r}")
        if key in options:
            raise ValueError(f"spec: key {key!r} given twice in {spec!r}")
        options[key] = _value(text)
    seed = options.pop("seed", None)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"spec: seed expected a non-negative int, got {seed!r} in {spec!r}")
    return family, seed, options


def tiny_spec(family: str, *, seed: int | None = None, **overrides: Any) -> str:
    """The spec string `parse_tiny_spec` reads back as (family, seed, overrides)."""
    items = ([f"seed={seed}"] if seed is not None else []) + [
        f"{key}={str(value).lower() if isinstance(value, bool) else value}"
        for key, value in overrides.items()
    ]
    spec = TINY_PREFIX + family + ("?" + "&".join(items) if items else "")
    parse_tiny_spec(spec)
    return spec


def build_from_spec(spec: str, *, seed: int = 0) -> tuple[nn.Module, Any]:
    """`build_tiny_backbone` for a spec string; a ``seed`` in the spec wins over `seed`."""
    family, spec_seed, overrides = parse_tiny_spec(spec)
    return build_tiny_backbone(family, seed=seed if spec_seed is None else spec_seed, **overrides)


def _value(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
