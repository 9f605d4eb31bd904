"""`Trainer`: the compact accelerate loop the three stages share.

Why accelerate and not transformers' `Trainer`: `accelerate launch` / `torchrun` still give DDP,
FSDP and DeepSpeed with no code of ours (the model and optimiser go through
`Accelerator.prepare`, gradients through `accumulate` / `backward`), while the loop stays ours
where `Trainer` does not fit: it pickles optimiser, scheduler and RNG state (`torch.save`) and
writes checkpoints in place, and we want safetensors + JSON written atomically; our data position
is a mixture sampler's state, not a dataloader offset to skip through; EMA and GRPO's rollout step
would be overrides of most of `Trainer` anyway.

One optimiser step: the stage draws this process's micro-batches (`micro_batches`), each goes
through `compute_loss` and `Accelerator.backward` inside `Accelerator.accumulate` (DDP syncs on the
last), then gradient clipping, the optimiser, the scheduler and the EMA step. Metrics are averaged
over micro-batches and processes.

Non-finite values stop training (`check_finite_loss`, `check_finite_grad_norm`): a NaN or infinite
loss on any process raises FloatingPointError before its backward pass, and a non-finite gradient
norm (with ``optim.grad_clip``) before the optimiser step, so the weights never take a NaN update
and the last checkpoint stays good to resume from (with a lower learning rate, a gradient clip, or
the offending data fixed). Under ``mixed_precision: fp16`` the gradient scaler's own policy holds
instead for gradients: it skips the step and lowers the scale. Checkpoints (`cooper_lib.training.checkpoint`) hold everything a
resumed run needs to continue the same trajectory.

Resuming (``run.resume``) is announced with the step and checkpoint; a config that differs from
the checkpoint's is an error unless ``run.allow_config_change`` is set. ``log.jsonl`` holds one
strict-JSON line per step (non-finite metrics as null); when a run starts, lines past its step (a
run killed after logging beyond its last checkpoint) are dropped, so a resumed log has no
duplicated steps.

Tracking (`cooper_lib.training.tracking`): the metrics of every ``run.log_every``-th step and of
every evaluation also go to accelerate's trackers (``run.report_to``), started when training starts
and finished when the run completes; at each evaluation (and, in GRPO, each logging step)
``run.log_samples`` samples (`evaluation_samples`, `step_samples`) are written under
``output_dir/samples/step-N/`` and sent to the trackers as images and text.
"""

from __future__ import annotations

import abc
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import DistributedType, ProjectConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from cooper_lib.data.hf import as_records
from cooper_lib.model import SpatialModel
from cooper_lib.models.cooper import CooperModel
from cooper_lib.training import checkpoint as ckpt
from cooper_lib.training.ema import EMA
from cooper_lib.training.kinds import ModelKind, model_kind
from cooper_lib.training.precision import warn_low_precision
from cooper_lib.training.tracking import Sample, flat_config, log_samples, resolve_report_to

logger = logging.getLogger(__name__)
LOG_NAME = "log.jsonl"
_SCHEDULES = {"constant": "constant_with_warmup", "cosine": "cosine", "linear": "linear"}
EvalHook = Callable[["Trainer"], dict[str, float]]


