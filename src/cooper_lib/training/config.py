"""Training configs: dataclasses that round-trip through JSON and YAML, and become CLI flags.

A stage config (`Stage1Config`, `SFTConfig`, `GRPOConfig`) holds three shared sections (`model`:
what to build and what to train, `optim`: optimiser and schedule, `run`: the loop, checkpoints and
logging) plus the stage's own fields. Each field's `metadata["help"]` is its documentation, so
`cooper-lib train <stage> --help` lists every option (`config_arguments` turns fields into flags,
nested sections as dotted flags such as ``--optim.lr``). Stage defaults follow COOPER's recipes.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import sys
import types
import typing
import warnings
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from cooper_lib.heads.sampler import SAMPLING_PRESETS
from cooper_lib.serialization import (
    field_types,
    from_dict,
    plain,
    read_json,
    read_yaml,
    strip_optional,
    to_dict,
)
from cooper_lib.training.judges import check_api_key_env
from cooper_lib.training.tracking import report_to_names

T = TypeVar("T")

LLM_MODES = ("frozen", "lora", "full")
DEFAULT_BACKBONE = "tiny:qwen2_vl"
SCHEDULERS = ("constant", "cosine", "linear")
PRECISIONS = ("no", "bf16", "fp16")
QUANTIZATIONS = ("none", "4bit")
JUDGES = ("rule", "openai")


def _opt(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with help text (mutable defaults are copied per instance)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if not (value >= 0 if allow_zero else value > 0):
        raise ValueError(
            f"{name}: expected a {'non-negative' if allow_zero else 'positive'} number, got {value!r}"
        )


@dataclass
class ModelConfig:
    """What to build and which of its weights to train."""

    backbone: str | None = _opt(
        DEFAULT_BACKBONE,
        "backbone: a hub id or local folder of a transformers MLLM, or tiny:<family> (offline test model); "
        "leave unset with model.cooper",
    )
    cooper: str | None = _opt(
        None,
        "train the reference COOPER assembly instead of a plug-in backbone: a preset (tiny, bagel-7b-mot) "
        "or a release folder (BAGEL's, COOPER's, or a cooper-lib final/ folder)",
    )
    dtype: str = _opt(
        "float32",
        "dtype the backbone is loaded in: float32 (master weights; pair with run.mixed_precision bf16 on "
        "GPU), bfloat16 or float16 (pure low-precision AdamW loses small updates)",
    )
    revision: str | None = _opt(None, "hub revision (branch, tag or commit) of the backbone")
    attn_implementation: str | None = _opt(
        None, "transformers attention kernel: eager, sdpa, flash_attention_2 (none: transformers' choice)"
    )
    quantization: str = _opt(
        "none", "none, or 4bit: QLoRA (NF4 weights through bitsandbytes; needs llm=lora)"
    )
    gradient_checkpointing: bool = _opt(False, "recompute the backbone's activations in backward")
    init_from: str | None = _opt(
        None,
        "model folder written by an earlier stage (spatial additions + trained backbone weights) to start from",
    )
    spatial: dict[str, Any] = _opt(
        {},
        "add_spatial_heads keyword arguments (modalities, head, query_grid, output_size, num_classes, ...) as JSON",
    )
    llm: str = _opt("full", "language model weights: frozen (only added rows train), lora, or full")
    freeze_vision: bool = _opt(True, "keep the vision tower (and its projector) frozen")
    lora_r: int = _opt(16, "LoRA rank (llm=lora)")
    lora_alpha: float = _opt(32.0, "LoRA alpha (llm=lora)")
    lora_dropout: float = _opt(0.0, "LoRA dropout (llm=lora)")
    lora_targets: list[str] | None = _opt(
        None, "module-name suffixes LoRA wraps (llm=lora); default: every Linear of the language model"
    )

    def __post_init__(self) -> None:
        if self.cooper is not None and self.backbone == DEFAULT_BACKBONE:
            self.backbone = None  # the default plug-in backbone does not apply to the reference model

    def validate(self) -> None:
        if (self.backbone is None) == (self.cooper is None):
            raise ValueError(
                "model.backbone, model.cooper: set exactly one (a plug-in MLLM to add heads to, or the reference "
                f"COOPER assembly), got backbone={self.backbone!r} and cooper={self.cooper!r}"
            )
        if self.cooper is not None:
            plug_in = {
                "init_from": self.init_from is not None,
                "spatial": bool(self.spatial),
                "revision": self.revision is not None,
                "attn_implementation": self.attn_implementation is not None,
                "lora_targets": self.lora_targets is not None,
            }
            given = [f"model.{k}" for k, v in plug_in.items() if v]
            if given:
                raise ValueError(
                    f"{', '.join(given)}: plug-in backbone settings, not used with model.cooper={self.cooper!r} "
                    "(start from an earlier stage with model.cooper: <its final/ folder>)"
                )
        _check_choice("model.llm", self.llm, LLM_MODES)
        _check_choice("model.dtype", self.dtype, ("float32", "bfloat16", "float16"))
        _check_choice("model.quantization", self.quantization, QUANTIZATIONS)
        if self.quantization != "none" and self.llm != "lora":
            raise ValueError(
                f"model.quantization: {self.quantization} weights cannot be trained directly; "
                f"set model.llm to lora (QLoRA), got llm={self.llm!r}"
            )
        _check_positive("model.lora_r", self.lora_r)
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"model.lora_dropout: expected a value in [0, 1), got {self.lora_dropout}")


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule (stage defaults: COOPER's recipes)."""

    lr: float = _opt(5e-6, "peak learning rate")
    betas: tuple[float, float] = _opt((0.9, 0.95), "AdamW betas")
    eps: float = _opt(1e-15, "AdamW epsilon")
    weight_decay: float = _opt(0.0, "decoupled weight decay (never applied to embeddings, queries or norms)")
    scheduler: str = _opt("constant", "schedule after warm-up: constant, cosine or linear")
    warmup_steps: int = _opt(500, "linear warm-up steps")
    grad_clip: float | None = _opt(1.0, "clip the global gradient norm to this value (none to disable)")

    def validate(self) -> None:
        _check_positive("optim.lr", self.lr)
        _check_positive("optim.eps", self.eps)
        _check_positive("optim.weight_decay", self.weight_decay, allow_zero=True)
        _check_positive("optim.warmup_steps", self.warmup_steps, allow_zero=True)
        _check_choice("optim.scheduler", self.scheduler, SCHEDULERS)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas: expected two values in [0, 1), got {self.betas}")
        if self.grad_clip is not None:
            _check_positive("optim.grad_clip", self.grad_clip)


