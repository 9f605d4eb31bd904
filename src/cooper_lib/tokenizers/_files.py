"""On-disk layout shared by the tokenizers: ``tokenizer_config.json`` + ``tokenizer.safetensors``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from cooper_lib.serialization import read_json, read_safetensors

CONFIG_NAME = "tokenizer_config.json"
WEIGHTS_NAME = "tokenizer.safetensors"


def save_files(
    directory: str | os.PathLike, config: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> Path:
    """Write ``config`` as JSON and ``tensors`` as safetensors into ``directory`` (created if needed)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path / WEIGHTS_NAME))
    return path


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The JSON config saved in ``directory``."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"directory: no {CONFIG_NAME} in {directory}")
    return read_json(path)


def load_files(
    directory: str | os.PathLike, tokenizer_type: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Config (checked to be of ``tokenizer_type``, key removed) and tensors saved in ``directory``."""
    config = read_config(directory)
    found = config.pop("tokenizer_type", None)
    if found != tokenizer_type:
        raise ValueError(f"directory: {directory} holds a {found!r} tokenizer, expected {tokenizer_type!r}")
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"directory: no {WEIGHTS_NAME} in {directory}")
    return config, read_safetensors(weights)
