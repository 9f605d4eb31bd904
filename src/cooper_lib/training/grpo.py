"""`SpatialGRPOTrainer`: stage 2b, group-relative policy optimisation with COOPER's CPR reward.

Why not TRL's `GRPOTrainer`: its rollouts are `generate` calls over a prompt; ours are interleaved
runs of `InterleavedReasoner` that stop at a tool call, run the perception head on the query
block, draw the map and insert it as an image before generating on. TRL can neither produce those
rollouts nor score their tokens (the inserted images and query blocks sit between the generated
spans) without forking its generation and loss code, so this is a compact loop on the shared
accelerate `Trainer` instead.

One step: each process draws its prompts, runs ``num_generations`` sampled rollouts per prompt
(seeded by run seed, step, prompt position and rollout index, so a resumed or re-sharded run draws
the same ones), scores them with the reward (CPR by default), normalises the rewards within each
group, and takes ``num_iterations`` clipped policy-gradient updates on the rollouts' generated
tokens. The rollouts' whole contexts (prompt, turns, query blocks, inserted maps and prompts) are
re-run in one teacher-forced pass each; the loss covers only the tokens the policy sampled, with
labels shifted by one (see `cooper_lib.training.policy_loss`). Rollouts are sampled in eval mode.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cooper_lib.model import SpatialModel
from cooper_lib.models.cooper import CooperModel
from cooper_lib.reasoning import ReasoningTrace
from cooper_lib.training.config import GRPOConfig
from cooper_lib.training.judges import Judge, judge_from_config
from cooper_lib.training.kinds import ModelKind, model_kind
from cooper_lib.training.loop import EvalHook, Trainer, mean_over_processes, trainer_inputs
from cooper_lib.training.policy_loss import clipped_policy_loss, group_advantages
from cooper_lib.training.records import QAExample, load_qa_records
from cooper_lib.training.rewards import REWARD_PARTS, CPRRewards, cpr_reward, used_tool
from cooper_lib.training.sampler import MixtureSampler, shard
from cooper_lib.training.tracking import Sample, trace_sample

RewardFn = Callable[
    [Sequence[ReasoningTrace], Sequence[QAExample], Sequence[int]], "CPRRewards | Sequence[float]"
]
"""(traces, each trace's question, each trace's group id) -> the rollouts' rewards."""


@dataclass
class RolloutBatch:
    """The rollouts of one micro-batch of prompts and what the loss needs of them."""

    traces: list[ReasoningTrace]
    advantages: torch.Tensor
    metrics: dict[str, float]
    old_logprobs: list[torch.Tensor] | None = None
    ref_logprobs: list[torch.Tensor] | None = None
    rewards: torch.Tensor | None = None


def rollout_seed(seed: int, step: int, position: int, generation: int) -> int:
    """The sampling seed of rollout `generation` of the prompt at `position` of step `step`'s global batch."""
    return int(np.random.SeedSequence([seed, step, position, generation]).generate_state(1)[0] >> 1)