#: Collating workers per process: 2 where workers fork cheaply (Linux), else 0 (in the process).
DEFAULT_NUM_WORKERS = 2 if sys.platform.startswith("linux") else 0


@dataclass
class RunConfig:
    """The loop: steps, batches, precision, checkpoints, logging and evaluation."""

    output_dir: str = _opt("runs/cooper", "folder for checkpoints, logs and the final model")
    seed: int = _opt(0, "seed of the data order, sampling and weight initialisation")
    max_steps: int = _opt(1000, "optimiser steps to train for")
    batch_size: int = _opt(1, "samples (GRPO: prompts) per process and micro-batch")
    grad_accum_steps: int = _opt(1, "micro-batches per optimiser step")
    mixed_precision: str | None = _opt(
        None,
        "autocast precision: no, bf16 or fp16; none takes the launcher's (accelerate launch "
        "--mixed_precision / accelerate config, else no)",
    )
    cpu: bool = _opt(False, "train on the CPU even when an accelerator is present (always on without one)")
    ema_decay: float | None = _opt(None, "EMA decay of the trainable weights (none to disable)")
    save_every: int = _opt(500, "write a checkpoint every N steps (0: only at the end)")
    keep_checkpoints: int = _opt(
        2, "checkpoints kept on disk (older ones are deleted after a new one is complete)"
    )
    resume: str = _opt("auto", "auto (latest checkpoint in output_dir if any), none, or a checkpoint folder")
    allow_config_change: bool = _opt(
        False, "resume even when settings differ from the checkpoint's (the new values are used)"
    )
    log_every: int = _opt(10, "log averaged metrics every N steps")
    eval_every: int = _opt(0, "run the evaluation hook every N steps (0: never)")
    progress_bar: bool = _opt(True, "show a tqdm progress bar on the main process")
    report_to: str | list[str] = _opt(
        "none",
        "experiment trackers (accelerate's): none, tensorboard (under output_dir/tb), wandb, mlflow, "
        "several of them, or all (every installed one); log.jsonl is written either way",
    )
    project: str = _opt(
        "cooper-lib", "tracker project: W&B project, MLflow experiment, TensorBoard run folder"
    )
    log_samples: int = _opt(
        2,
        "sample traces / map grids logged at each evaluation and GRPO logging step, under "
        "output_dir/samples/step-N and to the trackers (0: none)",
    )
    allow_outside_root: bool = _opt(
        False,
        "read record files whose image/target paths lead out of the file's folder (`..`, absolute "
        "paths); off by default so a shared record file cannot make training read arbitrary files",
    )

    def validate(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum_steps", "keep_checkpoints", "log_every"):
            _check_positive(f"run.{name}", getattr(self, name))
        for name in ("save_every", "eval_every", "log_samples"):
            _check_positive(f"run.{name}", getattr(self, name), allow_zero=True)
        if self.mixed_precision is not None:
            _check_choice("run.mixed_precision", self.mixed_precision, PRECISIONS)
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"run.ema_decay: expected a value in (0, 1) or none, got {self.ema_decay}")
        report_to_names(self.report_to)
        if not self.project:
            raise ValueError("run.project: expected a non-empty name, got ''")


