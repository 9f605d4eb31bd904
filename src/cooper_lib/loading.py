"""Loading a trained model folder: the backbone it names, its heads, and the backbone weights that trained.

A model folder is what `SpatialModel.save_pretrained` writes (`cooper_lib.folder` lists the
files); cooper-lib's trainers write the same folders (`cooper_lib.training.weights`). Training and
evaluation both read them through this module, which sits just above `cooper_lib.model` so neither
has to import the other; the reading itself is `SpatialModel.from_pretrained`'s, one path for all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from cooper_lib import folder
from cooper_lib.folder import (
    BACKBONE_WEIGHTS,
    DTYPES,
    TRAINABLE_NAME,
    load_backbone,
    looks_local,
    require_local,
)
from cooper_lib.model import SpatialModel
from cooper_lib.serialization import read_json

__all__ = [
    "BACKBONE_WEIGHTS",
    "DTYPES",
    "TRAINABLE_NAME",
    "inject_lora",
    "load_backbone",
    "looks_local",
    "require_local",
    "load_trained_folder",
    "load_trained_model",
    "merge_lora",
    "trained_folder_info",
]


def inject_lora(model: SpatialModel, settings: dict[str, Any]) -> Any:
    """Add LoRA adapters (PEFT) to the backbone in place; returns PEFT's `LoraModel` handle."""
    return folder.inject_lora(model.adapter.model, settings)


def merge_lora(model: SpatialModel) -> None:
    """Fold injected LoRA weights into the base layers and remove the adapters (PEFT's merge).

    The merged weights then count as trained backbone weights: `save_pretrained` writes them."""
    names = {n for n, p in model.backbone.named_parameters() if "lora_" in n}
    folder.merge_lora(model.adapter.model)
    model._loaded_names |= _base_layers(names)


def _base_layers(lora_names: set[str]) -> set[str]:
    """The weight names of the layers LoRA was merged into (``...q_proj.lora_A.default.weight`` -> ``...q_proj.weight``)."""
    return {name.split(".lora_")[0] + ".weight" for name in lora_names}


def trained_folder_info(directory: str | Path) -> dict[str, Any]:
    """The ``trainable.json`` of a trainer's model folder (backbone, dtype, llm mode, LoRA settings)."""
    info_path = Path(directory) / TRAINABLE_NAME
    if not info_path.is_file():
        raise FileNotFoundError(
            f"{info_path}: missing; expected a model folder written by a cooper-lib trainer"
        )
    return read_json(info_path, "trainable.json")


def load_trained_model(
    directory: str | Path, backbone: nn.Module, processor: Any, *, merge: bool = False
) -> SpatialModel:
    """Re-attach a model folder's heads to `backbone` and load its trained weights.

    Args:
        directory: a model folder (a trainer checkpoint's ``model/`` or ``final/``, or any
            `save_pretrained` folder).
        backbone: the backbone the folder was trained on.
        processor: its processor.
        merge: fold LoRA weights into the base layers (what a following stage starts from).
    """
    spatial = SpatialModel.from_pretrained(backbone, directory, processor)
    if merge and spatial.has_lora():
        merge_lora(spatial)
    return spatial


def load_trained_folder(directory: str | Path) -> SpatialModel:
    """A model folder rebuilt on the backbone it records (LoRA folded in): what evaluation and a
    following training stage start from."""
    spatial = SpatialModel.from_pretrained(directory)
    if spatial.has_lora():
        merge_lora(spatial)
    return spatial