@dataclass
class TrainResult:
    """What `Trainer.train` returns.

    Attributes:
        history: one entry per optimiser step run by this call: ``step`` and the metrics averaged
            over micro-batches and processes (``eval/...`` entries at evaluation steps).
        final_dir: the final model folder (EMA weights when EMA is on).
        checkpoint: the last checkpoint written.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    final_dir: Path | None = None
    checkpoint: Path | None = None


class Trainer(abc.ABC):
    """Base class of `Stage1Trainer`, `InterleavedSFTTrainer` and `SpatialGRPOTrainer`.

    Args:
        model: the `SpatialModel` or `CooperModel` to train (or its `ModelKind`); its trainable
            weights are set from ``config.model``.
        config: the stage's config.
        eval_hooks: extra callables run at every evaluation (``run.eval_every``), each returning
            metrics to log under ``eval/``.
        accelerator: an `Accelerator` to use (default: one built from ``config.run``). Its own
            trackers (``log_with``, e.g. a custom `accelerate.tracking.GeneralTracker`) are used;
            ``run.report_to`` must then be none.
        tokenizer: a `CooperModel`'s text tokenizer (`cooper_lib.models.cooper.load_tokenizer`).
    """

    def __init__(
        self,
        model: SpatialModel | CooperModel | ModelKind,
        config: Any,
        *,
        eval_hooks: Sequence[EvalHook] = (),
        accelerator: Accelerator | None = None,
        tokenizer: Any = None,
    ) -> None:
        self.kind = model_kind(model, tokenizer)
        model = self.kind.model
        config.validate()
        self.config = config
        self.run = config.run
        self.eval_hooks = list(eval_hooks)
        trackers = resolve_report_to(self.run.report_to)
        if accelerator is not None and trackers:
            raise ValueError(
                f"run.report_to: {self.run.report_to!r} cannot be added to an Accelerator passed in; "
                "give the Accelerator log_with= instead and set run.report_to to none"
            )
        self.accelerator = accelerator or Accelerator(
            # accelerate starts CPU process groups (torchrun + gloo) only with cpu=True
            cpu=self.run.cpu or not accelerator_available(),
            mixed_precision=self.run.mixed_precision,
            gradient_accumulation_steps=self.run.grad_accum_steps,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
            log_with=trackers or None,
            project_config=ProjectConfiguration(
                project_dir=str(self.run.output_dir), logging_dir=str(Path(self.run.output_dir) / "tb")
            ),
        )
        if self.accelerator.gradient_accumulation_steps != self.run.grad_accum_steps:
            raise ValueError(
                f"accelerator: built with gradient_accumulation_steps={self.accelerator.gradient_accumulation_steps}, "
                f"config.run.grad_accum_steps is {self.run.grad_accum_steps}"
            )
        set_seed(self.run.seed)
        self.spatial = model  # the unwrapped model being trained (a SpatialModel or a CooperModel)
        self.summary = self.kind.configure(config.model)
        self.lora = self.summary.lora
        optim = config.optim
        warn_low_precision(model, optim.lr)
        if config.model.gradient_checkpointing:
            self.kind.enable_gradient_checkpointing()
        optimizer = torch.optim.AdamW(
            self.kind.parameter_groups(optim.weight_decay), lr=optim.lr, betas=optim.betas, eps=optim.eps
        )
        self.scheduler = get_scheduler(
            _SCHEDULES[optim.scheduler],
            optimizer,
            num_warmup_steps=optim.warmup_steps,
            num_training_steps=self.run.max_steps * self.updates_per_step(),
        )
        module = self.training_module(model)
        self.prefix = _prefix_of(module, model)
        self.model, self.optimizer = self.accelerator.prepare(module, optimizer)
        if self.run.ema_decay and self.shards_parameters:
            raise ValueError(
                "run.ema_decay: EMA needs whole parameters on every process; FSDP / ZeRO-3 shard them"
            )
        self.ema = EMA(model, self.run.ema_decay) if self.run.ema_decay else None
        self.step = 0
        self.output_dir = Path(self.run.output_dir)
        self._tracking = False
        self._eval_samples: list[Sample] = []
        self.resumed_from: Path | None = None
        if self.accelerator.is_main_process:
            ckpt.recover_atomic(self.output_dir / "final")
        self.accelerator.wait_for_everyone()
        self._resume()

    # ------------------------------------------------------------------ for subclasses
    def training_module(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module `Accelerator.prepare` wraps (DDP / FSDP) and `compute_loss` calls: the
        model itself, or a module holding it whose forward computes what the stage needs."""
        return model

    def updates_per_step(self) -> int:
        """Optimiser updates in one `train_step` (the schedule spans ``max_steps`` times this)."""
        return 1

    def micro_batches(self) -> list[Any]:
        """This process's micro-batches for the next optimiser step (advances the data position).

        Stages that keep the default `train_step` define this and `compute_loss`."""
        raise TypeError(
            f"{type(self).__name__} keeps the default train_step but does not define micro_batches"
        )

    def compute_loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one micro-batch and metrics to log (used by the default `train_step`)."""
        raise TypeError(
            f"{type(self).__name__} keeps the default train_step but does not define compute_loss"
        )

    @abc.abstractmethod
    def data_state(self) -> dict[str, Any]:
        """The data position, saved in checkpoints."""

    @abc.abstractmethod
    def load_data_state(self, state: dict[str, Any]) -> None:
        """Restore the data position saved by `data_state`."""

    def stop_data_workers(self) -> None:
        """Stop the processes that prepare batches ahead (default: none). `train` calls it when
        its loop ends, so a later stage's workers do not fork while they still run."""
        return None

    def evaluate(self) -> dict[str, float]:
        """The stage's own evaluation (default: none); extra hooks come from `eval_hooks`."""
        return {}

    def evaluation_samples(self) -> list[Sample]:
        """Up to ``run.log_samples`` samples to log at an evaluation (default: none). Runs on every
        process after `evaluate`, in eval mode under no_grad (EMA weights when EMA is on); only the
        main process's samples are logged."""
        return []

    def step_samples(self) -> list[Sample]:
        """Up to ``run.log_samples`` samples of the step just taken, logged at ``run.log_every``
        steps (default: none; GRPO: rollouts). Called on the main process only."""
        return []

    # ------------------------------------------------------------------ properties
    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def global_batch_size(self) -> int:
        return self.run.batch_size * self.world_size * self.run.grad_accum_steps

    # ------------------------------------------------------------------ the loop
    def train(self, stop_at: int | None = None) -> TrainResult:
        """Run from the current step to ``run.max_steps``, then save a checkpoint and the final model.

        Args:
            stop_at: stop after this step instead (a checkpoint is written, no final model); the
                schedule still runs to ``run.max_steps``, so a resumed run continues it exactly.
        """
        end = self.run.max_steps if stop_at is None else min(stop_at, self.run.max_steps)
        result = TrainResult()
        bar = tqdm(
            total=self.run.max_steps,
            initial=self.step,
            desc=type(self).__name__,
            disable=not (self.run.progress_bar and self.accelerator.is_main_process),
        )
        if self.accelerator.is_main_process:
            trim_log(self.output_dir / LOG_NAME, self.step)
        self.start_tracking()
        self.model.train()
        while self.step < end:
            metrics = self.train_step()
            self.step += 1
            entry = {"step": float(self.step), **metrics, "lr": self.scheduler.get_last_lr()[0]}
            show = (
                self.run.log_samples
                and self.accelerator.is_main_process
                and self.step % self.run.log_every == 0
            )
            samples = self.step_samples() if show else []
            if self.run.eval_every and self.step % self.run.eval_every == 0:
                entry.update({f"eval/{k}": v for k, v in self.run_evaluation().items()})
                samples += self._eval_samples
            result.history.append(entry)
            self._log(entry)
            if samples:
                log_samples(self.accelerator, samples, self.step, self.output_dir)
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k in ("loss", "reward")})
            if self.run.save_every and self.step % self.run.save_every == 0:
                result.checkpoint = self.save_checkpoint()
        bar.close()
        self.stop_data_workers()
        last = ckpt.checkpoint_dir(self.output_dir, self.step)
        result.checkpoint = last if (last / ckpt.STATE_NAME).is_file() else self.save_checkpoint()
        if self.step >= self.run.max_steps:
            result.final_dir = self.save_final()
            self.finish_tracking()
        return result

    def train_step(self) -> dict[str, float]:
        """One optimiser step over this process's micro-batches; returns averaged metrics."""
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for batch in self.micro_batches():
            with self.accelerator.accumulate(self.model):
                loss, metrics = self.compute_loss(batch)
                metrics = self.backward_step(loss, metrics)
            for key, value in {"loss": float(loss.detach()), **metrics}.items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update()
        return self.reduce_metrics(sums, counts)

    def check_finite_loss(self, loss: torch.Tensor, metrics: dict[str, float]) -> None:
        """Raise FloatingPointError when `loss` is NaN or infinite on any process (every process
        raises together, so none waits in a collective), naming the step and the metrics."""
        bad = torch.tensor(0.0 if bool(torch.isfinite(loss.detach()).all()) else 1.0, device=loss.device)
        if self.accelerator.num_processes > 1:
            bad = self.accelerator.reduce(bad, "sum")
        if float(bad) > 0:
            parts = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            raise FloatingPointError(
                f"loss: expected a finite value, got {float(loss.detach())} at step {self.step + 1} "
                f"on {int(bad)} process(es) ({parts or 'no other metrics'}); training stopped before "
                f"the update, so the last checkpoint in {self.output_dir} is intact. Lower optim.lr, "
                "set optim.grad_clip, or check the batch's data"
            )

    def backward_step(self, loss: torch.Tensor, metrics: dict[str, float]) -> dict[str, float]:
        """Check `loss`, backpropagate it, clip the gradients (when they sync and
        ``optim.grad_clip`` is set) and step the optimiser; returns `metrics` with ``grad_norm``
        added when the gradients were clipped. Runs inside ``accelerator.accumulate``."""
        self.check_finite_loss(loss, metrics)
        self.accelerator.backward(loss)
        if self.accelerator.sync_gradients and self.config.optim.grad_clip is not None:
            norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
            if norm is not None:
                metrics = {**metrics, "grad_norm": float(norm)}
                self.check_finite_grad_norm(float(norm))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return metrics

    def check_finite_grad_norm(self, norm: float) -> None:
        """Raise FloatingPointError on a non-finite gradient norm, except under fp16 mixed precision
        (where the gradient scaler skips the step itself)."""
        if not math.isfinite(norm) and self.run.mixed_precision != "fp16":
            raise FloatingPointError(
                f"grad_norm: expected a finite gradient norm, got {norm} at step {self.step + 1}; training "
                f"stopped before the update, so the last checkpoint in {self.output_dir} is intact. "
                "Lower optim.lr or check the batch's data"
            )

    def metric_names(self) -> list[str]:
        """Every metric name `compute_loss` may return (processes reduce them in this order)."""
        return []

    def reduce_metrics(self, sums: dict[str, float], counts: dict[str, int]) -> dict[str, float]:
        """Means over micro-batches and processes; a metric no micro-batch reported is NaN."""
        keys = {"loss", *self.metric_names(), *(["grad_norm"] if self.config.optim.grad_clip else [])}
        unknown = sorted(set(sums) - keys)
        if unknown:
            raise RuntimeError(f"compute_loss returned metrics {unknown} missing from metric_names()")
        return mean_over_processes(self.accelerator, sorted(keys), sums, counts)

    def run_evaluation(self) -> dict[str, float]:
        """The stage's evaluation and every hook, with the model in eval mode (EMA weights when EMA is on)."""
        self.model.eval()
        try:
            context = self.ema.applied() if self.ema is not None else nullcontext()
            with context, torch.no_grad():
                metrics = dict(self.evaluate())
                for hook in self.eval_hooks:
                    metrics.update(hook(self))
                self._eval_samples = self.evaluation_samples() if self.run.log_samples else []
        finally:
            self.model.train()
        return metrics

    # ------------------------------------------------------------------ logging
    def start_tracking(self) -> None:
        """Start the accelerator's trackers (once) with the flat config as hyperparameters, under
        the project ``run.project`` (every process must call it)."""
        if self._tracking:
            return
        if not self.accelerator.trackers:
            self.accelerator.init_trackers(self.run.project, config=flat_config(self.config.to_dict()))
        self._tracking = True

    def finish_tracking(self) -> None:
        """Finish the trackers (close TensorBoard's writer, end the W&B / MLflow run). Not
        ``Accelerator.end_training``: that also destroys the process group a caller may still use."""
        if not self._tracking:
            return
        for tracker in self.accelerator.trackers:
            tracker.finish()
        self.accelerator.trackers.clear()
        self._tracking = False

    def _log(self, entry: dict[str, float]) -> None:
        if not self.accelerator.is_main_process:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with (self.output_dir / LOG_NAME).open("a") as f:
            f.write(log_line(entry) + "\n")
        if self.step % self.run.log_every and not any(k.startswith("eval/") for k in entry):
            return
        values = {k: v for k, v in entry.items() if k != "step" and math.isfinite(v)}
        self.accelerator.log(values, step=self.step)

    # ------------------------------------------------------------------ checkpoints
    @property
    def deepspeed(self) -> bool:
        return self.accelerator.distributed_type == DistributedType.DEEPSPEED

    @property
    def shards_parameters(self) -> bool:
        """Whether no process holds whole parameters (FSDP, DeepSpeed ZeRO-3)."""
        if self.accelerator.distributed_type == DistributedType.FSDP:
            return True
        return self.deepspeed and self.accelerator.state.deepspeed_plugin.zero_stage == 3

    def gather_weights(self) -> dict[str, torch.Tensor]:
        """Full CPU copies of the trainable weights on the main process (every process must call it);
        see `cooper_lib.training.checkpoint.gather_weights`."""
        return ckpt.gather_weights(self)

    def save_checkpoint(self) -> Path:
        """Write the checkpoint of the current step atomically (every process must call it); see
        `cooper_lib.training.checkpoint.save_checkpoint`."""
        return ckpt.save_checkpoint(self)

    def save_final(self) -> Path:
        """Write ``output_dir/final`` atomically: the model folder, with EMA weights when EMA is on."""
        return ckpt.save_final(self)

    def _resume(self) -> None:
        choice = self.run.resume
        if choice == "none":
            return
        path = ckpt.latest_checkpoint(self.output_dir) if choice == "auto" else Path(choice)
        if path is None:
            return
        self.load_checkpoint(path)
        self.resumed_from = Path(path)
        message = f"{type(self).__name__}: resuming from step {self.step} (checkpoint {path})"
        logger.info(message)
        self.accelerator.print(message)

    def load_checkpoint(self, path: str | Path) -> None:
        """Continue from a checkpoint: weights, optimiser, scheduler, EMA, RNG and data position."""
        ckpt.load_checkpoint(self, path)