class _Sections:
    """Shared behaviour of stage configs: validation and JSON / YAML round trips (through
    `cooper_lib.serialization`)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        self.model.validate()
        self.optim.validate()
        self.run.validate()

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """The config `data` describes; a section given in part (``optim: {lr: 1e-5}``) keeps the
        stage's defaults for the fields it leaves out."""
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
        defaults = cls().to_dict()
        merged = dict(data)
        if isinstance(data.get("run"), dict) and "tensorboard" in data["run"]:
            merged["run"] = _replace_tensorboard(data["run"])
            data = merged
        for f in fields(cls):
            if f.name in ("model", "optim", "run") and isinstance(data.get(f.name), dict):
                merged[f.name] = {**defaults[f.name], **data[f.name]}
        return from_dict(cls, merged)

    def save(self, path: str | Path) -> Path:
        """Write the config as YAML (``.yaml`` / ``.yml``) or JSON (any other suffix)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".yaml", ".yml"):
            path.write_text(_yaml().safe_dump(self.to_dict(), sort_keys=False))
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        """Read a config written by `save` (or by hand) from YAML or JSON."""
        return cls.from_dict(read_config_file(path))


@dataclass
class _SupervisedSections(_Sections):
    """The fields and checks the supervised stage configs (`Stage1Config`, `SFTConfig`) share;
    each stage sets its own defaults and help for ``optim``, ``run``, ``data`` and ``eval_data``."""

    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "model section"})
    optim: OptimConfig = field(default_factory=OptimConfig, metadata={"help": "optimiser section"})
    run: RunConfig = field(default_factory=RunConfig, metadata={"help": "loop section"})
    data: list[str] = _opt([], "training record files")
    eval_data: list[str] = _opt([], "record files for the evaluation hook")
    num_workers: int = _opt(
        DEFAULT_NUM_WORKERS, "DataLoader worker processes that collate batches (0: in the training process)"
    )
    eval_samples: int = _opt(64, "records the evaluation hook scores (first N of eval_data)")

    def validate(self) -> None:
        super().validate()
        _check_positive("eval_samples", self.eval_samples)


@dataclass
class Stage1Config(_SupervisedSections):
    """Stage 1, auxiliary-modality generation (COOPER: lr 5e-6, 500 warm-up, 6000 steps, EMA 0.995)."""

    run: RunConfig = field(
        default_factory=lambda: RunConfig(max_steps=6000, ema_decay=0.995), metadata={"help": "loop section"}
    )
    data: list[str] = _opt(
        [], "stage-1 JSONL files, save_to_disk folders, .parquet files or hf://<dataset id>[:<split>]"
    )
    eval_data: list[str] = _opt([], "stage-1 JSONL files for the evaluation hook")
    mixture: dict[str, float] = _opt(
        {"depth": 0.5, "segmentation": 0.5}, "sampling weight per source (a record's source, or its modality)"
    )
    target_size: tuple[int, int] | None = _opt(
        None, "size (h w) target maps are resized to (nearest); default: the heads' output size"
    )
    lm_loss_on_tag: bool = _opt(False, "also train the LM on the tagged instruction")

    def validate(self) -> None:
        super().validate()
        if not self.mixture or any(w < 0 for w in self.mixture.values()) or sum(self.mixture.values()) <= 0:
            raise ValueError(
                f"mixture: expected non-negative weights with a positive sum, got {self.mixture}"
            )
        if self.target_size is not None and (len(self.target_size) != 2 or min(self.target_size) < 1):
            raise ValueError(f"target_size: expected two positive ints (h, w), got {self.target_size}")


@dataclass
class SFTConfig(_SupervisedSections):
    """Stage 2a, interleaved SFT (COOPER: 600 steps at lr 5e-6)."""

    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(warmup_steps=20), metadata={"help": "optimiser"}
    )
    run: RunConfig = field(
        default_factory=lambda: RunConfig(max_steps=600), metadata={"help": "loop section"}
    )
    data: list[str] = _opt(
        [], "SFT JSONL files (COOPER rows or cooper-lib records), datasets folders or hf://<dataset id>"
    )
    eval_data: list[str] = _opt([], "SFT JSONL files for the evaluation hook")
    system_prompt: str | None = _opt(
        None,
        "system prompt put before records that carry none (default: cooper_lib.data.turns.SYSTEM_PROMPT)",
    )
    supervise_maps: bool = _opt(
        True, "train the heads on the true maps that follow tool calls, when records carry them"
    )
    max_length: int | None = _opt(None, "longest tokenised record allowed (longer ones raise an error)")
    sample_max_new_tokens: int = _opt(
        256, "longest generated turn of the greedy traces logged as samples at evaluations (run.log_samples)"
    )

    def validate(self) -> None:
        super().validate()
        if self.max_length is not None:
            _check_positive("max_length", self.max_length)
        _check_positive("sample_max_new_tokens", self.sample_max_new_tokens)


@dataclass
class GRPOConfig(_Sections):
    """Stage 2b, GRPO with the CPR reward (COOPER: 8 rollouts, no KL, clip 0.2, lr 3e-6 cosine)."""

    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "model section"})
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=3e-6, scheduler="cosine", warmup_steps=0, eps=1e-8),
        metadata={"help": "optimiser section"},
    )
    run: RunConfig = field(
        default_factory=lambda: RunConfig(max_steps=300), metadata={"help": "loop section"}
    )
    data: list[str] = _opt(
        [], "question JSONL files: cooper_lib.data.records.QARecord rows or COOPER's RL_data.jsonl rows"
    )
    image_root: str | None = _opt(
        None,
        "folder COOPER RL rows' image paths start from (upstream --image_root); default each file's folder",
    )
    eval_data: list[str] = _opt([], "question JSONL files for the evaluation hook (greedy, mean reward)")
    eval_samples: int = _opt(64, "questions the evaluation hook scores (first N of eval_data)")
    num_generations: int = _opt(8, "rollouts per prompt (the group of the advantage and exploration rules)")
    temperature: float = _opt(1.0, "sampling temperature of rollouts (the logits are divided by it)")
    top_p: float = _opt(1.0, "nucleus sampling of rollouts")
    max_new_tokens: int = _opt(4096, "longest generated turn in tokens (COOPER: 4096)")
    max_total_tokens: int = _opt(
        16384, "longest rollout context in tokens, prompt, turns and inserted maps included"
    )
    image_steps: int = _opt(
        30, "time points of a flow head's map generation in rollouts (BAGEL's num_timesteps; COOPER: 30)"
    )
    flow_preset: str | None = _opt(
        "cooper-rollout",
        "cooper_lib.heads.sampler.SAMPLING_PRESETS entry flow heads sample with in rollouts (null: the head's own)",
    )
    max_turns: int = _opt(3, "most assistant turns per rollout")
    clip_eps: float = _opt(0.2, "PPO ratio clip")
    kl_beta: float = _opt(0.0, "weight of the KL penalty to the frozen starting policy (0: off, as COOPER)")
    adv_eps: float = _opt(1e-4, "added to the group's reward std before dividing")
    num_iterations: int = _opt(1, "policy updates per batch of rollouts")
    reward_weights: dict[str, float] = _opt(
        {"accuracy": 1.0, "format": 1.0, "exploration": 1.0}, "weights of the CPR reward's parts"
    )
    exploration_threshold: int = _opt(3, "exploration rule: tool-using rollouts per group compared with this")
    exploration_bonus: float = _opt(0.2, "exploration rule: size of the bonus / penalty")
    number_tolerance: float = _opt(0.1, "rule judge: relative error accepted for numeric answers")
    judge: str = _opt("rule", "accuracy judge: rule (boxed / letter / yes-no / number) or openai")
    judge_url: str | None = _opt(None, "OpenAI-compatible base URL of the judge (judge=openai)")
    judge_model: str | None = _opt(None, "model name sent to the judge (judge=openai)")
    judge_api_key_env: str | None = _opt(
        None,
        "no longer chosen: the judge's key is read from $COOPER_JUDGE_API_KEY (any other name is an error)",
    )

    def validate(self) -> None:
        super().validate()
        for name in (
            "num_generations",
            "max_new_tokens",
            "max_turns",
            "num_iterations",
            "eval_samples",
            "image_steps",
            "max_total_tokens",
        ):
            _check_positive(name, getattr(self, name))
        if self.num_generations < 2:
            raise ValueError(
                f"num_generations: expected at least 2 rollouts per group, got {self.num_generations}"
            )
        _check_positive("temperature", self.temperature)
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p: expected a value in (0, 1], got {self.top_p}")
        _check_positive("clip_eps", self.clip_eps)
        _check_positive("kl_beta", self.kl_beta, allow_zero=True)
        _check_positive("adv_eps", self.adv_eps)
        _check_positive("number_tolerance", self.number_tolerance, allow_zero=True)
        _check_choice("judge", self.judge, JUDGES)
        if self.image_steps < 2:
            raise ValueError(
                f"image_steps: expected at least 2 time points (one Euler update), got {self.image_steps}"
            )
        if self.flow_preset is not None:
            _check_choice("flow_preset", self.flow_preset, tuple(SAMPLING_PRESETS))
        unknown = sorted(set(self.reward_weights) - {"accuracy", "format", "exploration"})
        if unknown:
            raise ValueError(
                f"reward_weights: unknown parts {unknown}; expected accuracy, format, exploration"
            )
        if self.judge == "openai" and not (self.judge_url and self.judge_model):
            raise ValueError("judge_url, judge_model: both are needed with judge=openai")
        check_api_key_env(self.judge_api_key_env)


def _replace_tensorboard(run: dict[str, Any]) -> dict[str, Any]:
    """``run`` of a config written before ``run.report_to`` (earlier versions wrote
    ``tensorboard: true`` by default): ``tensorboard`` becomes ``report_to`` with its old meaning
    (true: TensorBoard when installed, else none), with a FutureWarning; both set is an error."""
    run = dict(run)
    value = run.pop("tensorboard")
    if "report_to" in run:
        raise ValueError(
            f"run.tensorboard: replaced by run.report_to; give only report_to (got tensorboard={value!r} "
            f"and report_to={run['report_to']!r})"
        )
    if not isinstance(value, bool):
        raise TypeError(f"run.tensorboard: expected true or false, got {value!r}")
    installed = any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))
    run["report_to"] = "tensorboard" if value and installed else "none"
    warnings.warn(
        f"run.tensorboard: deprecated, read as run.report_to: {run['report_to']} (write report_to: "
        "none | tensorboard | wandb | mlflow | all instead)",
        FutureWarning,
        stacklevel=4,
    )
    return run


STAGE_CONFIGS: dict[str, type] = {"stage1": Stage1Config, "sft": SFTConfig, "grpo": GRPOConfig}


# ---------------------------------------------------------------------------------------- I/O
def _yaml() -> Any:
    try:
        import yaml
    except ImportError as err:  # PyYAML ships with the `train` extra
        raise ImportError("YAML configs need PyYAML: pip install 'cooper-lib[train]'") from err
    return yaml


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML (``.yaml`` / ``.yml``) or JSON config file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    data = read_yaml(path) if path.suffix in (".yaml", ".yml") else read_json(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
    return data


# ---------------------------------------------------------------------------------------- flags
def config_arguments(parser: Any, cls: type, prefix: str = "", defaults: Any = None) -> None:
    """Add one ``--[section.]field`` flag per config field to an argparse parser.

    Flags default to "not given" (argparse.SUPPRESS), so `apply_overrides` changes only what the
    user typed. Lists take several values, tuples a fixed count, dicts a JSON object, booleans
    ``--flag`` / ``--no-flag``, and ``none`` clears an optional value. The help shows the
    defaults of `defaults` (default: ``cls()``), so a section shows its stage's own defaults
    (stage 1's ``run.max_steps`` is 6000, GRPO's ``optim.lr`` 3e-6).
    """
    import argparse

    if defaults is None:
        defaults = cls()
    hints = field_types(cls)
    documented = attribute_summaries(cls)
    for f in fields(cls):
        tp, optional = strip_optional(hints[f.name])
        name = f"{prefix}{f.name}"
        if is_dataclass(tp):
            config_arguments(parser, tp, prefix=f"{name}.", defaults=getattr(defaults, f.name))
            continue
        help_text = f.metadata.get("help") or documented.get(f.name, "")
        help_text += f" (default: {getattr(defaults, f.name)!r})"
        kwargs: dict[str, Any] = {
            "dest": name,
            "default": argparse.SUPPRESS,
            "help": help_text.replace("%", "%%"),
        }
        origin = typing.get_origin(tp)
        arms = typing.get_args(tp) if origin in (typing.Union, types.UnionType) else ()
        if len(arms) == 2 and typing.get_origin(arms[1]) is list and typing.get_args(arms[1]) == (arms[0],):
            origin, tp = list, arms[1]  # `X | list[X]` (run.report_to): one or more values
        if tp is bool:
            parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if origin is dict:
            kwargs.update(type=_json_object(name), metavar="JSON")
        elif origin in (tuple, list):
            args = typing.get_args(tp)
            item = args[0]
            count = len(args) if origin is tuple and Ellipsis not in args else "+"
            kwargs.update(type=_scalar(item, optional), nargs=count, metavar=item.__name__.upper())
        else:
            kwargs.update(type=_scalar(tp, optional), metavar=tp.__name__.upper())
        parser.add_argument(f"--{name}", **kwargs)


_ATTRIBUTE = re.compile(r"^(\w+): (.*)$")
_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)\.(?:\s|$)")


def attribute_summaries(cls: type) -> dict[str, str]:
    """The first sentence of each entry of `cls`'s docstring ``Attributes:`` section, by name: the
    help of a config flag whose field carries none (`Table1Config` documents its fields there).
    Hand-written: the section is plain Google style, and no parser among our dependencies reads it."""
    lines = (inspect.getdoc(cls) or "").splitlines()
    if "Attributes:" not in lines:
        return {}
    entries: dict[str, list[str]] = {}
    current: list[str] = []
    for line in lines[lines.index("Attributes:") + 1 :]:
        if line and not line.startswith(" "):
            break
        entry_level = len(line) - len(line.lstrip()) == 4
        match = _ATTRIBUTE.match(line.strip()) if entry_level else None
        if match:
            current = entries.setdefault(match.group(1), [])
            current.append(match.group(2))
        elif line.strip():
            current.append(line.strip())
    return {
        name: _SENTENCE_END.split(" ".join(text).replace("``", "`"), maxsplit=1)[0] + "."
        for name, text in entries.items()
    }


def _scalar(tp: type, optional: bool) -> Any:
    def parse(text: str) -> Any:
        if optional and text.lower() in ("none", "null"):
            return None
        return tp(text)

    parse.__name__ = tp.__name__
    return parse


def _json_object(name: str) -> Any:
    def parse(text: str) -> dict[str, Any]:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(f"--{name}: expected a JSON object, got {text!r}")
        return value

    parse.__name__ = "JSON object"
    return parse


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Copy of the config mapping `data` with dotted `overrides` (``{"optim.lr": 1e-5}``) set."""
    out = json.loads(json.dumps(plain(data)))
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--{dotted}: {part!r} is not a section")
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return out
