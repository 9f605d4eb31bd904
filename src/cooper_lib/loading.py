"""Loading a trained model folder: the backbone it names, its heads, and the backbone weights that trained.

A trainer's model folder holds what `SpatialModel.save_pretrained` writes (``cooper_config.json``,
``spatial_heads.safetensors``), plus ``backbone.safetensors`` (the backbone weights that trained:
the full language model, or LoRA's matrices) and ``trainable.json`` (llm mode, LoRA settings, the
backbone it was trained on). Training writes such folders (`cooper_lib.training.weights`);
training and evaluation both read them through this module, which sits just above
`cooper_lib.model` so neither has to import the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from cooper_lib.model import SpatialModel

BACKBONE_WEIGHTS = "backbone.safetensors"
TRAINABLE_NAME = "trainable.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_LORA = "_cooper_lora"


def load_backbone(
    name: str,
    dtype: str = "float32",
    *,
    revision: str | None = None,
    attn_implementation: str | None = None,
    quantization: str = "none",
) -> tuple[nn.Module, Any]:
    """A backbone and its processor: ``tiny:<family>[?key=value&...]`` builds an offline tiny model
    (`cooper_lib.backbones.tiny.parse_tiny_spec`; weights seeded by its ``seed``, default 0),
    anything else (a hub id or a local folder) loads `AutoModelForImageTextToText` and `AutoProcessor`
    at `revision`, with `attn_implementation`, and with ``quantization="4bit"`` as NF4 weights through
    bitsandbytes (QLoRA; needs CUDA and the ``qlora`` extra)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
    if quantization not in ("none", "4bit"):
        raise ValueError(f"quantization: expected 'none' or '4bit', got {quantization!r}")
    if name.startswith("tiny:"):
        if quantization != "none":
            raise ValueError(
                f"quantization: tiny backbones are built in memory, not quantized; got {quantization!r}"
            )
        from cooper_lib.backbones.tiny import build_from_spec

        backbone, processor = build_from_spec(name)
        return backbone.to(DTYPES[dtype]), processor
    from transformers import AutoModelForImageTextToText, AutoProcessor

    options: dict[str, Any] = {"revision": revision}
    if attn_implementation is not None:
        options["attn_implementation"] = attn_implementation
    if quantization == "4bit":
        options["quantization_config"] = _four_bit_config(DTYPES[dtype])
    backbone = AutoModelForImageTextToText.from_pretrained(name, dtype=DTYPES[dtype], **options)
    return backbone, AutoProcessor.from_pretrained(name, revision=revision)


def _four_bit_config(compute_dtype: torch.dtype) -> Any:
    """transformers' `BitsAndBytesConfig` for QLoRA (NF4, double quantization), or a clear error."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ImportError(
            "quantization='4bit' needs bitsandbytes: pip install 'cooper-lib[qlora]' (CUDA GPUs only)"
        )
    if not torch.cuda.is_available():
        raise ValueError("quantization: '4bit' (bitsandbytes NF4) needs a CUDA GPU; none is available")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if compute_dtype == torch.float32 else compute_dtype,
    )


def inject_lora(model: SpatialModel, settings: dict[str, Any]) -> Any:
    """Add LoRA adapters (PEFT) to the backbone in place; returns PEFT's `LoraModel` handle."""
    from peft import LoraConfig, LoraModel

    root = model.adapter.model
    if getattr(root, _LORA, None) is not None:
        raise ValueError("model: LoRA adapters are already injected into this backbone")
    lora = LoraModel(root, LoraConfig(**settings), "default")
    object.__setattr__(root, _LORA, lora)
    return lora


def merge_lora(model: SpatialModel) -> None:
    """Fold injected LoRA weights into the base layers and remove the adapters (PEFT's merge)."""
    root = model.adapter.model
    lora = getattr(root, _LORA, None)
    if lora is None:
        raise ValueError("model: no LoRA adapters to merge")
    lora.merge_and_unload()
    object.__setattr__(root, _LORA, None)


def trained_folder_info(directory: str | Path) -> dict[str, Any]:
    """The ``trainable.json`` of a model folder (backbone, dtype, llm mode, LoRA settings)."""
    info_path = Path(directory) / TRAINABLE_NAME
    if not info_path.is_file():
        raise FileNotFoundError(
            f"{info_path}: missing; expected a model folder written by a cooper-lib trainer"
        )
    return json.loads(info_path.read_text())


def load_trained_model(
    directory: str | Path, backbone: nn.Module, processor: Any, *, merge: bool = False
) -> SpatialModel:
    """Re-attach a model folder's heads to `backbone` and load its trained weights.

    Args:
        directory: a model folder written by a trainer (a checkpoint's ``model/`` or ``final/``).
        backbone: the backbone the folder was trained on.
        processor: its processor.
        merge: fold LoRA weights into the base layers (what a following stage starts from).
    """
    path = Path(directory)
    info = trained_folder_info(path)
    spatial = SpatialModel.from_pretrained(backbone, path, processor)
    if info.get("lora"):
        inject_lora(spatial, info["lora"])
    weights = load_file(str(path / BACKBONE_WEIGHTS))
    _, unexpected = spatial.backbone.load_state_dict(weights, strict=False)
    if unexpected:
        raise ValueError(f"{path / BACKBONE_WEIGHTS}: weights {unexpected[:5]} do not exist in this backbone")
    if merge and info.get("lora"):
        merge_lora(spatial)
    return spatial


def load_trained_folder(directory: str | Path) -> SpatialModel:
    """A model folder rebuilt on the backbone it records (LoRA folded in): what evaluation and a
    following training stage start from."""
    info = trained_folder_info(directory)
    backbone, processor = load_backbone(info["backbone"], info["dtype"])
    return load_trained_model(directory, backbone, processor, merge=True)
