"""Registry of backbone adapters, keyed by `config.model_type` (timm's `create_model` pattern)."""

from __future__ import annotations

from torch import nn

from cooper_lib.backbones.base import BackboneAdapter, BackboneNotSupportedError, unwrap_model

_ADAPTERS: dict[str, type[BackboneAdapter]] = {}


def register_adapter(cls: type[BackboneAdapter]) -> type[BackboneAdapter]:
    """Class decorator: serve every `model_type` in `cls.model_types` with `cls`."""
    if not cls.model_types:
        raise ValueError(f"adapter {cls.__name__}: model_types is empty; expected at least one model_type")
    for model_type in cls.model_types:
        if model_type in _ADAPTERS and _ADAPTERS[model_type] is not cls:
            raise ValueError(
                f"model_type {model_type!r} is already served by {_ADAPTERS[model_type].__name__}; "
                f"cannot register {cls.__name__} for it too"
            )
        _ADAPTERS[model_type] = cls
    return cls


def adapter_for(model: nn.Module) -> BackboneAdapter:
    """The adapter for `model`: its family's, or the generic one when the generic accessors work.

    Raises:
        TypeError: `model` is not a torch module.
        BackboneNotSupportedError: naming the model type, what was missing and the supported
            families; also for a module that is no transformers model (no ``config``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model: expected a transformers MLLM (a torch.nn.Module), got {type(model).__name__}"
        )
    base = unwrap_model(model)
    families = ", ".join(f for f, _ in supported_families())
    if getattr(base, "config", None) is None:
        raise BackboneNotSupportedError(
            f"model: expected a transformers MLLM (*ForConditionalGeneration / AutoModelForImageTextToText), "
            f"got {type(base).__name__}, which has no transformers config. Supported families: {families}."
        )
    model_type = getattr(base.config, "model_type", None)
    cls = _ADAPTERS.get(model_type, BackboneAdapter)
    try:
        return cls(base)
    except BackboneNotSupportedError as error:
        raise BackboneNotSupportedError(f"{error} Supported families: {families}.") from None


def supported_families() -> list[tuple[str, tuple[str, ...]]]:
    """(family, model_types) for every registered adapter, in registration order."""
    seen: dict[str, tuple[str, ...]] = {}
    for cls in _ADAPTERS.values():
        seen.setdefault(cls.family, cls.model_types)
    return list(seen.items())