class SpatialGRPOTrainer(Trainer):
    """GRPO on interleaved rollouts of a `SpatialModel` (`InterleavedReasoner`) or a `CooperModel`
    (`CooperReasoner`; the model kind, `cooper_lib.training.kinds`, supplies the reasoner and the
    rollout log-probs).

    Args:
        model: the `SpatialModel` (usually the SFT model: ``model.init_from``), the `CooperModel`
            (``model.cooper``) or its `ModelKind`.
        config: a `GRPOConfig`.
        records: questions (default: read from ``config.data``).
        eval_records: held-out questions (default: read from ``config.eval_data``); the evaluation
            answers them greedily and reports the mean reward and its parts.
        reward_fn: the reward (default: COOPER's CPR reward with ``config``'s weights and judge).
        judge: the accuracy judge of the default reward (default: from ``config.judge``).
        eval_hooks: extra evaluation callables (see `cooper_lib.training.loop.Trainer`).
        accelerator: an `Accelerator` to use (default: one built from ``config.run``).
        tokenizer: a `CooperModel`'s text tokenizer (`cooper_lib.models.cooper.load_tokenizer`).

    Example:
        >>> from cooper_lib import SpatialGRPOTrainer, load_trained_folder
        >>> from cooper_lib.training import GRPOConfig
        >>> config = GRPOConfig(data=["data/synth-grpo/records.jsonl"])
        >>> trainer = SpatialGRPOTrainer(load_trained_folder("runs/sft/final"), config)  # doctest: +SKIP
        >>> trainer.train()  # doctest: +SKIP
    """

    def __init__(
        self,
        model: SpatialModel | CooperModel | ModelKind,
        config: GRPOConfig,
        *,
        records: Sequence[QAExample] | None = None,
        eval_records: Sequence[QAExample] | None = None,
        reward_fn: RewardFn | None = None,
        judge: Judge | None = None,
        eval_hooks: Sequence[EvalHook] = (),
        accelerator: Any = None,
        tokenizer: Any = None,
    ) -> None:
        kind = model_kind(model, tokenizer)
        self.records, self.eval_records = trainer_inputs(
            kind,
            config,
            GRPOConfig,
            records,
            eval_records,
            lambda paths: load_qa_records(
                paths, config.image_root, allow_outside_root=config.run.allow_outside_root
            ),
            load_given=load_qa_records,
        )
        if not self.records:
            raise ValueError("records: expected at least one question, got none")
        self.sampler = MixtureSampler(["qa"] * len(self.records), {"qa": 1.0}, seed=config.run.seed)
        self.judge = judge or judge_from_config(
            config.judge,
            number_tolerance=config.number_tolerance,
            url=config.judge_url,
            model=config.judge_model,
            api_key_env=config.judge_api_key_env,
        )
        self.reward_fn = reward_fn or self.cpr
        # the KL reference is the policy as it starts, frozen (before LoRA or row masks are added)
        self.reference = (
            copy.deepcopy(kind.model).requires_grad_(False).eval() if config.kl_beta > 0 else None
        )
        super().__init__(kind, config, eval_hooks=eval_hooks, accelerator=accelerator)
        if self.reference is not None:
            self.reference.to(self.accelerator.device)  # prepare() moved only the policy
        if self.shards_parameters:
            raise ValueError(
                "distributed setup: GRPO rollouts run the unwrapped model and need its whole parameters on every process; "
                "use DDP or DeepSpeed ZeRO-1/2, not FSDP or ZeRO-3"
            )
        device = self.accelerator.device
        self.reasoner = self.kind.rollout_reasoner(config, config.temperature, config.top_p, device)
        self.greedy = self.kind.rollout_reasoner(config, 0.0, 1.0, device)
        self._shown: list[tuple[ReasoningTrace, str]] = []  # traces the next samples show

    # ------------------------------------------------------------------ Trainer hooks
    def training_module(self, model: nn.Module) -> nn.Module:
        return self.kind.policy_module(model, self.config.temperature)

    def updates_per_step(self) -> int:
        return self.config.num_iterations

    def metric_names(self) -> list[str]:
        return [
            "reward", "reward_std", *(f"reward/{p}" for p in REWARD_PARTS), "tool_rate",
            "generated_tokens", "clip_fraction", "ratio", "kl",
        ]  # fmt: skip

    def data_state(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])

    # ------------------------------------------------------------------ rewards
    def cpr(
        self, traces: Sequence[ReasoningTrace], examples: Sequence[QAExample], groups: Sequence[int]
    ) -> CPRRewards:
        """COOPER's CPR reward of the rollouts (the default `reward_fn`)."""
        return cpr_reward(
            [t.turns for t in traces],
            [e.reference for e in examples],
            [e.flag for e in examples],
            groups,
            weights=self.config.reward_weights,
            judge=self.judge,
            threshold=self.config.exploration_threshold,
            bonus=self.config.exploration_bonus,
            turn_format=self.reasoner.format,
        )

    def score(
        self, traces: Sequence[ReasoningTrace], examples: Sequence[QAExample], groups: Sequence[int]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Rewards [N] of the rollouts and their batch means (total and, for CPR, each part)."""
        result = self.reward_fn(traces, examples, groups)
        totals = torch.tensor(
            result.total if isinstance(result, CPRRewards) else list(result), dtype=torch.float32
        )
        if totals.shape != (len(traces),):
            raise ValueError(
                f"reward_fn: expected {len(traces)} rewards (one per rollout), got shape {tuple(totals.shape)}"
            )
        metrics = {"reward": float(totals.mean())}
        if isinstance(result, CPRRewards):
            metrics.update({f"reward/{k}": v for k, v in result.means().items() if k != "total"})
        metrics["tool_rate"] = sum(used_tool(t.turns, self.reasoner.format) for t in traces) / len(traces)
        metrics["generated_tokens"] = sum(t.generated_tokens for t in traces) / len(traces)
        return totals, metrics

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, float]:
        positions = list(range(self.global_batch_size))
        indices = self.sampler.next_batch(self.global_batch_size)
        mine = shard(positions, self.world_size, self.rank, self.run.grad_accum_steps)
        batches = [self.rollouts([(p, indices[p]) for p in part]) for part in mine]
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}

        def add(metrics: dict[str, float]) -> None:
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1

        for batch in batches:
            add(batch.metrics)
        self._shown = [
            (t, f"reward {float(r):.4g}, advantage {float(a):.4g}")
            for t, r, a in zip(batches[0].traces, batches[0].rewards, batches[0].advantages, strict=True)
        ]
        for _ in range(self.config.num_iterations):
            for batch in batches:
                with self.accelerator.accumulate(self.model):
                    loss, metrics = self.policy_loss(batch)
                    metrics = self.backward_step(loss, metrics)
                add({"loss": float(loss.detach()), **metrics})
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update()
        return self.reduce_metrics(sums, counts)

    @torch.no_grad()
    def rollouts(self, prompts: Sequence[tuple[int, int]]) -> RolloutBatch:
        """Sample ``num_generations`` rollouts for each (global position, record index) and score them."""
        g = self.config.num_generations
        examples = [self.records[i] for _, i in prompts for _ in range(g)]
        groups = [p for p, _ in prompts for _ in range(g)]
        seeds = [rollout_seed(self.run.seed, self.step, p, k) for p, _ in prompts for k in range(g)]
        images = [e.load_image() for e in examples]
        self.spatial.eval()
        try:
            with self.accelerator.autocast():
                traces = self.reasoner.run_batch(images, [e.question for e in examples], seeds=seeds)
        finally:
            self.spatial.train()
        rewards, metrics = self.score(traces, examples, groups)
        metrics["reward_std"] = float(rewards.reshape(-1, g).std(dim=1).mean())
        batch = RolloutBatch(
            traces, group_advantages(rewards, g, self.config.adv_eps), metrics, rewards=rewards
        )
        if self.config.num_iterations > 1:
            batch.old_logprobs = [self._logprobs(self.model, t) for t in traces]
        if self.reference is not None:
            reference = self.kind.policy_module(self.reference, self.config.temperature)
            batch.ref_logprobs = [self._logprobs(reference, t) for t in traces]
        return batch

    def _logprobs(self, scorer: nn.Module, trace: ReasoningTrace) -> torch.Tensor:
        with self.accelerator.autocast():
            return self.kind.rollout_logprobs(scorer, trace, self.accelerator.device)[0].detach()

    def policy_loss(self, batch: RolloutBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean over the batch's rollouts of the clipped objective on their generated tokens."""
        losses, stats = [], {"clip_fraction": 0.0, "ratio": 0.0, "kl": 0.0}
        for r, trace in enumerate(batch.traces):
            logprobs, mask = self.kind.rollout_logprobs(self.model, trace, self.accelerator.device)
            old = batch.old_logprobs[r] if batch.old_logprobs is not None else logprobs.detach()
            ref = batch.ref_logprobs[r] if batch.ref_logprobs is not None else None
            out = clipped_policy_loss(
                logprobs,
                old,
                batch.advantages[r : r + 1].to(logprobs.device),
                mask,
                clip_eps=self.config.clip_eps,
                ref_logprobs=ref,
                kl_beta=self.config.kl_beta,
            )
            losses.append(out.loss)
            stats["clip_fraction"] += float(out.clip_fraction) / len(batch.traces)
            stats["ratio"] += float(out.ratio_mean) / len(batch.traces)
            stats["kl"] += float(out.kl) / len(batch.traces)
        return torch.stack(losses).mean(), stats

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Greedy rollouts on the held-out questions: mean reward and its parts (each question its own group)."""
        mine = self.eval_records[: self.config.eval_samples][self.rank :: self.world_size]
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        size = self.run.batch_size * self.config.num_generations
        self._shown = []
        for start in range(0, len(mine), size):
            part = mine[start : start + size]
            with self.accelerator.autocast():
                traces = self.greedy.run_batch([e.load_image() for e in part], [e.question for e in part])
            totals, metrics = self.score(traces, part, list(range(start, start + len(part))))
            if start == 0:
                self._shown = [(t, f"reward {float(r):.4g}") for t, r in zip(traces, totals, strict=True)]
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value * len(part)
                counts[key] = counts.get(key, 0) + len(part)
        keys = sorted(["reward", *(f"reward/{p}" for p in REWARD_PARTS), "tool_rate", "generated_tokens"])
        return {k: v for k, v in mean_over_processes(self.accelerator, keys, sums, counts).items() if v == v}

    # ------------------------------------------------------------------ samples
    def step_samples(self) -> list[Sample]:
        """The first ``run.log_samples`` rollouts of this process's step, with reward and advantage."""
        return self._samples("rollout")

    def evaluation_samples(self) -> list[Sample]:
        """The first ``run.log_samples`` greedy evaluation traces, with their reward."""
        return self._samples("eval")

    def _samples(self, kind: str) -> list[Sample]:
        shown = self._shown[: self.run.log_samples]
        return [trace_sample(f"{kind}-{i}", trace, note) for i, (trace, note) in enumerate(shown)]
