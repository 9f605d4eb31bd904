"""Checkpoints that survive a kill: atomic folders of safetensors and JSON.

A checkpoint is ``<output_dir>/checkpoints/step-00001000/`` holding

- ``model/``: the model folder of `cooper_lib.training.weights` (additions via the
  `save_pretrained` format, trained backbone weights, ``trainable.json``);
- ``optimizer.safetensors`` + ``optimizer.json``: the optimiser state keyed by parameter name
  (tensors, then the scalars and param groups);
- ``scheduler.json``, ``ema.safetensors`` (when EMA is on), ``rng-rank<r>.json`` (torch, CUDA,
  numpy and Python generators of every process) and ``state.json`` (step, data position, config).

Writes are atomic: everything goes to ``.step-00001000.tmp``, every file and the folder are
fsync'ed, then one `os.replace` renames it. A kill before the rename leaves a temp folder that
`list_checkpoints` ignores (and the next save removes); the previous checkpoint is untouched.
No pickle is written or read anywhere.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STATE_NAME = "state.json"
_STEP_DIR = re.compile(r"step-(\d{8})")
_SEP = "/"  # parameter names contain dots; tensor keys join name and state key with a slash


def checkpoints_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    """Where the checkpoint of `step` lives."""
    return checkpoints_root(output_dir) / f"step-{step:08d}"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints under `output_dir`, oldest first (temp folders of interrupted saves skipped)."""
    root = checkpoints_root(output_dir)
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir() if p.is_dir() and _STEP_DIR.fullmatch(p.name) and (p / STATE_NAME).is_file()
    ]
    return sorted(found, key=lambda p: int(_STEP_DIR.fullmatch(p.name).group(1)))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def temp_dir_for(final: Path) -> Path:
    return final.parent / f".{final.name}.tmp"


def begin_atomic(final: Path, *, replace: bool = False) -> Path:
    """A fresh, empty temp folder to write `final`'s contents into (a stale one is removed).

    Raises:
        FileExistsError: `final` exists and `replace` is False.
    """
    if final.exists() and not replace:
        raise FileExistsError(f"{final}: already exists")
    tmp = temp_dir_for(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit_atomic(tmp: Path, final: Path) -> Path:
    """fsync every file under `tmp` and the folders, then rename `tmp` to `final` in one step.

    An existing `final` (a model folder written again by a resumed run) is first moved aside and
    deleted after the rename; a crash in between leaves the new folder complete under `final`
    or still under `tmp`, never a half-written one under `final`.
    """
    for path in sorted(tmp.rglob("*")):
        if path.is_file():
            _fsync(path)
    for folder in sorted({p for p in tmp.rglob("*") if p.is_dir()} | {tmp}, key=lambda p: -len(p.parts)):
        _fsync(folder)
    old = final.parent / f".{final.name}.old"
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync(final.parent)
    shutil.rmtree(old, ignore_errors=True)
    return final


def abort_atomic(tmp: Path) -> None:
    """Remove an unfinished temp folder (after an error during a save)."""
    shutil.rmtree(tmp, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune(output_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints and any stale temp folder; returns what went."""
    found = list_checkpoints(output_dir)
    removed = found[: max(0, len(found) - keep)]
    root = checkpoints_root(output_dir)
    removed += [p for p in root.glob(".step-*.tmp")] if root.is_dir() else []
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


# ------------------------------------------------------------------------------------ optimiser
def save_optimizer(directory: Path, state: Mapping[str, Any]) -> None:
    """An optimiser state keyed by parameter name (`get_optimizer_state_dict`'s format) as
    ``optimizer.safetensors`` (tensors) and ``optimizer.json`` (scalars and param groups)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for name, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}{_SEP}{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(name, {})[key] = value
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]
    ]
    save_file(tensors, str(directory / "optimizer.safetensors"), metadata={"format": "pt"})
    (directory / "optimizer.json").write_text(
        json.dumps({"scalars": scalars, "param_groups": groups}, indent=1)
    )


def load_optimizer(directory: Path) -> dict[str, Any]:
    """The optimiser state `save_optimizer` wrote (tuples such as AdamW's betas restored)."""
    meta = json.loads((directory / "optimizer.json").read_text())
    state: dict[str, dict[str, Any]] = {}
    for key, tensor in load_file(str(directory / "optimizer.safetensors")).items():
        name, entry = key.rsplit(_SEP, 1)
        state.setdefault(name, {})[entry] = tensor
    for name, entries in meta["scalars"].items():
        state.setdefault(name, {}).update(entries)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# ------------------------------------------------------------------------------------ RNG
def rng_state() -> dict[str, Any]:
    """Every random generator a training step draws from (JSON-ready)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state().tolist(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def save_rng(directory: Path, rank: int) -> None:
    (directory / f"rng-rank{rank}.json").write_text(json.dumps(rng_state()))


def load_rng(directory: Path, rank: int) -> None:
    path = directory / f"rng-rank{rank}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; was the checkpoint written by a run with fewer processes?")
    set_rng_state(json.loads(path.read_text()))


# ------------------------------------------------------------------------------------ small files
def save_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def save_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata={"format": "pt"}
    )


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))
