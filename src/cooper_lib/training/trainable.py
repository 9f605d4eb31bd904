"""Which weights train: the vision tower frozen or not, the language model frozen, LoRA or full.

The spatial additions (queries, heads) always train. The embedding rows of the added tokens (tags,
query token) must train too, or the model could never emit a tag: when the language model is not
trained in full, the embedding matrices stay trainable under `SpatialModel.set_backbone_trainable`'s
gradient mask (the same one `add_spatial_heads` sets by default). LoRA is PEFT's `LoraModel`,
injected in place into the language model's linear layers, so `SpatialModel` keeps working on the
same module tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from cooper_lib.loading import inject_lora
from cooper_lib.model import SpatialModel
from cooper_lib.training.config import ModelConfig

_ROW_MASKED = "_cooper_row_masked"


@dataclass(frozen=True)
class TrainableSummary:
    """What `configure_trainable` left trainable: parameter counts, the row-masked matrices, and
    the LoRA settings it injected (None without LoRA), as a model folder records them."""

    trainable: int
    total: int
    row_masked: tuple[str, ...]
    lora: dict[str, Any] | None = None


def lora_config_dict(config: ModelConfig, model: SpatialModel) -> dict[str, Any]:
    """The LoRA settings of `config` for `model` (target module names resolved; call before injecting)."""
    return {
        "r": config.lora_r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout,
        "target_modules": lora_targets(model, config.lora_targets),
    }


def lora_targets(model: SpatialModel, suffixes: list[str] | None = None) -> list[str]:
    """Names (relative to the backbone's transformers model) of the language model's Linear layers,
    optionally only those ending in one of `suffixes`."""
    root = model.adapter.model
    language = model.adapter.language_model()
    prefix = next(name for name, module in root.named_modules() if module is language)
    names = [
        f"{prefix}.{name}" if prefix else name
        for name, module in language.named_modules()
        if isinstance(module, nn.Linear) and (not suffixes or any(name.endswith(s) for s in suffixes))
    ]
    if not names:
        raise ValueError(f"lora_targets: no Linear layer of the language model matches {suffixes}")
    return names


def configure_trainable(model: SpatialModel, config: ModelConfig) -> TrainableSummary:
    """Set `requires_grad` everywhere according to `config` (llm mode, vision tower, LoRA).

    Raises:
        ValueError: called twice on one model (the row masks and LoRA adapters would stack).
    """
    if getattr(model, _ROW_MASKED, None) is not None:
        raise ValueError("model: configure_trainable was already applied to this model")
    config.validate()
    backbone = model.backbone
    model.set_backbone_trainable(config.llm == "full")
    vision = model.adapter.vision_tower()
    lora = None
    if config.llm == "lora":
        lora = lora_config_dict(config, model)
        inject_lora(model, lora)
        for name, param in backbone.named_parameters():
            param.requires_grad_("lora_" in name)
        for weight in model.row_masked():
            weight.requires_grad_(True)
    if vision is not None:
        vision.requires_grad_(not config.freeze_vision)
    model.queries.requires_grad_(True)
    model.heads.requires_grad_(True)
    masked = model.row_masked()
    names = {id(p): n for n, p in model.named_parameters()}
    row_masked = tuple(names[id(w)] for w in masked)
    object.__setattr__(model, _ROW_MASKED, row_masked)
    params = list(model.parameters())
    return TrainableSummary(
        trainable=sum(p.numel() for p in params if p.requires_grad),
        total=sum(p.numel() for p in params),
        row_masked=row_masked,
        lora=lora,
    )


def row_masked_names(model: SpatialModel) -> tuple[str, ...]:
    """Names of the matrices of which only the added-token rows train (empty before `configure_trainable`)."""
    return getattr(model, _ROW_MASKED, None) or ()


def parameter_groups(model: SpatialModel, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on trainable matrices, none on biases, norms, embeddings and queries."""
    no_decay_ids = {id(w) for w in model.embedding_matrices()}
    no_decay_ids |= {id(p) for p in model.queries.parameters()}
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or id(param) in no_decay_ids else decay).append(param)
    groups = [{"params": no_decay, "weight_decay": 0.0}]
    if decay:
        groups.insert(0, {"params": decay, "weight_decay": weight_decay})
    return groups
