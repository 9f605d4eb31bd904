"""The model folder: its files, the one atomic way to write it and the one checked way to read it.

A folder written by `SpatialModel.save_pretrained` holds:

- ``cooper_config.json``: the `SpatialConfig` (modalities, heads, added token ids, ...);
- ``spatial_heads.safetensors``: what cooper-lib added (queries, heads, added embedding rows);
- ``base_model.json``: the backbone it was built on (hub id or ``tiny:`` spec, revision, dtype);
- ``adapter_config.json`` + ``adapter_model.safetensors``: LoRA, in PEFT's own format (only when
  the backbone carries LoRA; `peft.PeftModel.from_pretrained` reads them as they are);
- ``backbone.safetensors``: backbone weights that trained outside LoRA (only when some did).

Older folders stay readable: heads-only folders without ``base_model.json`` (the backbone is then
passed in), and trainer folders whose ``trainable.json`` records LoRA settings and whose
``backbone.safetensors`` holds LoRA's matrices under their in-place names.

Every weights file is read through `load_tensors`, which rejects NaN and inf values by name.
Writing goes to a temporary folder beside the target, renamed into place at the end, so a crash
while saving over an earlier save leaves the earlier one loadable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from cooper_lib.serialization import read_json, read_safetensors

WEIGHTS_NAME = "spatial_heads.safetensors"
BACKBONE_WEIGHTS = "backbone.safetensors"
BASE_NAME = "base_model.json"
TRAINABLE_NAME = "trainable.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
CARD_NAME = "README.md"
OWN_FILES = (
    "cooper_config.json",
    WEIGHTS_NAME,
    BACKBONE_WEIGHTS,
    BASE_NAME,
    TRAINABLE_NAME,
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
)
"""Files a save may write; an earlier save's copies are dropped, other files in the folder kept."""

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_LORA = "_cooper_lora"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_PEFT_PREFIX = "base_model."


# ---------------------------------------------------------------------------- tensors
def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write `tensors` as safetensors (contiguous CPU copies; shared storage is not allowed there)."""
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata={"format": "pt"}
    )


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file of a model folder (`cooper_lib.serialization.read_safetensors`): a
    missing file is FileNotFoundError, a corrupt one or a NaN / inf in any floating tensor a
    ValueError naming the file and the tensor."""
    return read_safetensors(path)


