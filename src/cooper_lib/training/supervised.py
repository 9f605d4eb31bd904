"""`SupervisedTrainer`: the part stage 1 and SFT share: records drawn by a `MixtureSampler`,
collated into micro-batches, one model forward per micro-batch (through the trainer's model kind,
`cooper_lib.training.kinds`: a `SpatialModel` or a `CooperModel`), and an evaluation that
averages the losses over held-out records (each process takes every world-size-th record).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from cooper_lib.model import SpatialModel, SpatialOutput
from cooper_lib.training.kinds import ModelKind
from cooper_lib.training.loop import EvalHook, Trainer, mean_over_processes
from cooper_lib.training.sampler import MixtureSampler, Prefetcher, shard


class SupervisedTrainer(Trainer):
    """A `Trainer` over a list of records with a collator and a sampling weight per source.

    Args:
        model: the `SpatialModel`, `CooperModel` or its `ModelKind`.
        config: the stage config.
        records: training records.
        sources: each record's source (the key of `weights`).
        weights: sampling weight per source.
        collator: records -> model inputs (with `labels` and / or `aux_targets`).
        eval_records: held-out records for `evaluate` (may be empty).
        eval_hooks: extra evaluation callables (see `Trainer`).
        accelerator: an `Accelerator` to use (default: one built from ``config.run``).
        tokenizer: a `CooperModel`'s text tokenizer.
    """

    def __init__(
        self,
        model: SpatialModel | ModelKind,
        config: Any,
        *,
        records: Sequence[Any],
        sources: Sequence[str],
        weights: dict[str, float],
        collator: Callable[[Sequence[Any]], dict[str, Any]],
        eval_records: Sequence[Any] = (),
        eval_hooks: Sequence[EvalHook] = (),
        accelerator: Any = None,
        tokenizer: Any = None,
    ) -> None:
        if not records:
            raise ValueError("records: expected at least one training record, got none")
        self.records = list(records)
        self.eval_records = list(eval_records)
        self.collator = collator
        self.sampler = MixtureSampler(sources, weights, seed=config.run.seed)
        self._prefetcher: Prefetcher | None = None
        super().__init__(model, config, eval_hooks=eval_hooks, accelerator=accelerator, tokenizer=tokenizer)

    def training_module(self, model: torch.nn.Module) -> torch.nn.Module:
        return self.kind.supervised_module()

    def micro_batches(self) -> list[dict[str, Any]]:
        """This process's micro-batches of the next draw: collated ahead by ``num_workers``
        `DataLoader` workers (a `Prefetcher` kept for the run), or here when it is 0."""
        if self.config.num_workers and self._prefetcher is None:
            self._prefetcher = Prefetcher(
                self.records,
                self.sampler,
                self.global_batch_size,
                self.world_size,
                self.rank,
                self.run.grad_accum_steps,
                self.collator,
                self.config.num_workers,
            )
        indices = self.sampler.next_batch(self.global_batch_size)
        mine = shard(indices, self.world_size, self.rank, self.run.grad_accum_steps)
        if self._prefetcher is not None:
            return self._prefetcher.take(mine)
        return [self.collator([self.records[i] for i in part]) for part in mine]

    def metric_names(self) -> list[str]:
        return self.kind.supervised_metric_names()

    def compute_loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        return self.kind.supervised_loss(self.model, batch, self.accelerator.device)

    def data_state(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.stop_data_workers()  # the prefetcher drew ahead from the old position

    def stop_data_workers(self) -> None:
        """Close the `Prefetcher` (a later `train` call starts one at the sampler's position)."""
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None

    def eval_batches(self) -> list[list[Any]]:
        """This process's share of the held-out records, in batches of ``run.batch_size``."""
        mine = self.eval_records[: self.config.eval_samples][self.rank :: self.world_size]
        size = self.run.batch_size
        return [mine[i : i + size] for i in range(0, len(mine), size)]

    def evaluate(self) -> dict[str, float]:
        """Mean losses (and `map_metrics`) over the held-out records, weighted by record."""
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        for part in self.eval_batches():
            metrics = self.kind.evaluate_batch(self.model, self.collator(part), self.accelerator.device, self)
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value * len(part)
                counts[key] = counts.get(key, 0) + len(part)
        keys = sorted({"loss", *self.metric_names(), *self.kind.map_metric_names(self)})
        return {k: v for k, v in mean_over_processes(self.accelerator, keys, sums, counts).items() if v == v}

    #: whether `evaluate` asks the heads for maps (for `map_metrics`).
    wants_maps = False

    def map_metrics(self, batch: dict[str, Any], out: SpatialOutput) -> dict[str, float]:
        """Metrics of generated maps against the targets (default: none)."""
        return {}

    def map_metric_names(self) -> list[str]:
        return []
