"""Reading one modality's head options out of `SpatialConfig.head_options`.

`head_options` is one JSON dict for all modalities. A key naming an attached modality holds a
dict of options for that modality's head alone; every other key goes to every modality's head.
Per-modality entries win over shared ones::

    head_options = {"steps": 25, "segmentation": {"tokenizer": "vq-seg/"}}

Each head declares its options and their defaults; an option it does not know is an error, so a
typo never passes silently, and a value of another type than its default's (bool, int, float or
str; None is accepted) is a TypeError by the rule of `cooper_lib.serialization`. With different heads per modality, put head-specific options under
the modality's name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cooper_lib.serialization import check_value
from cooper_lib.tokenizers import PatchTokenizer, VQTokenizer, build_tokenizer, load_tokenizer

if TYPE_CHECKING:
    from cooper_lib.config import SpatialConfig


def modality_options(config: SpatialConfig, modality: str) -> dict[str, Any]:
    """Shared options overlaid with `modality`'s own entry."""
    shared = {k: v for k, v in config.head_options.items() if k not in config.modalities}
    own = config.head_options.get(modality, {})
    if not isinstance(own, Mapping):
        raise TypeError(f"head_options[{modality!r}]: expected a dict of options, got {type(own).__name__}")
    return {**shared, **own}


def resolve_options(
    config: SpatialConfig, modality: str, head: str, defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """`defaults` updated with `modality`'s options; unknown option names raise ValueError."""
    given = modality_options(config, modality)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(
            f"head_options: unknown option(s) {unknown} for the {head!r} head of {modality!r}; "
            f"expected some of {sorted(defaults)}"
        )
    own = config.head_options.get(modality, {})
    for key, value in given.items():  # the type of the default, by the rule of cooper_lib.serialization
        default = defaults[key]
        if type(default) in (bool, int, float, str):
            where = f"head_options[{modality!r}][{key!r}]" if key in own else f"head_options[{key!r}]"
            given[key] = check_value(type(default) | None, value, where)  # None: the head's own default
    return {**defaults, **given}


def record_option(config: SpatialConfig, modality: str, key: str, value: Any) -> None:
    """Write `value` (JSON-serialisable) under `head_options[modality][key]`.

    Heads use this at build time to replace a tokenizer's folder by its configuration, so a saved
    `SpatialModel` rebuilds its heads from `cooper_config.json` alone (the weights travel in the
    safetensors file), as `SpatialConfig` records `added_tokens` at attach time.
    """
    own = dict(config.head_options.get(modality, {}))
    own[key] = value
    config.head_options = {**config.head_options, modality: own}


def tokenizer_from_option(
    config: SpatialConfig, modality: str, value: Any, kind: str
) -> PatchTokenizer | VQTokenizer | None:
    """The tokenizer an option names: None, a folder written by `save_pretrained`, or a config dict.

    A folder is loaded (weights included) and recorded in `config` as its configuration dict with
    `record_option`; a dict (`{"tokenizer_type": kind, **get_config()}`) builds the tokenizer with
    fresh weights, which `SpatialModel.from_pretrained` then overwrites with the saved ones.
    """
    if value is None:
        return None
    where = f"head_options['tokenizer'] of {modality!r}"
    if isinstance(value, str | os.PathLike):
        tokenizer = load_tokenizer(value)
        if tokenizer.tokenizer_type != kind:
            raise ValueError(
                f"{where}: expected a {kind!r} tokenizer, {value} holds a {tokenizer.tokenizer_type!r} one"
            )
        record_option(config, modality, "tokenizer", {"tokenizer_type": kind, **tokenizer.get_config()})
        return tokenizer
    if isinstance(value, Mapping):
        spec = dict(value)
        found = spec.pop("tokenizer_type", None)
        if found != kind:
            raise ValueError(f"{where}: expected a config with tokenizer_type={kind!r}, got {found!r}")
        return build_tokenizer(kind, **spec)
    raise TypeError(f"{where}: expected a folder path or a config dict, got {type(value).__name__}")


#: Options every tokenizer-based head (flow, discrete) passes to its constructor as they are.
SHARED_HEAD_OPTIONS = ("width", "blocks", "num_heads", "mlp_ratio")


def head_arguments(
    config: SpatialConfig, modality: str, opts: Mapping[str, Any], *names: str
) -> dict[str, Any]:
    """Constructor keyword arguments a tokenizer-based head shares: the modality, output size and
    codec (`opts['codec']` over the modality's defaults), the `SHARED_HEAD_OPTIONS`, and the options
    `names` passed as they are."""
    spec = config.modality(modality)
    codec = spec.build_codec(opts["codec"], num_classes=config.num_classes, depth_mode=config.depth_mode)
    options = {name: opts[name] for name in (*SHARED_HEAD_OPTIONS, *names)}
    return {"modality": spec, "output_size": config.output_size, "codec": codec, **options}


def check_width(width: int, num_heads: int) -> None:
    """ValueError unless a transformer `width` is a multiple of 4 (2-D sin-cos positions) and of
    `num_heads`."""
    if width % num_heads or width % 4:
        raise ValueError(f"width: expected a multiple of 4 and of num_heads={num_heads}, got {width}")
