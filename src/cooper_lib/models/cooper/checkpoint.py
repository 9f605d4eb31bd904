"""Reading and writing BAGEL / COOPER release folders, key for key, without a full fp32 copy.

A release folder holds `llm_config.json`, `vit_config.json`, the main weights (`ema.safetensors`,
or `model.safetensors` for COOPER's RL checkpoint, either possibly sharded with a
`*.safetensors.index.json`) and `ae.safetensors` (the FLUX autoencoder); tokenizer files are not
needed. The rules BAGEL's own loader applies are applied here:
- `vit_config.json` counts one layer more than is stored (27 for so400m; BAGEL uses the
  second-to-last layer's output and drops the last), and its 2-D RoPE flag is forced off;
- q/k norms, untied embeddings and the two-expert layer are forced whatever `llm_config.json` says;
- the autoencoder's widths are read off the shapes in `ae.safetensors`;
- the two sin-cos tables (`vit_pos_embed.pos_embed`, `latent_pos_embed.pos_embed`) may be stored;
  they are recomputed, and a stored table must match the recomputed one (else the layout differs).
The functions take the model class (`read_release`) or instance (`save_release`), so this module
does not import `modeling`; `CooperModel.from_pretrained` / `save_pretrained` are the public entry.
Every key and shape is checked before any weight is read; a missing, unexpected or misshapen key is
a ValueError naming it. The model is built on the meta device and each tensor is read from the
file, cast if asked, and assigned in place, so peak memory is the model at its final dtype plus
one tensor.

`cooper_model_config.json` (written by `save_release`) is cooper-lib's own addition: when present it
supplies what no release file records (token ids, autoencoder scale and shift, timestep shift).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from cooper_lib.models.cooper.autoencoder import autoencoder_config_from_shapes
from cooper_lib.models.cooper.config import CONFIG_NAME, CooperConfig, LLMConfig, ViTConfig
from cooper_lib.models.cooper.embeddings import sincos_2d
from cooper_lib.models.cooper.mot import Qwen2RotaryEmbedding

__all__ = ["read_release", "read_weights", "save_release"]

ModelT = TypeVar("ModelT", bound=nn.Module)

MAIN_NAMES = ("ema.safetensors", "model.safetensors")
AE_NAME = "ae.safetensors"
TABLES = {
    "vit_pos_embed.pos_embed": "vit_max_num_patch_per_side",
    "latent_pos_embed.pos_embed": "max_latent_size",
}
_VIT_POS = "vit_model.vision_model.embeddings.position_embedding.weight"
_LLM_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "rms_norm_eps",
    "max_position_embeddings",
    "hidden_act",
)
_VIT_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "patch_size",
    "num_channels",
    "layer_norm_eps",
    "hidden_act",
)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"folder: expected {path.name} in {path.parent}, not found")
    return json.loads(path.read_text())


def _main_files(folder: Path, weights: str | None) -> list[Path]:
    """The main weight files: one file, or the shards its index names."""
    names = (weights,) if weights else MAIN_NAMES
    for name in names:
        if (folder / name).is_file():
            return [folder / name]
        index = folder / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [folder / s for s in shards]
    raise FileNotFoundError(
        f"folder: expected one of {[n for n in names]} (or its .index.json) in {folder}, found none"
    )


def _shapes(files: list[Path]) -> dict[str, tuple[Path, tuple[int, ...]]]:
    out: dict[str, tuple[Path, tuple[int, ...]]] = {}
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(
                f"weights: shard {path.name} listed in the index is missing from {path.parent}"
            )
        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                if key in out:
                    raise ValueError(
                        f"weights: key {key!r} stored twice ({out[key][0].name} and {path.name})"
                    )
                out[key] = (path, tuple(f.get_slice(key).get_shape()))
    return out


def _llm_config(data: dict) -> LLMConfig:
    theta = data.get("rope_theta") or (data.get("rope_parameters") or {}).get("rope_theta") or 1_000_000.0
    return LLMConfig(**{k: data[k] for k in _LLM_FIELDS if k in data}, rope_theta=float(theta))


def _vit_config(data: dict) -> ViTConfig:
    if "num_hidden_layers" not in data:
        raise ValueError("vit_config.json: expected a num_hidden_layers field, not found")
    return ViTConfig(
        **{k: data[k] for k in _VIT_FIELDS if k in data}, num_hidden_layers=data["num_hidden_layers"] - 1
    )


def _side(rows: int, key: str) -> int:
    side = math.isqrt(rows)
    if side * side != rows:
        raise ValueError(f"{key}: expected a square position table (side^2 rows), got {rows} rows")
    return side


def _config_for(folder: Path, main: dict, ae: dict, overrides: dict) -> CooperConfig:
    if (folder / CONFIG_NAME).is_file():
        base = CooperConfig.load(folder / CONFIG_NAME).to_dict()
    else:
        base = CooperConfig().to_dict()
        base["llm"] = _llm_config(_read_json(folder / "llm_config.json")).__dict__
        base["vit"] = _vit_config(_read_json(folder / "vit_config.json")).__dict__
        if _VIT_POS in main:
            base["vit_max_num_patch_per_side"] = _side(main[_VIT_POS][1][0], _VIT_POS)
        if "latent_pos_embed.pos_embed" in main:
            base["max_latent_size"] = _side(
                main["latent_pos_embed.pos_embed"][1][0], "latent_pos_embed.pos_embed"
            )
        fixed = {k: base["vae"][k] for k in ("scale_factor", "shift_factor", "norm_groups")}
        fixed.update(overrides.pop("vae", {}))
        base["vae"] = autoencoder_config_from_shapes({k: s for k, (_, s) in ae.items()}, **fixed).__dict__
    base.update(overrides)
    return CooperConfig.from_dict(base)


def _check(
    expected: dict[str, torch.Size], stored: dict[str, tuple[Path, tuple[int, ...]]], prefix: str
) -> None:
    for key, (path, shape) in stored.items():
        if prefix + key not in expected:
            raise ValueError(
                f"{path.name}: unexpected key {key!r} (shape {list(shape)}): no such weight in the model"
            )
        want = tuple(expected[prefix + key])
        if shape != want:
            raise ValueError(f"{path.name}: key {key!r} has shape {list(shape)}, expected {list(want)}")
    missing = sorted(k for k in expected if k.startswith(prefix) and k[len(prefix) :] not in stored)
    if prefix == "":
        missing = [k for k in missing if not k.startswith("vae.") and k not in TABLES]
    if missing:
        where = AE_NAME if prefix else "the main weights"
        shown = ", ".join(repr(k[len(prefix) :]) for k in missing[:8])
        raise ValueError(
            f"{where}: missing {len(missing)} key(s): {shown}{' ...' if len(missing) > 8 else ''}"
        )


def _assign(model: nn.Module, key: str, tensor: torch.Tensor) -> None:
    module_path, _, name = key.rpartition(".")
    module = model.get_submodule(module_path)
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(tensor, requires_grad=old.requires_grad))
    else:
        module._buffers[name] = tensor


def _load_files(model: nn.Module, stored: dict, prefix: str, dtype, device) -> None:
    by_file: dict[Path, list[str]] = {}
    for key, (path, _) in stored.items():
        by_file.setdefault(path, []).append(key)
    for path, keys in by_file.items():
        with safe_open(path, framework="pt", device=str(device)) as f:
            for key in keys:
                tensor = f.get_tensor(key)
                if dtype is not None:
                    tensor = tensor.to(dtype)
                if key in TABLES and not prefix:
                    _check_table(model, key, tensor, path)
                else:
                    _assign(model, prefix + key, tensor)


def _check_table(model: nn.Module, key: str, stored: torch.Tensor, path: Path) -> None:
    want = sincos_2d(model.config.llm.hidden_size, getattr(model.config, TABLES[key]))
    err = (stored.float().cpu() - want).abs().max().item()
    if err > 1e-2:
        raise ValueError(
            f"{path.name}: key {key!r} differs from the 2-D sin-cos table by {err:.3g} (expected < 1e-2)"
        )


def _materialise_buffers(model: nn.Module, device) -> None:
    """Recompute the fixed buffers a meta-device build left empty."""
    model.vit_pos_embed.reset(device)
    model.latent_pos_embed.reset(device)
    lm = model.language_model.model
    lm.rotary_emb = Qwen2RotaryEmbedding(model.config.llm.to_qwen2()).to(device)
    leftover = [n for n, b in model.named_buffers() if b.is_meta] + [
        n for n, p in model.named_parameters() if p.is_meta
    ]
    if leftover:
        raise ValueError(f"model: tensors left unloaded after reading the checkpoint: {leftover[:8]}")


def read_release(
    model_cls: Callable[[CooperConfig], ModelT],
    folder: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    weights: str | None = None,
    **overrides: Any,
) -> ModelT:
    """Build `model_cls(config)` (a `CooperModel`) from a release folder.

    Args:
        model_cls: the model class, called with the `CooperConfig` read from the folder.
        folder: directory with `llm_config.json`, `vit_config.json`, the main weights and `ae.safetensors`.
        dtype: cast every tensor to this dtype while reading (default: keep each file's dtype).
        device: where the tensors are read to.
        weights: the main weights' file name (default: `ema.safetensors`, else `model.safetensors`).
        **overrides: `CooperConfig` fields no release file records (e.g. token ids of a small
            vocabulary); `vae={...}` sets the autoencoder's scale, shift or norm groups.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder: expected a directory, got {folder}")
    main = _shapes(_main_files(folder, weights))
    if not (folder / AE_NAME).is_file():
        raise FileNotFoundError(f"folder: expected {AE_NAME} in {folder}, not found")
    ae = _shapes([folder / AE_NAME])
    config = _config_for(folder, main, ae, dict(overrides))
    with torch.device("meta"):
        model = model_cls(config)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    expected.update({key: model.get_buffer(key).shape for key in TABLES})  # optional, recomputed
    _check(expected, main, "")
    _check(expected, ae, "vae.")
    _load_files(model, main, "", dtype, device)
    _load_files(model, ae, "vae.", dtype, device)
    _materialise_buffers(model, device)
    return model


def read_weights(
    folder: str | Path, names: Iterable[str], *, weights: str | None = None
) -> dict[str, torch.Tensor]:
    """The tensors `names` (`CooperModel` parameter names, ``vae.*`` from `ae.safetensors`) of a
    release folder, read one by one (no other tensor is loaded); a name not stored is a ValueError."""
    folder = Path(folder)
    stored = _shapes(_main_files(folder, weights))
    stored.update({f"vae.{k}": v for k, v in _shapes([folder / AE_NAME]).items()})
    out = {}
    for name in names:
        if name not in stored:
            raise ValueError(f"{folder}: no tensor {name!r} in the release files")
        path = stored[name][0]
        with safe_open(str(path), framework="pt") as f:
            out[name] = f.get_tensor(name.removeprefix("vae.") if path.name == AE_NAME else name)
    return out


def _llm_json(cfg: CooperConfig) -> dict:
    data = {k: getattr(cfg.llm, k) for k in _LLM_FIELDS}
    return {
        **data,
        "rope_theta": cfg.llm.rope_theta,
        "qk_norm": True,
        "tie_word_embeddings": False,
        "layer_module": "Qwen2MoTDecoderLayer",
        "model_type": "qwen2",
    }


def _vit_json(cfg: CooperConfig) -> dict:
    data = {k: getattr(cfg.vit, k) for k in _VIT_FIELDS}
    return {
        **data,
        "num_hidden_layers": cfg.vit.num_hidden_layers + 1,
        "rope": False,
        "image_size": cfg.vit.patch_size * cfg.vit_max_num_patch_per_side,
        "model_type": "siglip_vision_model",
    }


def _write_weights(
    tensors: dict[str, torch.Tensor], folder: Path, name: str, max_shard_bytes: int | None
) -> None:
    if max_shard_bytes is None:
        save_file(tensors, folder / name, metadata={"format": "pt"})
        return
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = t
        size += nbytes
    stem = name.removesuffix(".safetensors")
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        shard_name = f"{stem}-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, folder / shard_name, metadata={"format": "pt"})
        weight_map.update({k: shard_name for k in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / f"{name}.index.json").write_text(json.dumps(index, indent=2) + "\n")


def save_release(
    model: nn.Module,
    folder: str | Path,
    *,
    max_shard_bytes: int | None = None,
    weights: str = "ema.safetensors",
    state: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Write `model` in the release layout (plus `cooper_model_config.json`); safetensors only.

    The main file holds every weight but the autoencoder's, with both sin-cos tables as the
    release stores them; `max_shard_bytes` splits it into shards with an index. `state` (e.g. a
    trainer's gathered or EMA weights) replaces the model's own tensors of those names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    own = model.state_dict()
    unknown = sorted(set(state or {}) - set(own))
    if unknown:
        raise ValueError(f"state: keys {unknown[:5]} are not weights of the model")
    state = {k: v.detach().contiguous() for k, v in {**own, **(state or {})}.items()}
    main = {k: v for k, v in state.items() if not k.startswith("vae.")}
    main["vit_pos_embed.pos_embed"] = model.vit_pos_embed.pos_embed.detach().contiguous()
    main["latent_pos_embed.pos_embed"] = model.latent_pos_embed.pos_embed.detach().contiguous()
    ae = {k.removeprefix("vae."): v for k, v in state.items() if k.startswith("vae.")}
    (folder / "llm_config.json").write_text(json.dumps(_llm_json(cfg), indent=2) + "\n")
    (folder / "vit_config.json").write_text(json.dumps(_vit_json(cfg), indent=2) + "\n")
    cfg.save(folder / CONFIG_NAME)
    _write_weights(main, folder, weights, max_shard_bytes)
    save_file(ae, folder / AE_NAME, metadata={"format": "pt"})
