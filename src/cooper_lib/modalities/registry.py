"""The one registry of auxiliary modalities: a name -> its `Modality`.

Built-ins: "depth" (`DepthModality`), "segmentation" (`SegmentationModality`), "normals"
(`NormalsModality`) and "instance" (`InstanceModality`, codec only: it has no COOPER tags).
A user modality is one `Modality` (sub)class instance and one ``register_modality(modality)`` call.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from cooper_lib.modalities.base import ModalityCodec
from cooper_lib.modalities.depth import DepthModality
from cooper_lib.modalities.modality import Modality
from cooper_lib.modalities.normals import NormalsModality
from cooper_lib.modalities.segmentation import InstanceModality, SegmentationModality

__all__ = ["available_modalities", "get_codec", "get_modality", "register_modality", "tags_only_modality"]

CodecFactory = Callable[..., ModalityCodec]

_REGISTRY: dict[str, Modality] = {}

#: The modality whose behaviour a name known only from a config's ``tags`` gets: configs saved
#: before modalities were objects treated such names as one-channel depth-like maps.
LEGACY_TAGS_ONLY = "depth"


def register_modality(
    modality: Modality | str,
    factory_or_codec: CodecFactory | ModalityCodec | None = None,
    *,
    overwrite: bool = False,
) -> Modality:
    """Make a modality available under its name; returns the registered `Modality`.

    ``register_modality(modality)`` is the form to use. The older codec-only form
    ``register_modality(name, factory_or_codec)`` still works: it wraps the codec (or codec
    factory) into a base `Modality` (a one-channel float map without tags; give the config
    ``tags`` to attach it).

    Args:
        modality: a `Modality`, or a name (with ``factory_or_codec``).
        factory_or_codec: with a name only: a callable returning a codec from keyword arguments (a
            codec class works), or a codec object served as is.
        overwrite: replace an existing entry instead of refusing.
    """
    if isinstance(modality, Modality):
        if factory_or_codec is not None:
            raise TypeError("factory_or_codec: give it only with a name, not with a Modality")
    elif isinstance(modality, str):
        if factory_or_codec is None:
            raise TypeError(
                f"factory_or_codec: registering {modality!r} by name needs a codec or codec factory; "
                "or pass a Modality object"
            )
        if not (callable(factory_or_codec) or hasattr(factory_or_codec, "encode")):
            raise TypeError(
                "factory_or_codec: expected a codec (with encode/decode) or a callable returning one, "
                f"got {type(factory_or_codec).__name__}"
            )
        modality = Modality(modality, factory_or_codec)
    else:
        raise TypeError(f"modality: expected a Modality or a name, got {type(modality).__name__}")
    if modality.name in _REGISTRY and not overwrite:
        raise ValueError(
            f"name: modality {modality.name!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[modality.name] = modality
    return modality


def get_modality(name: str) -> Modality:
    """The registered `Modality` called ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"name: unknown modality {name!r}; available: {available_modalities()}")
    return _REGISTRY[name]


def tags_only_modality(name: str) -> Modality:
    """The modality of a name a config defines only through ``tags`` (not registered).

    Configs saved before modalities were objects attached such names as depth-like maps; they keep
    that behaviour (a copy of `LEGACY_TAGS_ONLY` under ``name``). Register a `Modality` instead.
    """
    modality = copy.copy(get_modality(LEGACY_TAGS_ONLY))
    modality.name = name
    modality.metric_names = tuple(f"{name}/{m.split('/', 1)[-1]}" for m in modality.metric_names)
    return modality


def get_codec(name: str, **kwargs: Any) -> ModalityCodec:
    """The codec of modality ``name``, built with ``kwargs`` when registered as a factory.

    Example:
        >>> import torch
        >>> codec = get_codec("depth", preset="nyu")  # COOPER's NYU range, 0.001-10 m
        >>> image = codec.encode(torch.full((4, 4), 2.5))  # the RGB pseudo-image a model sees
        >>> tuple(image.shape), round(float(codec.decode(image).value[0, 0]), 2)
        ((3, 4, 4), 2.5)
    """
    return get_modality(name).codec(**kwargs)


def available_modalities() -> list[str]:
    """Registered modality names, sorted."""
    return sorted(_REGISTRY)


register_modality(DepthModality())
register_modality(SegmentationModality())
register_modality(InstanceModality())
register_modality(NormalsModality())
