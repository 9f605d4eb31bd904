"""Checkpoints that survive a kill: atomic folders of safetensors and JSON.

A checkpoint is ``<output_dir>/checkpoints/step-00001000/`` holding

- ``model/``: the model folder the trainer's model kind writes (`cooper_lib.training.kinds`: for
  a `SpatialModel` the folder of `cooper_lib.training.weights`, additions via the
  `save_pretrained` format, trained backbone weights, ``trainable.json``; for a `CooperModel` a
  release folder);
- ``optimizer.safetensors`` + ``optimizer.json``: the optimiser state keyed by parameter name
  (tensors, then the scalars and param groups);
- ``scheduler.json``, ``ema.safetensors`` (when EMA is on), ``rng-rank<r>.json`` (torch, CUDA,
  numpy and Python generators of every process) and ``state.json`` (step, data position, config).

Writes are atomic: everything goes to ``.step-00001000.tmp``, every file and the folder are
fsync'ed, then one `os.replace` renames it. A kill before the rename leaves a temp folder that
`list_checkpoints` ignores (and the next save removes); the previous checkpoint is untouched.
Replacing a folder that exists (``final/``) takes two renames: the old folder goes aside to
``.final.old``, the complete new one comes in, then the old one is deleted. A kill between the
two renames leaves no ``final/`` for a moment; `recover_atomic` (run by every later save and when
a `Trainer` starts) finishes the swap, so a run never ends up without one.
No pickle is written or read anywhere.

The last part writes and restores a `Trainer`'s checkpoint (`save_checkpoint`, `save_final`,
`load_checkpoint`); the trainer's methods of those names call them.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from cooper_lib.training.weights import gather_trainable_state, load_state_into, saved_names, trainable_names

STATE_NAME = "state.json"
RESUME_FREE_SETTINGS = frozenset(
    {
        "run.output_dir",
        "run.resume",
        "run.allow_config_change",
        "run.progress_bar",
        "run.report_to",
        "run.project",
        "run.log_samples",
        "run.log_every",
        "run.save_every",
        "run.keep_checkpoints",
        "run.eval_every",
        "run.cpu",
        "run.allow_outside_root",  # a permission: records that load are the same either way
        "run.batch_size",  # with run.grad_accum_steps: checked as the global batch instead
        "run.grad_accum_steps",
        "eval_data",
        "eval_samples",
        "judge_api_key_env",  # where the judge's key comes from, not what the run computes
    }
)
"""Config keys a resumed run may change freely: where and how often it writes, logs and evaluates.
Any other difference from the checkpoint's config needs ``run.allow_config_change``."""
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


def old_dir_for(final: Path) -> Path:
    """Where `commit_atomic` moves an existing `final` aside while it swaps the new one in."""
    return final.parent / f".{final.name}.old"


def recover_atomic(final: Path) -> Path | None:
    """Finish a swap that a kill interrupted between `commit_atomic`'s two renames.

    With `final` missing and its ``.old`` folder present, the kill came after the old folder went
    aside: the temp folder, fsync'ed before that rename, is complete and becomes `final` (without
    one, the old folder goes back). A leftover ``.old`` beside an existing `final` is deleted.
    Returns the folder that became `final`, or None when there was nothing to do.
    """
    old, tmp = old_dir_for(final), temp_dir_for(final)
    if not old.is_dir():
        return None
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        return None
    source = tmp if tmp.is_dir() else old
    os.replace(source, final)
    _fsync(final.parent)
    shutil.rmtree(old, ignore_errors=True)
    return source


