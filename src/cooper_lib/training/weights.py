"""Trained model folders: building the model a config names, saving and loading what training changed.

A trainer's model folder is the folder `SpatialModel.save_pretrained` writes (`cooper_lib.folder`:
config, additions, base model record, LoRA as a PEFT adapter, other trained backbone weights as
``backbone.safetensors``), written from a gathered state instead of the live parameters, plus
``trainable.json`` (llm mode, vision freezing, LoRA settings, the backbone spec) for resuming and
for a following stage. `SpatialModel.from_pretrained` (or `cooper_lib.loading.load_trained_model`)
reads it back.

The weights are gathered with `torch.distributed.checkpoint.state_dict` (full state, CPU, only
trainable parameters), which unwraps DDP and gathers FSDP shards, so one code path writes a model
from a single process, DDP or FSDP run.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)

from cooper_lib import folder
from cooper_lib.config import SpatialConfig
from cooper_lib.loading import BACKBONE_WEIGHTS, TRAINABLE_NAME, load_backbone, load_trained_model
from cooper_lib.model import WEIGHTS_NAME, SpatialModel
from cooper_lib.training.config import ModelConfig
from cooper_lib.training.trainable import row_masked_names


def build_model(config: ModelConfig) -> SpatialModel:
    """The `SpatialModel` a `ModelConfig` describes (trainability is set later, by the trainer).

    ``backbone: tiny:<family>`` builds an offline tiny model; anything else loads a transformers
    `AutoModelForImageTextToText` and its `AutoProcessor`. With ``init_from`` the heads and trained
    weights of an earlier stage are loaded (LoRA folded into the base weights); otherwise fresh
    heads are attached with ``add_spatial_heads(**spatial)``.
    """
    from cooper_lib.attach import add_spatial_heads

    config.validate()
    backbone, processor = load_backbone(
        config.backbone,
        config.dtype,
        revision=config.revision,
        attn_implementation=config.attn_implementation,
        quantization=config.quantization,
    )
    if config.init_from:
        model = load_trained_model(config.init_from, backbone, processor, merge=True)
        return apply_stage_settings(model, config.spatial, config.init_from)
    return add_spatial_heads(backbone, processor, **config.spatial)


#: `SpatialConfig` fields a stage may change on a model it loads (``model.init_from``): how its maps
#: are shown and how its losses are weighted. The rest shape the heads and stay as saved.
STAGE_SETTINGS = ("depth_display_range", "aux_loss_weights", "lm_loss_weight", "silog_lambda", "dice_weight")


def apply_stage_settings(model: SpatialModel, spatial: dict[str, Any], source: str) -> SpatialModel:
    """Set on `model` (loaded from `source`) the `STAGE_SETTINGS` that ``model.spatial`` gives;
    the model saved after the stage keeps them. A key that would reshape the heads must repeat the
    saved value (a stage config may restate it), else ValueError: never ignored in silence."""
    if not spatial:
        return model
    from cooper_lib.attach import add_spatial_heads

    current = model.config
    names = {f.name for f in fields(SpatialConfig)}
    attach_only = sorted(set(spatial) & set(inspect.signature(add_spatial_heads).parameters) - names)
    if attach_only:
        raise ValueError(
            f"model.spatial: {attach_only} apply only when heads are attached; model.init_from={source!r} "
            "loads its heads (leave them out)"
        )
    unknown = sorted(set(spatial) - names)
    if unknown:
        raise ValueError(
            f"model.spatial: unknown fields {unknown}; expected SpatialConfig fields {sorted(names)}"
        )
    wanted = SpatialConfig.from_dict({**current.to_dict(), **spatial})
    for key in spatial:
        value = getattr(wanted, key)
        if value == getattr(current, key):
            continue
        if key not in STAGE_SETTINGS:
            raise ValueError(
                f"model.spatial.{key}: the model of model.init_from={source!r} has {getattr(current, key)!r}, "
                f"got {value!r}; a loaded model keeps its heads' shape (a stage may change {list(STAGE_SETTINGS)})"
            )
        setattr(current, key, value)
    for head in model.heads.values():
        head.apply_settings(current)
    return model


def seeded_backbone(config: ModelConfig, seed: int) -> str:
    """`config.backbone` with the seed of a tiny backbone's random weights written into the spec.

    A ``tiny:`` spec without ``seed=`` gets `seed` (a run's ``run.seed``), or with ``init_from``
    the seed recorded by the earlier stage (its untrained weights must be the same); any other
    backbone, or a spec that names its seed, comes back unchanged.
    """
    from cooper_lib.backbones.tiny import parse_tiny_spec, tiny_spec

    if not config.backbone.startswith("tiny:"):
        return config.backbone
    family, spec_seed, overrides = parse_tiny_spec(config.backbone)
    if spec_seed is not None:
        return config.backbone
    info = Path(config.init_from or "") / TRAINABLE_NAME
    if config.init_from and info.is_file():
        recorded = json.loads(info.read_text())["backbone"]
        spec_seed = parse_tiny_spec(recorded)[1] if recorded.startswith("tiny:") else None
        seed = 0 if spec_seed is None else spec_seed  # folders from before seeded specs used 0
    return tiny_spec(family, seed=seed, **overrides)


def trainable_names(model: SpatialModel) -> list[str]:
    """Names of `model`'s trainable parameters (shared tensors counted once)."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def saved_names(model: SpatialModel) -> set[str]:
    """Names of the parameters a stage's model folder holds: the trainable ones and the backbone
    weights of the folder the stage started from (`SpatialModel.loaded_backbone_names`), which the
    base model the new folder records does not hold, frozen or not. Without them a stage that
    froze the language model (or put LoRA on it) after a full fine-tune saved the base model's.
    A `CooperModel` (typed loosely here) saves its trainable parameters only."""
    trainable = set(trainable_names(model))
    if not isinstance(model, SpatialModel):
        return trainable
    return trainable | {f"backbone.{name}" for name in model.loaded_backbone_names()}


def gather_trainable_state(
    model: nn.Module, spatial: SpatialModel, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Full CPU copies of the parameters a model folder holds (`saved_names`) of `model` (plain,
    DDP or FSDP), keyed by the parameter names of the unwrapped `spatial` (`prefix`: where
    `spatial` sits inside `model`). Every process must call it (FSDP gathers shards); under FSDP
    only rank 0 receives the tensors."""
    keep = saved_names(spatial)
    frozen_kept = bool(keep - set(trainable_names(spatial)))
    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=not frozen_kept)
    state = get_model_state_dict(model, options=options)
    if not state:
        return {}
    # cloned: on CPU the state dict may alias the live parameters, which training keeps changing
    return {
        name.removeprefix(prefix): tensor.detach().clone()
        for name, tensor in state.items()
        if name.startswith(prefix) and name.removeprefix(prefix) in keep
    }


def additions_from_state(model: SpatialModel, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What `model.addition_state_dict()` returns, read from a gathered trainable `state` instead
    of the (possibly sharded) live parameters."""
    ids = model.added_token_ids.cpu()
    out = {f"queries.{m}": state[f"queries.{m}"] for m in model.queries}
    out["query_pos"] = model.query_pos.detach().cpu()
    for key, local in model.heads.state_dict().items():
        out[f"heads.{key}"] = state.get(f"heads.{key}", local.detach().cpu())
    names = {id(p): n for n, p in model.named_parameters()}
    out["embed_tokens.rows"] = state[names[id(model.adapter.input_embeddings().weight)]][ids]
    if not model.adapter.tied_embeddings:
        out["lm_head.rows"] = state[names[id(model.adapter.output_embeddings().weight)]][ids]
    expected = set(model.addition_state_dict())
    if set(out) != expected:
        raise RuntimeError(
            f"SpatialModel's additions changed: expected keys {sorted(expected)}, built {sorted(out)}"
        )
    return {k: v.contiguous().clone() for k, v in out.items()}


def save_model(
    directory: str | Path,
    model: SpatialModel,
    state: dict[str, torch.Tensor],
    config: ModelConfig,
    lora: dict[str, Any] | None = None,
) -> Path:
    """Write a model folder (see the module docstring) from a gathered trainable `state`, atomically.
    A row-masked matrix a loaded folder held whole is saved whole."""
    masked = set(row_masked_names(model)) - {f"backbone.{n}" for n in model.loaded_backbone_names()}
    backbone = {
        name.removeprefix("backbone."): t
        for name, t in state.items()
        if name.startswith("backbone.") and name not in masked
    }
    adapter = {k: v for k, v in backbone.items() if "lora_" in k}
    others = {k: v for k, v in backbone.items() if "lora_" not in k}
    info = {
        "format": 2,
        "backbone": config.backbone,
        "dtype": config.dtype,
        "llm": config.llm,
        "freeze_vision": config.freeze_vision,
        "lora": lora if config.llm == "lora" else None,
    }
    with folder.atomic_folder(directory) as tmp:
        model.config.save(tmp)
        folder.save_tensors(additions_from_state(model, state), tmp / WEIGHTS_NAME)
        folder.write_base(tmp, model.backbone, name=config.backbone, dtype=config.dtype)
        if adapter:
            folder.save_lora_state(tmp, lora or {}, adapter, config.backbone)
        if others:
            folder.save_tensors(others, tmp / BACKBONE_WEIGHTS)
        (tmp / TRAINABLE_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return Path(directory)


def state_from_folder(
    directory: str | Path, model: nn.Module, spatial: SpatialModel, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """The trainable state of a model folder, keyed like `gather_trainable_state` (for resuming)."""
    path = Path(directory)
    additions = folder.load_tensors(path / WEIGHTS_NAME)
    backbone = folder.load_tensors(path / BACKBONE_WEIGHTS) if (path / BACKBONE_WEIGHTS).is_file() else {}
    if (path / folder.ADAPTER_WEIGHTS).is_file():
        backbone.update(folder.lora_state_from_peft(folder.load_tensors(path / folder.ADAPTER_WEIGHTS)))
    state = {f"backbone.{k}": v for k, v in backbone.items()}
    state.update({k: v for k, v in additions.items() if k.startswith(("queries.", "heads."))})
    masked = row_masked_names(spatial)
    if masked:
        current = gather_trainable_state(model, spatial, prefix)
        ids = spatial.added_token_ids.cpu()
        rows = {masked[0]: additions["embed_tokens.rows"]}
        if len(masked) > 1:
            rows[masked[1]] = additions["lm_head.rows"]
        for name, new_rows in rows.items():
            matrix = current[name]
            matrix[ids] = new_rows.to(matrix.dtype)
            state[name] = matrix
    return state


def load_state_into(
    model: nn.Module, spatial: SpatialModel, state: dict[str, torch.Tensor], prefix: str = ""
) -> None:
    """Load a trainable `state` into `model` (plain, DDP or FSDP; `spatial` sits at `prefix` in it);
    its names must be exactly the parameters a model folder of `spatial` holds (`saved_names`)."""
    expected = saved_names(spatial)
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"state: does not match the trainable parameters (missing {missing[:5]}, unexpected {unexpected[:5]}); "
            "was it saved with another llm / LoRA / freeze setting?"
        )
    prefixed = {prefix + name: tensor for name, tensor in state.items()}
    set_model_state_dict(model, prefixed, options=StateDictOptions(full_state_dict=True, strict=False))
