"""Registry of auxiliary modalities: a name -> a codec factory (or a ready codec).

Built-ins: "depth" (``DepthCodec``), "segmentation" (``SegmentationCodec``), "instance"
(``SegmentationCodec`` with a generated palette for instance ids) and "normals" (``NormalsCodec``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cooper_lib.modalities.base import ModalityCodec
from cooper_lib.modalities.depth import DepthCodec
from cooper_lib.modalities.normals import NormalsCodec
from cooper_lib.modalities.segmentation import SegmentationCodec

__all__ = ["available_modalities", "get_codec", "register_modality"]

CodecFactory = Callable[..., ModalityCodec]

_REGISTRY: dict[str, CodecFactory | ModalityCodec] = {}


def _is_codec(obj: object) -> bool:
    return all(callable(getattr(obj, method, None)) for method in ("encode", "decode"))


def register_modality(
    name: str, factory_or_codec: CodecFactory | ModalityCodec, *, overwrite: bool = False
) -> None:
    """Make a modality available under ``name``.

    Args:
        name: registry key, e.g. "depth" or "albedo".
        factory_or_codec: a callable returning a codec from keyword arguments (a codec class
            works), or a codec object (anything with ``encode`` and ``decode``) served as is.
        overwrite: replace an existing entry instead of refusing.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    if not (_is_codec(factory_or_codec) or callable(factory_or_codec)):
        raise TypeError(
            f"factory_or_codec: expected a codec (with encode/decode) or a callable returning one, "
            f"got {type(factory_or_codec).__name__}"
        )
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"name: modality {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory_or_codec


def get_codec(name: str, **kwargs: Any) -> ModalityCodec:
    """The codec registered as ``name``, built with ``kwargs`` when it was registered as a factory."""
    if name not in _REGISTRY:
        raise ValueError(f"name: unknown modality {name!r}; available: {available_modalities()}")
    entry = _REGISTRY[name]
    if _is_codec(entry) and not isinstance(entry, type):
        if kwargs:
            raise TypeError(
                f"modality {name!r} was registered as a ready codec; it takes no arguments, got {sorted(kwargs)}"
            )
        return entry
    codec = entry(**kwargs)
    if not _is_codec(codec):
        raise TypeError(f"the factory for modality {name!r} returned {type(codec).__name__}, not a codec")
    return codec


def available_modalities() -> list[str]:
    """Registered modality names, sorted."""
    return sorted(_REGISTRY)


def _instance_codec(**kwargs: Any) -> SegmentationCodec:
    """Instance ids 0..254 (255 = ignore) with a generated palette, unless overridden."""
    if kwargs.pop("instance", True) is not True:
        raise ValueError("instance: the 'instance' modality always has instance=True")
    kwargs.setdefault("palette", "auto")
    kwargs.setdefault("num_classes", 255)
    return SegmentationCodec(instance=True, **kwargs)


register_modality("depth", DepthCodec)
register_modality("segmentation", SegmentationCodec)
register_modality("instance", _instance_codec)
register_modality("normals", NormalsCodec)