def accelerator_available() -> bool:
    """Whether torch sees an accelerator: `torch.accelerator` where torch has it (2.6 and newer),
    else CUDA or MPS (the package supports torch 2.4 and 2.5 too)."""
    probe = getattr(torch, "accelerator", None)
    if probe is not None:
        return bool(probe.is_available())
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps is not None and mps.is_available())


def log_line(entry: dict[str, float]) -> str:
    """One strict-JSON line of ``log.jsonl``: non-finite values (NaN, inf) written as null."""
    clean = {k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in entry.items()}
    return json.dumps(clean, allow_nan=False)


def trim_log(path: Path, step: int) -> int:
    """Drop the lines of `path` (``log.jsonl``) past `step`, and a line cut short by a kill; the
    file is rewritten atomically. Returns how many lines went."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if isinstance(entry, dict) and isinstance(entry.get("step"), (int, float)) and entry["step"] <= step:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        os.replace(tmp, path)
    return dropped


def trainer_inputs(
    model: Any,
    config: Any,
    config_type: type,
    records: Any,
    eval_records: Any,
    load: Callable[[Any], list[Any]],
    *,
    load_given: Callable[[Any], list[Any]] | None = None,
) -> tuple[list[Any], list[Any]]:
    """The checks and record loading every trainer's constructor starts with.

    TypeError unless `model` is a `SpatialModel`, a `CooperModel` or a `ModelKind` and `config` a
    `config_type`; then the training and held-out records: read by `load` from ``config.data`` /
    ``config.eval_data`` when not given, else the given ones as lists (a `datasets` source read by
    `load_given`, default `load`).
    """
    model_kind(model)
    if not isinstance(config, config_type):
        raise TypeError(f"config: expected {config_type.__name__}, got {type(config).__name__}")
    load_given = load if load_given is None else load_given
    records = load(config.data) if records is None else as_records(records, load_given)
    if eval_records is None:
        eval_records = load(config.eval_data) if config.eval_data else []
    else:
        eval_records = as_records(eval_records, load_given)
    return records, eval_records


def mean_over_processes(
    accelerator: Accelerator, keys: Sequence[str], sums: dict[str, float], counts: dict[str, float]
) -> dict[str, float]:
    """``sum / count`` of each key over every process (NaN where the count is 0); every process
    must pass the same `keys`."""
    values = torch.tensor(
        [[sums.get(k, 0.0) for k in keys], [counts.get(k, 0) for k in keys]],
        dtype=torch.float64,
        device=accelerator.device,
    )
    if accelerator.num_processes > 1:
        values = accelerator.reduce(values, reduction="sum")
    total, count = values.cpu()
    return {
        k: float(t / c) if c > 0 else math.nan
        for k, t, c in zip(keys, total.tolist(), count.tolist(), strict=True)
    }


def _prefix_of(module: torch.nn.Module, spatial: torch.nn.Module) -> str:
    """Where `spatial` sits inside `module`, as a parameter-name prefix ("" when it is the module)."""
    for name, sub in module.named_modules():
        if sub is spatial:
            return f"{name}." if name else ""
    raise ValueError(f"training_module: the returned module does not contain the {type(spatial).__name__}")
