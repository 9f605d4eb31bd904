"""Find the parts of any Hugging Face MLLM: `adapter_for(model)` returns its `BackboneAdapter`."""

from cooper_lib.backbones import gemma3, idefics3, internvl, llava, mllama, paligemma, qwen_vl  # noqa: F401
from cooper_lib.backbones.base import BackboneAdapter, BackboneNotSupportedError, VisualLayout, unwrap_model
from cooper_lib.backbones.registry import adapter_for, register_adapter, supported_families

__all__ = [
    "BackboneAdapter",
    "BackboneNotSupportedError",
    "VisualLayout",
    "adapter_for",
    "register_adapter",
    "supported_families",
    "unwrap_model",
]