# ---------------------------------------------------------------------------- writing
@contextmanager
def atomic_folder(directory: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `directory`; on success it replaces `directory`.

    Files of an existing `directory` that a save does not own (`OWN_FILES`) are carried over (a
    trainer's optimizer state, a model card); on any error the temporary folder is removed and
    `directory` is left as it was.
    """
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.saving-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            if not target.is_dir():
                raise ValueError(f"directory: {target} exists and is not a folder")
            for item in target.iterdir():
                if item.name not in OWN_FILES and not (tmp / item.name).exists():
                    os.replace(item, tmp / item.name)
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_base(
    directory: Path, backbone: nn.Module, *, name: str | None = None, dtype: str | None = None
) -> None:
    """Record the base model of `backbone` in ``base_model.json``: `name` (default its
    ``config._name_or_path``), revision (``config._commit_hash``) and `dtype` (default its own)."""
    config = getattr(backbone, "config", None)
    name = name or getattr(config, "_name_or_path", "") or None
    dtype = dtype or str(next(backbone.parameters()).dtype).removeprefix("torch.")
    info = {"base_model": name, "revision": getattr(config, "_commit_hash", None), "dtype": dtype}
    (directory / BASE_NAME).write_text(json.dumps(info, indent=2) + "\n")


def read_base(directory: Path) -> dict[str, Any] | None:
    """The base model a folder records: ``base_model.json``, or an old trainer's ``trainable.json``."""
    if (directory / BASE_NAME).is_file():
        return read_json(directory / BASE_NAME, "base_model.json")
    if (directory / TRAINABLE_NAME).is_file():
        info = read_json(directory / TRAINABLE_NAME, "trainable.json")
        return {"base_model": info.get("backbone"), "revision": None, "dtype": info.get("dtype", "float32")}
    return None


# ---------------------------------------------------------------------------- backbones
def looks_local(path: str | os.PathLike) -> bool:
    """Whether `path` names a local folder rather than a hub id: a path object, an existing path,
    or a string no hub id could be (absolute, ``./``, ``../``, ``~``, a backslash, two or more
    slashes, ...). A name that looks local but does not exist must be FileNotFoundError, never a
    hub lookup."""
    if isinstance(path, os.PathLike) or Path(str(path)).expanduser().exists():
        return True
    return not _HUB_ID.match(str(path))


def require_local(path: str | os.PathLike, name: str) -> None:
    """FileNotFoundError naming the argument `name` when `path` looks local but does not exist."""
    if looks_local(path) and not Path(str(path)).expanduser().exists():
        raise FileNotFoundError(f"{name}: no local folder or file at {path} (and it is no hub id)")


def load_backbone(
    name: str,
    dtype: str = "float32",
    revision: str | None = None,
    *,
    attn_implementation: str | None = None,
    quantization: str = "none",
) -> tuple[nn.Module, Any]:
    """A backbone and its processor: ``tiny:<family>[?key=value&...]`` builds an offline tiny model
    (`cooper_lib.backbones.tiny.parse_tiny_spec`; weights seeded by its ``seed``, default 0),
    anything else (a hub id or a local folder) loads `AutoModelForImageTextToText` and `AutoProcessor`
    at `revision`, with `attn_implementation`, and with ``quantization="4bit"`` as NF4 weights through
    bitsandbytes (QLoRA; needs CUDA and the ``qlora`` extra). The name is kept in
    ``config._name_or_path``, which `save_pretrained` records. A local-looking name (`looks_local`)
    that does not exist, or a hub id the hub cannot provide (not found, offline), is
    FileNotFoundError naming it."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
    if quantization not in ("none", "4bit"):
        raise ValueError(f"quantization: expected 'none' or '4bit', got {quantization!r}")
    if isinstance(name, str) and name.startswith("tiny:"):
        if quantization != "none":
            raise ValueError(
                f"quantization: tiny backbones are built in memory, not quantized; got {quantization!r}"
            )
        from cooper_lib.backbones.tiny import build_from_spec

        backbone, processor = build_from_spec(name)
        backbone.config._name_or_path = name
        return backbone.to(DTYPES[dtype]), processor
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(
            f"name: expected a hub id, a local folder or tiny:<family>, got {type(name).__name__}"
        )
    require_local(name, "name")
    from transformers import AutoModelForImageTextToText, AutoProcessor

    options: dict[str, Any] = {"revision": revision}
    if attn_implementation is not None:
        options["attn_implementation"] = attn_implementation
    if quantization == "4bit":
        options["quantization_config"] = _four_bit_config(DTYPES[dtype])
    try:
        backbone = AutoModelForImageTextToText.from_pretrained(name, dtype=DTYPES[dtype], **options)
    except OSError as err:  # huggingface_hub's not-found / offline errors
        if looks_local(name):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(
            f"name: {name!r} is no local folder, and the hub could not provide it ({first})"
        ) from err
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


# ---------------------------------------------------------------------------- LoRA
def injected_lora(root: nn.Module) -> Any:
    """The PEFT `LoraModel` injected in place into `root` by `inject_lora` (None without one)."""
    return getattr(root, _LORA, None)


def inject_lora(root: nn.Module, settings: dict[str, Any]) -> Any:
    """Add LoRA adapters (PEFT's `LoraModel`) to the transformers model `root` in place."""
    from peft import LoraConfig

    return _inject(root, LoraConfig(**settings))


def merge_lora(root: nn.Module) -> None:
    """Fold injected LoRA weights into the base layers and remove the adapters (PEFT's merge)."""
    lora = injected_lora(root)
    if lora is None:
        raise ValueError("model: no LoRA adapters to merge")
    lora.merge_and_unload()
    object.__setattr__(root, _LORA, None)


def save_lora(root: nn.Module, backbone: nn.Module, directory: Path, base: str | None) -> None:
    """Write the LoRA of `backbone` as a PEFT adapter (``adapter_config.json`` + ``adapter_model.safetensors``).

    A `peft.PeftModel` backbone saves itself (PEFT's ``save_pretrained``); LoRA injected in place
    (`inject_lora`) is written with `save_lora_state`.
    """
    from peft import PeftModel

    if isinstance(backbone, PeftModel):
        backbone.save_pretrained(str(directory))
        return
    lora = injected_lora(root)
    state = {name: p.detach() for name, p in root.named_parameters() if "lora_" in name}
    save_lora_state(directory, lora.peft_config["default"], state, base)


def save_lora_state(directory: Path, config: Any, state: dict[str, torch.Tensor], base: str | None) -> None:
    """Write LoRA matrices named as in the in-place injected model (``...q_proj.lora_A.default.weight``)
    in PEFT's adapter format: `config` (a `peft.LoraConfig` or its settings) as ``adapter_config.json``,
    the matrices keyed as `peft.PeftModel` keys them (``base_model.model.…q_proj.lora_A.weight``)."""
    from peft import LoraConfig

    config = LoraConfig(**config) if isinstance(config, dict) else config
    config.base_model_name_or_path = base
    config.save_pretrained(str(directory))
    save_tensors(
        {_PEFT_PREFIX + "model." + k.replace(".default.", "."): v for k, v in state.items()},
        directory / ADAPTER_WEIGHTS,
    )


def lora_state_from_peft(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `save_lora_state`'s naming: PEFT adapter keys to in-place injected names."""
    prefix = _PEFT_PREFIX + "model."
    return {
        k.removeprefix(prefix)
        .replace(".lora_A.", ".lora_A.default.")
        .replace(".lora_B.", ".lora_B.default."): v
        for k, v in state.items()
    }


def load_lora(root: nn.Module, directory: Path) -> Any:
    """Inject the PEFT adapter of `directory` into `root` in place and load its weights."""
    from peft import LoraConfig
    from peft.utils import set_peft_model_state_dict

    lora = _inject(root, LoraConfig.from_pretrained(str(directory)))
    state = load_tensors(directory / ADAPTER_WEIGHTS)
    stripped = {k.removeprefix(_PEFT_PREFIX): v for k, v in state.items()}
    result = set_peft_model_state_dict(lora, stripped, adapter_name="default")
    unexpected = [k for k in result.unexpected_keys if "lora_" in k]
    if unexpected:
        raise ValueError(
            f"{directory / ADAPTER_WEIGHTS}: weights {unexpected[:5]} do not exist in this backbone"
        )
    return lora


def _inject(root: nn.Module, config: Any) -> Any:
    from peft import LoraModel

    if injected_lora(root) is not None:
        raise ValueError("model: LoRA adapters are already injected into this backbone")
    lora = LoraModel(root, config, "default")
    object.__setattr__(root, _LORA, lora)
    return lora


def load_backbone_weights(backbone: nn.Module, path: Path) -> set[str]:
    """Load a ``backbone.safetensors`` (a subset of the backbone's weights) into `backbone`; returns the names."""
    weights = load_tensors(path)
    _, unexpected = backbone.load_state_dict(weights, strict=False)
    if unexpected:
        raise ValueError(f"{path}: weights {unexpected[:5]} do not exist in this backbone")
    return set(weights)


# ---------------------------------------------------------------------------- model card
def write_card(directory: Path, repo_id: str, modalities: list[str]) -> None:
    """Write ``README.md`` (huggingface_hub's `ModelCard`): YAML front matter with the base model,
    ``library_name: cooper-lib`` and tags, then what the folder holds and how to load it."""
    from huggingface_hub import ModelCard, ModelCardData

    base = read_base(directory) or {}
    base_model = base.get("base_model")
    parts = ["spatial heads"]
    if (directory / ADAPTER_CONFIG).is_file():
        parts.append("a LoRA adapter (PEFT format)")
    if (directory / BACKBONE_WEIGHTS).is_file():
        parts.append("trained backbone weights")
    data = ModelCardData(
        base_model=base_model if base_model and not base_model.startswith("tiny:") else None,
        library_name="cooper-lib",
        tags=["cooper-lib", "spatial-reasoning", "multimodal", *modalities],
        pipeline_tag="image-text-to-text",
    )
    content = f"""---
{data.to_yaml()}
---

# {repo_id}

A cooper-lib model: {", ".join(parts)} for the
backbone `{base_model or "unrecorded"}`{f" (revision `{base['revision']}`)" if base.get("revision") else ""},
generating {", ".join(modalities)} maps.

## Load

```python
from cooper_lib import SpatialModel

model = SpatialModel.from_pretrained("{repo_id}")  # builds the base model, applies everything saved
depth = model.perceive(image, "{modalities[0]}")
```
"""
    ModelCard(content).save(directory / CARD_NAME)