def begin_atomic(final: Path, *, replace: bool = False) -> Path:
    """A fresh, empty temp folder to write `final`'s contents into (a stale one is removed).

    Raises:
        FileExistsError: `final` exists and `replace` is False.
    """
    recover_atomic(final)
    if final.exists() and not replace:
        raise FileExistsError(f"{final}: already exists")
    tmp = temp_dir_for(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit_atomic(tmp: Path, final: Path) -> Path:
    """fsync every file under `tmp` and the folders, then rename `tmp` to `final` in one step.

    An existing `final` (a model folder written again by a resumed run) is first moved aside to
    `old_dir_for(final)` and deleted after the rename; a crash in between leaves the new folder
    complete under `tmp` and the old one aside, which `recover_atomic` turns back into `final`;
    never a half-written folder under `final`.
    """
    for path in sorted(tmp.rglob("*")):
        if path.is_file():
            _fsync(path)
    for folder in sorted({p for p in tmp.rglob("*") if p.is_dir()} | {tmp}, key=lambda p: -len(p.parts)):
        _fsync(folder)
    old = old_dir_for(final)
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


# ------------------------------------------------------------------------------------ a trainer's checkpoint
# `trainer` is a `cooper_lib.training.loop.Trainer` (typed Any: this module sits below the loop).
def gather_weights(trainer: Any) -> dict[str, torch.Tensor]:
    """Full CPU copies of the trainable weights on the main process (every process must call it):
    torch's distributed state-dict API (plain, DDP, FSDP), or DeepSpeed's consolidation (ZeRO-3
    needs ``stage3_gather_16bit_weights_on_model_save``)."""
    if not trainer.deepspeed:
        return gather_trainable_state(trainer.model, trainer.spatial, trainer.prefix)
    full = trainer.accelerator.get_state_dict(trainer.model) or {}
    keep = saved_names(trainer.spatial)
    return {
        k.removeprefix(trainer.prefix): v.detach().cpu().clone()
        for k, v in full.items()
        if k.startswith(trainer.prefix) and k.removeprefix(trainer.prefix) in keep
    }


def save_checkpoint(trainer: Any) -> Path:
    """Write the checkpoint of the current step atomically (every process must call it).

    Under DeepSpeed the optimiser state is DeepSpeed's own partitioned checkpoint (its format,
    written by its engine into ``deepspeed/``); everything else is as without it.
    """
    final = checkpoint_dir(trainer.output_dir, trainer.step)
    tmp = temp_dir_for(final)
    if trainer.accelerator.is_main_process:
        begin_atomic(final)
    trainer.accelerator.wait_for_everyone()
    save_rng(tmp, trainer.rank)
    state = trainer.gather_weights()
    optim_state = None
    if trainer.deepspeed:
        trainer.model.save_checkpoint(str(tmp / "deepspeed"), tag="state")
    else:
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        optim_state = _strip(
            get_optimizer_state_dict(trainer.model, trainer.optimizer.optimizer, options=options),
            trainer.prefix,
        )
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        try:
            trainer.kind.save_model(tmp / "model", state, trainer.config.model, trainer.lora)
            if optim_state is not None:
                save_optimizer(tmp, optim_state)
            save_json(tmp / "scheduler.json", trainer.scheduler.state_dict())
            if trainer.ema is not None:
                save_tensors(tmp / "ema.safetensors", trainer.ema.state_dict())
            save_json(tmp / STATE_NAME, _state_json(trainer))
            commit_atomic(tmp, final)
        except BaseException:
            abort_atomic(tmp)
            raise
        prune(trainer.output_dir, trainer.run.keep_checkpoints)
    trainer.accelerator.wait_for_everyone()
    return final


def _state_json(trainer: Any) -> dict[str, Any]:
    """What ``state.json`` records: step, data position, world size, batch, stage and config."""
    return {
        "step": trainer.step,
        "data": trainer.data_state(),
        "world_size": trainer.world_size,
        "global_batch_size": trainer.global_batch_size,
        "stage": type(trainer).__name__,
        "config": trainer.config.to_dict(),
    }


def save_final(trainer: Any) -> Path:
    """Write ``output_dir/final`` atomically: the model folder, with EMA weights when EMA is on."""
    final = trainer.output_dir / "final"
    context = trainer.ema.applied() if trainer.ema is not None else nullcontext()
    with context:
        state = trainer.gather_weights()
    if trainer.accelerator.is_main_process:
        tmp = begin_atomic(final, replace=True)
        try:
            trainer.kind.save_model(tmp, state, trainer.config.model, trainer.lora)
            commit_atomic(tmp, final)
        except BaseException:
            abort_atomic(tmp)
            raise
    trainer.accelerator.wait_for_everyone()
    return final


def load_checkpoint(trainer: Any, path: str | Path) -> None:
    """Continue from a checkpoint: weights, optimiser, scheduler, EMA, RNG and data position."""
    path = Path(path)
    if not (path / STATE_NAME).is_file():
        raise FileNotFoundError(f"{path}: not a complete checkpoint (no {STATE_NAME})")
    state = load_json(path / STATE_NAME)
    if state["global_batch_size"] != trainer.global_batch_size:
        raise ValueError(
            f"{path}: written with a global batch of {state['global_batch_size']} samples, this run has "
            f"{trainer.global_batch_size} (batch_size x processes x grad_accum_steps); the data order would differ"
        )
    changed = changed_settings(state.get("config", {}), trainer.config.to_dict())
    if changed and not trainer.run.allow_config_change:
        listed = "; ".join(
            f"{key}: {old!r} in the checkpoint, {new!r} now" for key, (old, new) in changed.items()
        )
        raise ValueError(
            f"{path}: this run's config differs from the checkpoint's ({listed}). Set "
            "run.allow_config_change: true (--run.allow_config_change true) to continue with the new "
            "values, or run.resume: none (or another run.output_dir) to start over"
        )
    if trainer.deepspeed:
        trainer.model.load_checkpoint(
            str(path / "deepspeed"),
            tag="state",
            load_optimizer_states=True,
            load_lr_scheduler_states=False,
        )
    else:
        trained = trainer.kind.state_from_folder(path / "model", trainer.model, trainer.prefix)
        load_state_into(trainer.model, trainer.spatial, trained, trainer.prefix)
        optim_state = load_optimizer(path)
        unknown = sorted(set(optim_state["state"]) - set(trainable_names(trainer.spatial)))
        if unknown:
            raise ValueError(
                f"{path}: optimiser state for parameters {unknown[:5]} that do not train in this run"
            )
        # not strict: a parameter that never received a gradient (e.g. an unused head) has no state
        # yet. The loader fills such gaps with a zero-gradient step; drop those, as they never existed.
        options = StateDictOptions(full_state_dict=True, strict=False)
        set_optimizer_state_dict(
            trainer.model,
            trainer.optimizer.optimizer,
            _strip(optim_state, "", add=trainer.prefix),
            options=options,
        )
        for name, param in trainer.spatial.named_parameters():
            if param.requires_grad and name not in optim_state["state"]:
                trainer.optimizer.optimizer.state.pop(param, None)
    trainer.scheduler.load_state_dict(load_json(path / "scheduler.json"))
    if trainer.ema is not None:
        trainer.ema.load_state_dict(load_tensors(path / "ema.safetensors"))
    load_rng(path, trainer.rank)
    trainer.load_data_state(state["data"])
    trainer.step = int(state["step"])
    if changed:
        apply_optim_settings(trainer)


def changed_settings(saved: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{"section.key": (saved, current)}`` for every setting both configs hold with different
    values, `RESUME_FREE_SETTINGS` aside (keys only one of them holds are skipped: configs of other
    library versions)."""
    flat_saved, flat_now = _flatten(saved), _flatten(json.loads(json.dumps(current)))
    return {
        key: (flat_saved[key], flat_now[key])
        for key in sorted(flat_saved.keys() & flat_now.keys())
        if key not in RESUME_FREE_SETTINGS and flat_saved[key] != flat_now[key]
    }


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if prefix == "" and isinstance(value, Mapping) and key in ("model", "optim", "run"):
            out.update(_flatten(value, f"{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def apply_optim_settings(trainer: Any) -> None:
    """Put the config's optimiser settings over those restored from a checkpoint (a resume with
    ``run.allow_config_change``): learning rate (at the schedule's current point), betas, epsilon and
    weight decay, so the run uses the values its config (and ``config.yaml``) states."""
    optim, scheduler = trainer.config.optim, trainer.scheduler
    groups = trainer.optimizer.optimizer.param_groups
    scheduler.base_lrs = [optim.lr for _ in groups]
    for index, group in enumerate(groups):
        group["initial_lr"] = optim.lr
        group["lr"] = optim.lr * scheduler.lr_lambdas[index](scheduler.last_epoch)
        group["betas"], group["eps"] = tuple(optim.betas), optim.eps
        if len(groups) == 2 and index == 0:  # `parameter_groups`: the decayed group comes first
            group["weight_decay"] = optim.weight_decay
    scheduler._last_lr = [group["lr"] for group in groups]


def _strip(optim_state: dict[str, Any], prefix: str, add: str = "") -> dict[str, Any]:
    """An optimiser state keyed by parameter name with `prefix` removed from (and `add` put before) each name."""
    if not optim_state:  # processes other than the first receive nothing under full_state_dict
        return optim_state
    rename = lambda name: add + name.removeprefix(prefix)  # noqa: E731
    groups = [{**g, "params": [rename(n) for n in g["params"]]} for g in optim_state["param_groups"]]
    return {"state": {rename(n): v for n, v in optim_state["state"].items()}, "param_groups": groups}
